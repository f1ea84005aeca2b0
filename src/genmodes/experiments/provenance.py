"""What a result was made with: package versions, the model as loaded, a hash of
its weights, the git commit of the genmodes source. The runner records these in each cell's record
and in the run's manifest (:mod:`genmodes.experiments.records`); the report reads them back and never
recomputes them, because the environment at report time may differ from the run's.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from genmodes.experiments.records import ModelInfo, ModelProvenance

PACKAGES = ("genmodes", "torch", "transformers", "peft", "datasets", "tokenizers", "accelerate", "numpy")
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.gguf")
_HASH_CACHE = "weights-sha256.json"  # in the model cache: {path|size|mtime_ns: sha256}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(where: str | os.PathLike | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout genmodes is imported from (or of ``where``); (None, None) when
    it is not one (an installed wheel, no git): provenance is recorded where it exists, never required."""
    src = Path(where) if where is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None, None
        status = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head.stdout.strip() or None, (bool(status.stdout.strip()) if status.returncode == 0 else None)


def model_info(model: Any) -> ModelInfo:
    """Where the weights came from and their size; a peft wrapper is described by its base model."""
    base = model.get_base_model() if hasattr(model, "peft_config") and hasattr(model, "get_base_model") else model
    cfg = getattr(base, "config", None)
    out: dict[str, Any] = {"class": type(base).__name__}
    if cfg is not None:
        out["name_or_path"] = str(getattr(cfg, "_name_or_path", "") or "")
        out["architecture"] = getattr(cfg, "model_type", None)
    try:
        out["parameters"] = int(sum(p.numel() for p in base.parameters()))
    except Exception:  # noqa: BLE001 - a scorer-only stand-in without parameters
        pass
    return ModelInfo.model_validate(out)


# ------------------------------------------------------------------------------------------ weights

def state_dict_hash(model: Any) -> str:
    """sha256 over every tensor of a model's state dict (name, dtype, shape, bytes), in name order."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _file_hash(path: Path, cache_file: Path | None) -> str:
    """sha256 of a file, remembered in ``cache_file`` by (path, size, mtime) so that a 500 MB
    checkpoint is read once per machine, not once per run."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    cache: dict[str, str] = {}
    if cache_file is not None:
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
        if isinstance(cache, dict) and isinstance(cache.get(key), str):
            return cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    digest = h.hexdigest()
    if cache_file is not None and isinstance(cache, dict):
        from genmodes.io import atomic_write

        cache[key] = digest
        try:
            atomic_write(cache_file, json.dumps(cache, sort_keys=True, indent=0) + "\n")
        except Exception:  # noqa: BLE001 - a read-only cache costs only the re-hash next time
            pass
    return digest


def _files_hash(files: list[Path], root: Path, cache_file: Path | None) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(root).as_posix()}|{_file_hash(f, cache_file)}\n".encode())
    return h.hexdigest()


def weights_provenance(spec: str, cache: str | os.PathLike | None = None) -> ModelProvenance:
    """The model spec and a hash of the weights it loads: the weight files of a folder, a GGUF file or
    the bundled model's fp32 conversion; tiny-random is built in memory, so its seed-0 state dict is
    hashed. A spec a model stage builds itself (``OWN_MODEL``: scratch) has no weights to hash."""
    from genmodes.conditions import own_model_specs
    from genmodes.models import cache_dir

    spec = spec.strip()
    if spec in own_model_specs():
        return ModelProvenance(spec=spec, weights_hash=None, weights_source=None)
    if spec == "tiny-random":
        from genmodes.models import tiny_random

        return ModelProvenance(spec=spec, weights_hash=state_dict_hash(tiny_random(seed=0)[0]),
                               weights_source="state dict of tiny_random(seed=0)")
    cache_file = cache_dir(cache) / _HASH_CACHE
    if spec == "smollm2-135m":
        path = cache_dir(cache) / "models" / "smollm2-135m-fp32"
        if not (path / "config.json").is_file():
            # convert now (the first cell would): hashing the GGUF instead would change every cell's
            # key once the conversion exists
            from genmodes.models import load_model

            load_model(spec, device="cpu", cache=cache)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            try:
                from huggingface_hub import try_to_load_from_cache

                cached = try_to_load_from_cache(spec, "config.json")
            except Exception:  # noqa: BLE001 - not in the local hub cache
                cached = None
            path = Path(cached).parent if isinstance(cached, str) else None
    if path is None:
        return ModelProvenance(spec=spec, weights_hash=None, weights_source=None)
    if path.is_file():
        return ModelProvenance(spec=spec, weights_hash=_files_hash([path], path.parent, cache_file),
                               weights_source=str(path))
    files = sorted({f for pat in WEIGHT_FILES for f in path.glob(pat) if f.is_file()})
    if not files:
        return ModelProvenance(spec=spec, weights_hash=None, weights_source=str(path))
    return ModelProvenance(spec=spec, weights_hash=_files_hash(files, path, cache_file), weights_source=str(path))
