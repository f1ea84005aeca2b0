"""The one place genmodes writes and reads its files (issue 10 item 3, issue 12).

- :func:`atomic_write`: a temporary file in the destination's folder, fsync, rename; on any failure
  the temporary file is removed, so a reader never sees half a file and a full disk leaves nothing.
- :func:`atomic_dir`: build a folder in a temporary folder beside the destination, then move it into
  place; an existing destination is exchanged atomically (``renameat2(RENAME_EXCHANGE)`` on Linux),
  else moved aside first and removed last. Never delete-then-rename.
- :func:`read_jsonl` / :func:`read_text`: UTF-8 text with every failure (missing, unreadable, not
  UTF-8, invalid JSON, nested too deeply) raised as one line naming the file and line.
- :func:`clean_stale_temps`: temporary files of processes that no longer exist (a kill mid-write).
- :func:`folder_lock`: an advisory lock on a folder, naming the holder's pid when it is held.

Temporary names are ``.<name>.tmp-<pid>[-<random>]``, so the process that left one is known.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from genmodes.errors import BusyError, DataError, DiskError

# deeper JSON/YAML nesting than this is no genmodes file (the deepest, a config, is 5 levels)
MAX_NESTING = 64
TEMP_RE = re.compile(r"^\..+\.(tmp|old)-(\d+)(-[A-Za-z0-9_]+)?(\.[A-Za-z0-9]+)?$")


# ------------------------------------------------------------------------------------------ errors

def disk_error_message(e: BaseException, path: str | os.PathLike | None = None) -> str | None:
    """A one-line message for a filesystem failure (OSError, or safetensors' own I/O error), or None
    when ``e`` is not one."""
    if isinstance(e, OSError) and not isinstance(e, (BrokenPipeError,)):
        where = e.filename if e.filename is not None else path
        why = e.strerror or str(e) or type(e).__name__
        if e.errno == errno.ENAMETOOLONG:
            why += " (the filesystem allows at most 255 bytes per name: use shorter names)"
        return f"cannot write or read {where}: {why}" if where is not None else f"filesystem error: {why}"
    if type(e).__name__ == "SafetensorError":  # safetensors raises its own type for ENOSPC and such
        first = (str(e).splitlines() or [""])[0]
        return f"cannot write {path or 'a checkpoint'}: {first[:200]}"
    if isinstance(e, ValueError) and "null byte" in str(e):
        return f"a path contains a NUL byte: {str(path or '')!r}"
    return None


def _disk(e: BaseException, path: Any) -> DiskError:
    return DiskError(disk_error_message(e, path) or f"cannot write {path}: {e}")


# ------------------------------------------------------------------------------------------ writing

def atomic_write(path: str | os.PathLike, data: bytes | str, *, if_changed: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring). With ``if_changed`` an
    identical file is left untouched (a finished run stays readable on a read-only mount)."""
    p = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if if_changed:
        try:
            if p.is_file() and p.stat().st_size == len(raw) and p.read_bytes() == raw:
                return p
        except OSError:
            pass
    with atomic_file(p) as tmp, open(tmp, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    return p


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary path to write ``path`` through (for writers that want a file name, like
    matplotlib); renamed into place when the block ends, removed if it raises."""
    p = Path(path)
    tmp = p.with_name(f".{p.stem}.tmp-{os.getpid()}{suffix or p.suffix}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, p)
    except BaseException as e:
        with contextlib.suppress(OSError, ValueError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, (OSError, ValueError)) and disk_error_message(e, p):
            raise _disk(e, p) from None
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _normal_permissions(root: Path) -> None:
    """mkdtemp makes 0700 folders; a saved folder gets the permissions any new folder would."""
    mode = 0o777 & ~_umask()
    os.chmod(root, mode)
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), mode)


def move_together(moves: list[tuple[Path, Path]], backups: Path) -> None:
    """Move each staged ``(src, dst)`` into place, all or none. A ``dst`` that exists is kept in
    ``backups`` (a folder on the same filesystem; a file by a hard link, so its place is never empty)
    until every move has succeeded; if one fails, the moves made are undone and the error raised.
    A destination whose type differs from its source (a folder where a file goes) is refused before
    anything moves."""
    for src, dst in moves:
        if os.path.lexists(dst) and (src.is_dir() != (dst.is_dir() and not dst.is_symlink())):
            what = "a folder" if dst.is_dir() else "not a folder"
            raise DiskError(f"cannot write {dst}: it is {what}; move it away and try again")
    undo: list[Any] = []
    try:
        for i, (src, dst) in enumerate(moves):
            if os.path.lexists(dst):
                backup = backups / f"old-{i}-{dst.name}"
                if src.is_dir():
                    os.replace(dst, backup)
                else:
                    try:
                        os.link(dst, backup, follow_symlinks=False)
                    except OSError:
                        shutil.copy2(dst, backup, follow_symlinks=False)
                undo.append(lambda d=dst, b=backup: (_remove(d), os.replace(b, d)))
            else:
                undo.append(lambda d=dst: _remove(d))
            os.replace(src, dst)
    except BaseException:
        for step in reversed(undo):
            try:
                step()
            except OSError:
                pass
        raise


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif os.path.lexists(p):
        p.unlink()


def replace_dir(src: Path, dst: Path) -> None:
    """Move the folder ``src`` to ``dst``. An existing ``dst`` is exchanged with ``src`` in one
    atomic step where the kernel can (then removed), else moved aside, replaced, and removed last:
    at no moment is neither the old nor the new folder in place on disk but for a rename."""
    src, dst = Path(src), Path(dst)
    if not (dst.exists() or dst.is_symlink()):
        os.replace(src, dst)
        return
    if not dst.is_dir() or dst.is_symlink():
        raise DiskError(f"cannot write {dst}: exists and is not a folder")
    if _exchange(src, dst):
        shutil.rmtree(src, ignore_errors=True)  # now the previous folder
        return
    old = dst.parent / f".{dst.name}.old-{os.getpid()}"
    os.replace(dst, old)
    try:
        os.replace(src, dst)
    except BaseException:
        os.replace(old, dst)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_dir(out) as tmp: <write into tmp>``: ``out`` becomes the finished folder, or,
    if the block raises, stays as it was (the temporary folder is removed)."""
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=parent))
    except (OSError, ValueError) as e:
        raise _disk(e, out) from None
    try:
        yield tmp
        _normal_permissions(tmp)
        replace_dir(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (OSError, ValueError)) and disk_error_message(e, out):
            raise _disk(e, out) from None
        if type(e).__name__ == "SafetensorError":
            raise _disk(e, out) from None
        raise


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(root: str | os.PathLike, *, depth: int = 2) -> list[Path]:
    """Remove temporary files and folders (``.name.tmp-PID...``) under ``root`` (``depth`` levels)
    whose process is gone. Returns what was removed."""
    removed: list[Path] = []
    root = Path(root)

    def walk(d: Path, level: int) -> None:
        try:
            entries = list(os.scandir(d))
        except OSError:
            return
        for ent in entries:
            m = TEMP_RE.match(ent.name)
            if m and not _pid_alive(int(m.group(2))):
                p = Path(ent.path)
                try:
                    if ent.is_dir(follow_symlinks=False):
                        shutil.rmtree(p)
                    else:
                        p.unlink()
                    removed.append(p)
                except OSError:
                    pass
            elif level < depth and ent.is_dir(follow_symlinks=False):
                walk(Path(ent.path), level + 1)

    walk(root, 0)
    return removed


# ------------------------------------------------------------------------------------------ locking

@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "run folder") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (a ``.lock`` file holding our pid). Held by a live
    process: :class:`BusyError` naming its pid. A lock left by a dead process is free (the kernel
    drops the lock with the process), so it is simply taken over."""
    lock_path = Path(folder) / ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise _disk(e, lock_path) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(f"{what} {folder} is in use by another genmodes process (pid {_holder(fd)}); "
                            "wait for it to finish, or use another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _holder(fd: int) -> str:
    """The pid a lock file's holder wrote. It writes it right after taking the lock, so a start that
    lands in between reads an empty file: read again for up to half a second."""
    for _ in range(50):
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if holder:
            return holder
        time.sleep(0.01)
    return "unknown"


@contextlib.contextmanager
def wait_lock(lock_path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock_path``, waiting for it while another process holds
    it (the holder's pid is written into the file). For work that several processes may want at once
    and must happen once: the first builds, the others wait, then find it built. The kernel drops the
    lock with its process, so a holder killed mid-work frees it for the next."""
    lock_path = Path(lock_path)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise _disk(e, lock_path) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------ reading

def read_text(path: str | os.PathLike, *, what: str = "file", max_bytes: int | None = None) -> str:
    """A UTF-8 text file, or one-line :class:`DataError` naming it (missing, a folder, unreadable,
    too big, not UTF-8; UTF-16 and binary files included)."""
    import stat

    p = Path(path)
    try:
        st = p.stat()
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
            raise DataError(f"{p}: {what} is not a regular file")
        if max_bytes is not None and st.st_size > max_bytes:
            raise DataError(f"{p}: {what} is {st.st_size:,} bytes; at most {max_bytes:,} are accepted")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what} not found: {p}") from None
    except IsADirectoryError:
        raise DataError(f"{p}: is a folder, expected a {what}") from None
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {p}: {getattr(e, 'strerror', None) or e}") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{p}: {what} is UTF-16 text; save it as UTF-8")
    if b"\0" in raw:
        raise DataError(f"{p}: {what} is binary (holds NUL bytes), expected UTF-8 text")
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: {what} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def nesting_depth(obj: Any) -> int:
    """Depth of nested lists/dicts (iterative: safe on any input)."""
    depth, stack = 0, [(obj, 1)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, (list, dict)):
            depth = max(depth, d)
            if d > MAX_NESTING:
                return d
            stack.extend((v, d + 1) for v in (x.values() if isinstance(x, dict) else x))
    return depth


def loads_line(line: str) -> Any:
    """json.loads for one line of a genmodes file, with bounded nesting."""
    try:
        obj = json.loads(line)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_NESTING} levels deep") from None
    if (line.count("[") + line.count("{")) > MAX_NESTING and nesting_depth(obj) > MAX_NESTING:
        raise ValueError(f"nested more than {MAX_NESTING} levels deep")
    return obj


def read_jsonl(path: str | os.PathLike, *, objects: bool = True, partial_tail: bool = False,
               name: str | None = None) -> list[tuple[int, Any]]:
    """``(line number, row)`` for each non-blank line of a JSON Lines file. Any bad line raises a
    one-line :class:`DataError` ``<file> line <n>: ...``. ``objects``: every row must be a JSON
    object. ``partial_tail``: a last line without its newline that does not parse (a file still
    being appended to) is skipped instead."""
    p = Path(path)
    label = name or str(p)
    text = read_text(p, what="JSON Lines file")
    lines = text.split("\n")
    rows = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = loads_line(line)
        except ValueError as e:
            if partial_tail and i == len(lines) and not text.endswith("\n"):
                break
            msg = f"invalid JSON ({e.msg} at column {e.colno})" if isinstance(e, json.JSONDecodeError) else str(e)
            raise DataError(f"{label} line {i}: {msg}") from None
        if objects and not isinstance(row, dict):
            raise DataError(f"{label} line {i}: expected a JSON object, got {type(row).__name__}")
        rows.append((i, row))
    return rows


def jsonl_bytes(rows: Any, **dumps_kw: Any) -> bytes:
    """Rows as JSON Lines, one deterministic encoding (sorted keys, UTF-8 kept)."""
    kw = {"ensure_ascii": False, "sort_keys": True, "allow_nan": False, **dumps_kw}
    return "".join(json.dumps(r, **kw) + "\n" for r in rows).encode("utf-8")


def write_json_atomic(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON (sorted keys), written atomically."""
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
