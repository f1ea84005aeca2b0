"""The stage contract: what a stage module declares, and what the core hands it.

A condition decides how the model gets the dataset's knowledge, in two independent steps, composed
like inspect_ai's solver chain (small pieces, chained):

- a **model stage** builds the model: not exposed to the data (``pretrained``), knowledge put into the
  parameters (``finetune``, ``augmented_finetune``, ``finetune_all``, ``rl``), or a model trained
  from scratch (``scratch``). ``build(ctx: CellContext, settings) -> Built``.
- a **context stage** decides what the built model sees before each question: only the question
  (``none``), the whole training set (``in_context``), retrieved documents (``retrieval``), a thought
  the model writes first (``thinking``). ``apply(ctx: CellContext, built: Built, settings) -> Prepared``.

Every model stage composes with every context stage with no new module. The runner scores every
condition with the one scorer (:mod:`genmodes.scoring`), so conditions differ only in what they do to
the model and the context.

**A stage is one module** (see ``genmodes/conditions/finetune.py`` or ``in_context.py``), registered
with one line (``MODEL_STAGES`` / ``CONTEXT_STAGES`` in ``genmodes/conditions/__init__.py``, or
:func:`genmodes.conditions.register_stage` from any module). It imports torch only inside its
functions, so configs parse and the report reads its records without torch. It declares:

- ``Settings``: a pydantic model (subclass of :class:`Settings`: unknown keys rejected), validated
  once when the config is parsed; its dump keys the stage's artifacts and the cell.
- ``Info``: a pydantic model (subclass of :class:`ModelStageInfo` / :class:`ContextStageInfo`), what
  the stage tells the report: written into the cell's record (``cells.jsonl``), read back by the
  report. Optional; default the base class.
- ``build`` (model stage) or ``apply`` (context stage).

and, optionally, hooks the core calls instead of naming kinds:

- ``validate(settings, check: StageCheck) -> None``: checks that need the built datasets or the
  model (before the run folder is made); raise :class:`genmodes.errors.ConfigError`.
- ``design(datasets: dict[str, Dataset], settings: list[Settings]) -> dict[str, Dataset]``: a
  study-level step before any cell runs (the ``rl`` stage's A/B split), given every condition's
  settings of this stage; returns NEW datasets (never mutates its input); the study is scored on them.
- ``estimate(settings, cost) -> StageCost``: the stage's own cost for ``--dry-run``: ``cost`` is the
  estimator's calibrated model of this cell (:class:`genmodes.experiments.estimate.CellCost`).
- ``report_sections(view) -> list[Block]``: what the report shows for the stage; ``view`` holds the
  finished cells that use it, each with its ``Info`` (:class:`genmodes.report.sections.StageView`).
- ``report_gates(view) -> list[Block]``: checks that must pass before the run's results mean what they
  claim (the thinking stage's oracle-thought gate); the report shows them first.
- ``summary_columns(rows) -> dict`` (context stages): columns of its own in a summary row (the thinking
  stage's ``retrieval_rate``), computed from the row group's results.
- ``stopping_rule_run(info) -> Info | None``: the fine-tune under a stopping rule (``until_recall``)
  that a cell's Info records, if any (``rl``: the knowledge fine-tune it started from), so the report
  shows each such run once, with every condition whose model holds it.
- ``starts_from(settings) -> (kind, settings)`` (model stages): the model stage this one starts from
  (``rl``: the knowledge fine-tune), so reports can pair a trained model with its start.
- ``Details``: a pydantic model of the per-question extras the stage writes into each results row
  (``Prepared.question_details``), for its report section to read.
- ``OWN_MODEL`` (model stages): the model spec of a stage that builds its own model (``scratch``);
  the config's model must then be that spec, and the condition is not exported to lm-eval.
- ``RECALL_GATE = True`` (model stages that put the dataset's knowledge into the parameters): a
  failure to generalize counts only where the model knows the facts, so after the stage builds its
  model the core scores the dataset's recall splits on it with no context (unless the stage already
  did, filling ``ModelStageInfo.recall_accuracy``) and the report and ``summary.csv`` mark every
  latent result of the cell with its gate (:mod:`genmodes.experiments.gates`).
- ``READS_DOCUMENTS = True`` (context stages that put documents before the question: ``in_context``,
  ``retrieval``): their results test the use of those documents only where the model reads its
  context, so a dataset's calibration ladder (``meta["calibration_splits"]``) gates their cells.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from genmodes.data.types import Dataset, Document, Question
from genmodes.io import write_json_atomic  # noqa: F401 - re-exported for the stages
from genmodes.timing import Timer  # noqa: F401 - re-exported for the stages

DEFAULT_INSTRUCTION = ("Use the following documents to answer. Everything they state is true.\n\n")
DOC_SEPARATOR = "\n\n"
END_OF_DOCUMENTS = "\n\n"


class Settings(BaseModel):
    """Base of every stage's settings: unknown keys are rejected, with the key named."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def settings_key(settings: BaseModel) -> dict[str, Any]:
    """A stage's settings as they key its cells and artifacts: every field with its default filled in
    (a changed default changes the results), except those its class lists in ``UNKEYED_WHEN_UNSET``
    while they are None (fields added after runs that never set them; nested settings alike)."""
    out = settings.model_dump(mode="json")
    _drop_unset(settings, out)
    return out


def _drop_unset(model: BaseModel, dumped: dict[str, Any]) -> None:
    for k in getattr(type(model), "UNKEYED_WHEN_UNSET", ()):
        if dumped.get(k) is None:
            dumped.pop(k, None)
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        if isinstance(value, BaseModel) and isinstance(dumped.get(name), dict):
            _drop_unset(value, dumped[name])


InfoT = TypeVar("InfoT", bound="Info")


class Info(BaseModel):
    """Base of what a stage tells the report (JSON-serialisable; a stage declares its fields)."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def read(cls: type[InfoT], data: Mapping[str, Any] | None) -> InfoT:
        """From a record as written. Keys this version does not declare (written by another version)
        and values that do not fit their field are left out: the report says less, it does not fail."""
        known = {k: v for k, v in (data or {}).items() if k in cls.model_fields}
        while True:
            try:
                return cls.model_validate(known)
            except ValidationError as e:
                bad = {err["loc"][0] for err in e.errors() if err["loc"]}
                if not bad & set(known):
                    return cls()
                known = {k: v for k, v in known.items() if k not in bad}

    @classmethod
    def from_legacy(cls: type[InfoT], flat: Mapping[str, Any]) -> InfoT:
        """From a cell record written before stages had their own records (one ``info`` dict holding
        both stages' keys). A stage whose keys were nested there overrides this."""
        return cls.read(flat)

    def compute_columns(self) -> dict[str, float | None]:
        """Extra columns of the report's compute table (name -> value) this stage fills."""
        return {}

    def drilldown_note(self) -> str | None:
        """A line the per-question page shows under every question of the cell (a shared context)."""
        return None

    def drilldown_documents(self) -> str | None:
        """A JSON Lines file (relative to the run folder) of ``{"id", "text"}`` rows: the documents the
        per-question page shows by text where a row lists them in ``retrieved``."""
        return None


class CalibrationRung(BaseModel):
    """One rung of a model's calibration ladder: a split's accuracy (None: the study did not score it)
    and its threshold."""

    model_config = ConfigDict(extra="forbid")

    split: str
    threshold: float
    accuracy: float | None = None
    questions: int = 0


class ModelStageInfo(Info):
    """What every model stage may report: the core's compute table, curves and exports read these."""

    train_seconds: float | None = None  # all train-time compute (training, generation, verification)
    tokens_trained: int | None = None
    loss_curve: list[tuple[int, float]] | None = None  # (optimizer step, training loss)
    checkpoint: str | None = None  # the folder of the weights this stage built (None: nothing saved)
    reused: bool | None = None  # True: loaded from an earlier cell's checkpoint
    # The recall gate (a stage with RECALL_GATE): the cell's dataset's recall splits scored with no
    # context on the built model. recall_splits None: no gate applies; [] or recall_accuracy None:
    # the gate applies but recall was not scored (the study left its recall split out).
    recall_splits: list[str] | None = None
    recall_accuracy: float | None = None
    recall_questions: int | None = None
    # The calibration ladder (a dataset's ``meta["calibration_splits"]``, split -> threshold: questions
    # whose own context holds the answer, over entities training never binds): each split scored on the
    # built model with the question's own context, in declared order. None where the dataset declares
    # none.
    calibration: list[CalibrationRung] | None = None
    # A model trained without the practice its dataset's ladder measures (P2's ablation): its ladder is
    # recorded and shown, but gates nothing; that it does not read its context is the ablation's result.
    trained_without_practice: bool = False

    def checkpoints(self) -> list[str]:
        """Every checkpoint folder the built model depends on (an export checks they still exist)."""
        return [self.checkpoint] if self.checkpoint else []


class ContextStageInfo(Info):
    """What a context stage reports (every field is the stage's own)."""


@dataclass
class StageCheck:
    """What a stage's ``validate`` hook may check against, before the run folder is made."""

    where: str  # the condition, for the error line: "conditions[1] (finetune)"
    model_specs: list[str]  # the study's models
    datasets: dict[str, Dataset]  # the datasets this condition runs on, by config name (after designs)
    load_model: Callable[[str], Any]  # a model spec -> the model on the CPU (loaded once per study)
    # a model spec -> its context window in tokens, read from its files (None: they do not say)
    window: Callable[[str], int | None] = lambda spec: None

    def check_window(self, setting: str, tokens: int, specs: Sequence[str] | None = None) -> None:
        """A setting counted in tokens that must fit every model's window (``specs``: these models
        instead of the study's, e.g. a generator); one-line :class:`ConfigError` otherwise."""
        from genmodes.errors import ConfigError

        specs = list(self.model_specs if specs is None else specs)
        for spec in specs:
            w = self.window(spec)
            if w is not None and tokens > w:
                on = f" ({spec})" if len(specs) > 1 or spec not in self.model_specs else ""
                raise ConfigError(f"{self.where}: bad setting {setting!r}: {tokens} exceeds the model's "
                                  f"context{on} ({w})")


@dataclass
class StageCost:
    """A stage's estimate of one cell (``estimate`` hook), in seconds."""

    train_s: float = 0.0  # train-time compute (0: an earlier cell built what this one reuses)
    test_s: float = 0.0  # test-time compute besides scoring the questions (generating thoughts)
    # scoring the questions in this stage's context (``cost.scoring(contexts, prefix)``); None: the
    # questions alone
    score_s: float | None = None
    # of train_s, what a stopping rule saves if it stops at its first check (train_s is its most)
    stoppable_s: float = 0.0
    note: str = ""


# A report block: ("h", level, text), ("p", text), ("list", [text]), ("table", headers, rows),
# ("img", path, alt), ("pre", text, language)
Block = tuple


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
    # the study's scoring (a stage that scores questions itself, e.g. a stopping rule on recall, scores
    # them as the cell will)
    batch_tokens: int = 4096
    chat_template: bool = False

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

    def recall_probe(self, datasets: dict[str, Dataset] | None = None) -> Any:
        """The recall questions of this cell's dataset (or of ``datasets``), scored as the cell scores
        (:class:`genmodes.training.recall.RecallProbe`)."""
        from genmodes.training.recall import RecallProbe

        return RecallProbe.of(datasets if datasets is not None else {self.dataset_name: self.dataset},
                              batch_tokens=self.batch_tokens, chat_template=self.chat_template)

    def load_model(self, spec: str | None = None) -> tuple[Any, Any]:
        from genmodes.models import load_model

        return load_model(spec or self.model_spec, device=self.device, cache=self.model_cache, seed=self.seed)


@dataclass
class Built:
    """What a model stage hands to a context stage.

    ``info`` is what the report shows of the model stage (its ``Info``). ``documents`` are the
    training documents as the model saw them, when they differ from the dataset's (a from-scratch
    model trained without its in-context episodes); an oracle retrieval draws its distractors from them.
    """

    model: Any
    tokenizer: Any
    info: ModelStageInfo = field(default_factory=ModelStageInfo)
    documents: list[Document] | None = None


@dataclass
class Prepared:
    """What a context stage (or a baseline) hands to the scorer.

    ``prefix`` is shared by every question (its KV cache is computed once). ``question_context``
    maps a question to the text scored before its choices (default: the question's own context);
    retrieval uses it to put the retrieved documents before the question, and lists them in
    ``retrieved`` (question id -> document ids in context order; each results row records them).
    ``info`` is what the report shows of the context stage (its ``Info``); the core sets
    ``model_info`` to the model stage's.
    """

    model: Any
    tokenizer: Any
    prefix: str = ""
    question_context: Callable[[Question], str] | None = None
    info: Info = field(default_factory=ContextStageInfo)
    retrieved: dict[str, list[str]] | None = None
    model_info: ModelStageInfo | None = None
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
