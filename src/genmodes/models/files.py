"""What a model's files say, read without loading the model: whether a GGUF or safetensors file is
whole and of a format genmodes reads (headers parsed, nothing dequantized), and the model's context
window. A study checks both before its run folder exists, so a damaged file or a ``seq_len`` past the
window costs a line, not a half-made run.

Messages say what is wrong with the file (truncated, not a GGUF, an unknown version), never which
Python exception noticed it.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

from genmodes.errors import ModelError

GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)  # what transformers' GGUF reader loads (version 1 predates 64-bit counts)
# value type -> struct format of a scalar (8: string, 9: array)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_MAX_COUNT = 1 << 24  # tensors or metadata entries: real models hold hundreds
_MAX_DIMS = 8


class _Truncated(Exception):
    pass


class _Reader:
    def __init__(self, f: BinaryIO, size: int):
        self.f, self.size = f, size

    def read(self, n: int) -> bytes:
        if n < 0 or self.f.tell() + n > self.size:
            raise _Truncated
        return self.f.read(n)

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def skip(self, n: int) -> None:
        if n < 0 or self.f.tell() + n > self.size:
            raise _Truncated
        self.f.seek(n, os.SEEK_CUR)

    def string(self) -> bytes:
        return self.read(self.unpack("<Q"))

    def value(self, vtype: int, where: str) -> Any:
        """A metadata value; an array is returned as its length (genmodes reads no array)."""
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string().decode("utf-8", "replace")
        if vtype == _ARRAY:
            itype, count = self.unpack("<I"), self.unpack("<Q")
            if itype in _SCALARS:
                self.skip(count * struct.calcsize(_SCALARS[itype]))
            elif itype == _STRING:
                for _ in range(count):
                    self.skip(self.unpack("<Q"))
            elif itype == _ARRAY:
                for _ in range(count):
                    self.value(_ARRAY, where)
            else:
                raise ModelError(f"{where}: holds a value of unknown type {itype} (damaged?)")
            return count
        raise ModelError(f"{where}: holds a value of unknown type {vtype} (damaged?)")


def gguf_metadata(path: str | os.PathLike, whole: bool = True) -> dict[str, Any]:
    """The scalar metadata of a GGUF file (arrays as their lengths), its header checked. ``whole``:
    also check that the tensors the header lists fit in the file (a truncated download fails here,
    not minutes into a conversion). Raises :class:`ModelError` saying what is wrong with the file."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            return _parse_gguf(_Reader(f, size), p, whole)
    except _Truncated:
        raise ModelError(f"{p}: the GGUF file ends inside its header ({size:,} bytes): truncated or damaged") from None
    except OSError as e:
        raise ModelError(f"cannot read GGUF {p}: {e.strerror or e}") from None


def _parse_gguf(r: _Reader, p: Path, whole: bool) -> dict[str, Any]:
    if r.size < 4 or r.read(4) != GGUF_MAGIC:
        raise ModelError(f"{p} is not a GGUF file (it does not start with the GGUF magic number)")
    version = r.unpack("<I")
    if version not in GGUF_VERSIONS:
        raise ModelError(f"{p}: GGUF version {version} is not one genmodes reads ({' or '.join(map(str, GGUF_VERSIONS))}); "
                         "a damaged file, or one written by an older converter")
    n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
    if n_tensors > _MAX_COUNT or n_kv > _MAX_COUNT:
        raise ModelError(f"{p}: its header lists {max(n_tensors, n_kv):,} entries: damaged")
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = r.string().decode("utf-8", "replace")
        meta[key] = r.value(r.unpack("<I"), f"{p}: metadata {key!r}")
    if not whole:
        return meta
    tensors = []
    for _ in range(n_tensors):
        name = r.string().decode("utf-8", "replace")
        n_dims = r.unpack("<I")
        if n_dims > _MAX_DIMS:
            raise ModelError(f"{p}: tensor {name!r} has {n_dims} dimensions: damaged")
        dims = [r.unpack("<Q") for _ in range(n_dims)]
        tensors.append((name, dims, r.unpack("<I"), r.unpack("<Q")))
    align = int(meta.get("general.alignment", 32) or 32)
    start = -(-r.f.tell() // align) * align
    need = max((off + _tensor_bytes(dims, ttype) for _, dims, ttype, off in tensors), default=0)
    if start + need > r.size:
        raise ModelError(f"{p}: the GGUF file is truncated: its tensors need {start + need:,} bytes, "
                         f"it has {r.size:,}")
    return meta


def _tensor_bytes(dims: list[int], ttype: int) -> int:
    try:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

        block, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
    except (ImportError, KeyError, ValueError):
        return 0  # a type this gguf version does not know: its size is not checked
    return math.prod(dims) // block * nbytes


def gguf_window(path: str | os.PathLike, whole: bool = True) -> int | None:
    """The context length a GGUF file's metadata declares (``<architecture>.context_length``)."""
    meta = gguf_metadata(path, whole)
    n = meta.get(f"{meta.get('general.architecture')}.context_length")
    return int(n) if isinstance(n, int) and n > 0 else None


# ------------------------------------------------------------------------------------------ folders

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def read_config_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError):
        raise ModelError(f"{path}: not valid JSON (damaged?)") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def check_safetensors(path: Path) -> None:
    """A safetensors file whose header parses and whose tensors fit in it."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if n < 2 or 8 + n > size:
                raise ModelError(f"{path}: not a safetensors file, or truncated (no complete header)")
            header = json.loads(f.read(n))
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError):
        raise ModelError(f"{path}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: not a safetensors file (its header is not a JSON object)")
    ends = [t.get("data_offsets", [0, 0])[1] for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)]
    need = 8 + n + max((e for e in ends if isinstance(e, int)), default=0)
    if need > size:
        raise ModelError(f"{path}: the safetensors file is truncated: its tensors need {need:,} bytes, it has {size:,}")


def check_model_folder(folder: Path) -> dict[str, Any]:
    """A model folder genmodes can load: a config.json naming its architecture, and weights whose
    files are whole (safetensors headers read). Returns the config."""
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ModelError(f"{folder}: a folder without config.json is not a model folder")
    cfg = read_config_json(cfg_path)
    if not isinstance(cfg.get("model_type"), str):
        raise ModelError(f"{cfg_path}: no 'model_type': not a transformers model config")
    present = [w for w in WEIGHT_FILES if (folder / w).is_file()]
    if not present:
        raise ModelError(f"{folder}: no weights ({' or '.join(WEIGHT_FILES[::2])})")
    if present[0] == "model.safetensors":
        check_safetensors(folder / "model.safetensors")
    elif present[0] == "model.safetensors.index.json":
        index = read_config_json(folder / "model.safetensors.index.json")
        for shard in sorted(set((index.get("weight_map") or {}).values())):
            if not (folder / str(shard)).is_file():
                raise ModelError(f"{folder}: weight shard {shard} is missing")
            check_safetensors(folder / str(shard))
    return cfg


def config_window(cfg: dict[str, Any]) -> int | None:
    """The context window a transformers config declares (a multimodal config: its text model's)."""
    for c in (cfg, cfg.get("text_config") or {}):
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx"):
            v = c.get(key) if isinstance(c, dict) else None
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return None
