"""The shared interface of the two kinds of stage a condition is composed of (issue 10 item 2).

A condition decides how the model gets the dataset's knowledge, in two independent steps, composed
like inspect_ai's solver chain (small pieces, chained):

- a **model stage** builds the model: not exposed to the data (``pretrained``), knowledge put into the
  parameters (``finetune``, ``augmented_finetune``), or a model trained from scratch (``scratch``).
  ``build(ctx: CellContext, settings) -> Built``.
- a **context stage** decides what the built model sees before each question: only the question
  (``none``), the whole training set (``in_context``), retrieved documents (``retrieval``).
  ``apply(ctx: CellContext, built: Built, settings) -> Prepared``.

Every model stage composes with every context stage (in-context after fine-tuning, retrieval on a
from-scratch model) with no new module. The runner then scores every condition with the one scorer
(:mod:`genmodes.scoring`), so conditions differ only in what they do to the model and the context.

To add a stage: a module with a pydantic ``Settings`` class (subclass of :class:`Settings`:
``extra="forbid"``) and ``build`` (model stage) or ``apply`` (context stage), registered in
``MODEL_STAGES`` or ``CONTEXT_STAGES`` of ``genmodes/conditions/__init__.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from pydantic import BaseModel, ConfigDict

from genmodes.data.types import Dataset, Document, Question
from genmodes.io import write_json_atomic  # noqa: F401 - re-exported for the stages
from genmodes.timing import Timer  # noqa: F401 - re-exported for the stages

DEFAULT_INSTRUCTION = ("Use the following documents to answer. Everything they state is true.\n\n")
DOC_SEPARATOR = "\n\n"
END_OF_DOCUMENTS = "\n\n"


class Settings(BaseModel):
    """Base of every stage's settings: unknown keys are rejected, with the key named."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class CellContext:
    """Everything a stage may use for one grid cell (model x dataset x condition x seed)."""

    model_spec: str
    dataset: Dataset
    seed: int
    workdir: Path  # this cell's folder: checkpoints, generation caches (kept for resume)
    # run-wide folder for artifacts several cells share (a fine-tuned checkpoint reused by every
    # condition whose model stage has the same settings, a from-scratch model shared by its parametric
    # and retrieval cells); key sub-folders by a hash of everything that produced them (``artifact_dir``).
    shared_dir: Path | None = None
    model_cache: str | None = None  # genmodes model cache (fp32 conversions)
    device: str | None = None
    progress: bool = True
    # every dataset of the study by its config name (a stage may train on all of them, e.g. ``rl``),
    # and the config name of this cell's dataset; default: this dataset alone, under its family name
    datasets: dict[str, Dataset] = field(default_factory=dict)
    dataset_name: str = ""

    def __post_init__(self) -> None:
        if not self.dataset_name:
            self.dataset_name = self.dataset.family
        if not self.datasets:
            self.datasets = {self.dataset_name: self.dataset}

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
class Built:
    """What a model stage hands to a context stage.

    ``info`` holds what the report shows of the model stage: train seconds, tokens trained, loss
    curve, checkpoint, augmentation audit, ... (JSON-serialisable). ``documents`` are the training
    documents as the model saw them, when they differ from the dataset's (a from-scratch model trained
    without its in-context episodes); an oracle retrieval draws its distractors from them.
    """

    model: Any
    tokenizer: Any
    info: dict[str, Any] = field(default_factory=dict)
    documents: list[Document] | None = None


@dataclass
class Prepared:
    """What a context stage (or a baseline) hands to the scorer.

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
    # question id -> JSON-serialisable extras written into that question's results row, under
    # ``details`` (e.g. the thought a thinking stage wrote before answering)
    question_details: dict[str, dict[str, Any]] = field(default_factory=dict)

    def context_for(self, q: Question) -> str:
        return self.question_context(q) if self.question_context is not None else q.context


def render_documents(docs: Sequence[Document], instruction: str = DEFAULT_INSTRUCTION,
                     separator: str = DOC_SEPARATOR) -> str:
    """Training documents as context: instruction, documents with separators, then the separator
    once more (by default a blank line) before what follows."""
    if not docs:
        return ""
    end = END_OF_DOCUMENTS if separator == DOC_SEPARATOR else separator
    return instruction + separator.join(d.text.strip() for d in docs) + end
