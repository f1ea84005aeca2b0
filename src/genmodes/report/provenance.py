"""What a result was made with, recorded per cell by the runner so the report can show it: the
dataset's content hash, the model actually loaded, and the versions of the packages that scored it.

A paper's numbers are only reproducible with these; the report reads them back from ``cells.jsonl``
(it never recomputes them, because the environment at report time may differ from the run's).
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

PACKAGES = ("genmodes", "torch", "transformers", "peft", "datasets", "tokenizers", "accelerate", "numpy")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def model_summary(model: Any) -> dict[str, Any]:
    """Where the weights came from and their size; a peft wrapper is described by its base model."""
    base = model.get_base_model() if hasattr(model, "peft_config") and hasattr(model, "get_base_model") else model
    cfg = getattr(base, "config", None)
    out: dict[str, Any] = {"class": type(base).__name__}
    if cfg is not None:
        out["name_or_path"] = str(getattr(cfg, "_name_or_path", "") or "")
        out["architecture"] = getattr(cfg, "model_type", None)
    try:
        out["parameters"] = int(sum(p.numel() for p in base.parameters()))
    except Exception:  # a scorer-only stand-in without parameters
        pass
    return out


def cell_provenance(dataset: Any, model: Any) -> dict[str, Any]:
    """The fields the runner adds to each cell's record (``cells.jsonl``)."""
    out = {"dataset_hash": (getattr(dataset, "meta", None) or {}).get("content_hash"),
           "versions": package_versions()}
    if model is not None:  # a shortcut baseline scores without a model
        out["model_info"] = model_summary(model)
    return out


def question_detail(question: Any, prepared: Any) -> dict[str, Any]:
    """Per-question fields for the report's drill-down page: the question's own context and, for a
    condition that puts documents before each question (retrieval), those documents' ids in context
    order. A shared prefix (in_context's documents) is described once per cell by its info."""
    out: dict[str, Any] = {"context": question.context}
    retrieved = getattr(prepared.question_context, "retrieved", None)
    if isinstance(retrieved, dict) and question.id in retrieved:
        out["retrieved"] = list(retrieved[question.id])
    return out
