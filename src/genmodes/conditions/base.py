"""The shared interface of every learning condition.

A condition decides how the model gets the dataset's knowledge: not at all (pretrained), into its
parameters (finetune, augmented_finetune), or into its context (in_context, retrieval). Whatever it
does, it returns a :class:`Prepared`: a model, a tokenizer, and the text to place before each
question. The runner then scores every condition with the one scorer (:mod:`genmodes.scoring`), so
conditions differ only in what they do to the model and the context.

To add a condition: a module in ``genmodes/conditions/`` with a pydantic ``Settings`` class
(``extra="forbid"``) and a ``prepare(ctx: CellContext, settings) -> Prepared`` function, registered
in ``CONDITION_MODULES`` of ``genmodes/conditions/__init__.py``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from pydantic import BaseModel, ConfigDict

from genmodes.data.types import Dataset, Document, Question

DEFAULT_INSTRUCTION = ("Use the following documents to answer. Everything they state is true.\n\n")
DOC_SEPARATOR = "\n\n"
END_OF_DOCUMENTS = "\n\n"


class Settings(BaseModel):
    """Base of every condition's settings: unknown keys are rejected, with the key named."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class CellContext:
    """Everything a condition may use for one grid cell (model x dataset x condition x seed)."""

    model_spec: str
    dataset: Dataset
    seed: int
    workdir: Path  # this cell's folder: checkpoints, generation caches (kept for resume)
    # run-wide folder for artifacts several cells share (a fine-tuned checkpoint reused by
    # retrieval+finetune, a from-scratch model shared by its parametric and retrieval cells); key
    # sub-folders by a hash of everything that produced them (see ``artifact_dir``).
    shared_dir: Path | None = None
    model_cache: str | None = None  # genmodes model cache (fp32 conversions)
    device: str | None = None
    progress: bool = True

    def artifact_dir(self, kind: str, **key: Any) -> Path:
        """A shared folder for an artifact determined by ``key`` (plus dataset, model and seed)."""
        import hashlib

        full = {"dataset": self.dataset.meta.get("content_hash") or self.dataset.family,
                "dataset_config": self.dataset.config, "model": self.model_spec, "seed": self.seed, **key}
        h = hashlib.sha256(json.dumps(full, sort_keys=True, default=str).encode()).hexdigest()[:16]
        root = self.shared_dir if self.shared_dir is not None else self.workdir / "shared"
        return root / kind / h

    def load_model(self, spec: str | None = None) -> tuple[Any, Any]:
        from genmodes.models import load_model

        return load_model(spec or self.model_spec, device=self.device, cache=self.model_cache, seed=self.seed)


@dataclass
class Prepared:
    """What a condition hands to the scorer.

    ``prefix`` is shared by every question (its KV cache is computed once). ``question_context``
    maps a question to the text scored before its choices (default: the question's own context);
    retrieval uses it to put the retrieved documents before the question. ``info`` holds what the
    report shows: train/generation seconds, tokens trained, kept fraction, recall@k, augmentation
    audit, ... (JSON-serialisable).
    """

    model: Any
    tokenizer: Any
    prefix: str = ""
    question_context: Callable[[Question], str] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # a non-model condition (a shortcut baseline) scores the questions itself: questions -> per-choice
    # scores (the same ChoiceScore rows the scorer returns); model and tokenizer are then None
    score_questions: Callable[[Sequence[Question]], list] | None = None

    def context_for(self, q: Question) -> str:
        return self.question_context(q) if self.question_context is not None else q.context


def render_documents(docs: Sequence[Document], instruction: str = DEFAULT_INSTRUCTION) -> str:
    """Training documents as context: instruction, documents with separators, then a blank line."""
    if not docs:
        return ""
    return instruction + DOC_SEPARATOR.join(d.text.strip() for d in docs) + END_OF_DOCUMENTS


class Timer:
    """``with Timer() as t: ...; t.seconds``"""

    def __enter__(self) -> "Timer":
        self._t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self._t0


def write_json_atomic(path: Path, obj: Any) -> None:
    from genmodes.io import atomic_write

    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
