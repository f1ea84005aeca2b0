"""genmodes.io: atomic writes and folders that leave nothing on failure, readers that name the file
and line, stale temporary files, the folder lock (issue 10 item 3, issue 12)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from genmodes.errors import BusyError, DataError, DiskError
from genmodes.io import atomic_dir, atomic_write, clean_stale_temps, folder_lock, read_jsonl, read_text


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a" / "f.txt"
    atomic_write(p, "one")
    atomic_write(p, b"two")
    assert p.read_text() == "two" and sorted(os.listdir(p.parent)) == ["f.txt"]
    mtime = p.stat().st_mtime_ns
    atomic_write(p, "two", if_changed=True)
    assert p.stat().st_mtime_ns == mtime


def test_atomic_write_failure_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    p = tmp_path / "f.txt"
    atomic_write(p, "old")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskError, match="f.txt: No space left on device"):
        atomic_write(p, "new")
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_atomic_dir_swaps_whole_folders_and_keeps_the_old_one_on_failure(tmp_path):
    out = tmp_path / "d"
    with atomic_dir(out) as t:
        (t / "a").write_text("1")
    with atomic_dir(out) as t:
        (t / "b").write_text("2")
    assert os.listdir(out) == ["b"]  # replaced, not merged
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as t:
            (t / "c").write_text("3")
            raise RuntimeError("boom")
    assert os.listdir(out) == ["b"] and os.listdir(tmp_path) == ["d"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask


def test_read_jsonl_names_file_and_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n\n[1]\n')
    with pytest.raises(DataError, match=r"x.jsonl line 3: expected a JSON object, got list"):
        read_jsonl(p)
    assert read_jsonl(p, objects=False) == [(1, {"a": 1}), (3, [1])]
    p.write_text('{"a": 1}\n{"b": ')
    with pytest.raises(DataError, match=r"line 2: invalid JSON"):
        read_jsonl(p)
    assert read_jsonl(p, partial_tail=True) == [(1, {"a": 1})]
    p.write_text('{"a": ' + "[" * 100 + "]" * 100 + "}\n")
    with pytest.raises(DataError, match=r"line 1: nested more than 64 levels"):
        read_jsonl(p)


@pytest.mark.parametrize("data,msg", [
    ("x".encode("utf-16"), "UTF-16"), (b"caf\xe9", "not UTF-8"), (b"a\0b", "binary"), (b"x" * 11, "at most 10"),
])
def test_read_text_refuses_what_is_not_utf8_text(tmp_path, data, msg):
    p = tmp_path / "t"
    p.write_bytes(data)
    with pytest.raises(DataError, match=msg):
        read_text(p, max_bytes=10)


def test_clean_stale_temps_removes_only_dead_processes_files(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "cells" / "c").mkdir(parents=True)
    stale = [tmp_path / f".results.jsonl.tmp-{dead.pid}", tmp_path / "cells" / "c" / f".cell.json.tmp-{dead.pid}"]
    for s in stale:
        s.write_text("x")
    (tmp_path / f".ds.tmp-{dead.pid}-ab_12").mkdir()
    mine = tmp_path / f".summary.csv.tmp-{os.getpid()}"
    mine.write_text("x")
    keep = tmp_path / ".tmp-notes"
    keep.write_text("x")
    removed = clean_stale_temps(tmp_path, depth=2)
    assert len(removed) == 3 and not any(s.exists() for s in stale) and mine.exists() and keep.exists()


def test_folder_lock_names_a_live_holder(tmp_path):
    code = ("import time; from genmodes.io import folder_lock\n"
            f"with folder_lock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match=f"pid {holder.pid}"):
            with folder_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(tmp_path):  # a dead holder's lock is free
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
