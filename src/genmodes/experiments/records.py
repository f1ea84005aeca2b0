"""What a run writes, defined once: the runner writes these models with
:func:`dump` and the report reads them back with ``model_validate``, so a field one side adds and the
other does not know fails loudly instead of drifting.

Run folder files and their record:

- ``results.jsonl`` (and ``cells/<cell>/results.jsonl``): one :class:`ResultRow` per question per cell.
- ``cells.jsonl`` (and ``cells/<cell>/cell.json``): one :class:`CellRecord` per finished cell.
- ``manifest.json``: one :class:`RunManifest`, what produced the run.

Every model forbids unknown keys and coerces nothing (strict). A condition's own output has exactly
two places: a cell's ``stages`` (each stage's ``Info``, declared in its module: recall@k, loss curve,
augmentation audit, ...) and a row's ``details`` (per-question extras, e.g. a thinking stage's
thoughts): a stage adds its fields there, never beside the scorer's. Cells written before stages had
records of their own (schema 1) hold one flat ``info`` dict instead; the report reads both. ``model_stage`` and
``context_stage`` name the two halves of a composed condition where the runner knows them. Optional
fields left at their default are not written (:func:`dump`), so a run that uses none of them writes
the same bytes as before they existed.

Pure pydantic on purpose: the report imports this and must not import torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 2  # 2: a cell's stages each have their record (``stages``), instead of one ``info``


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class Score(_Record):
    """One choice's score, as :meth:`genmodes.scoring.ChoiceScore.to_json` writes it."""

    choice: str
    logprob: float
    n_tokens: int
    is_greedy: bool


class ResultRow(_Record):
    """One question scored in one cell (a line of ``results.jsonl``)."""

    cell: str
    model: str
    dataset: str
    family: str
    split: str
    subtype: str
    condition: str
    condition_kind: str
    seed: int
    question_id: str
    answer: int
    chance: float
    scores: list[Score]
    chosen: int
    chosen_norm: int
    correct: bool
    correct_norm: bool
    context_tokens: int  # tokens before the choices, shared prefix included (0 for a model-free baseline)
    context: str  # the question's own context (retrieved documents are listed in ``retrieved``)
    retrieved: list[str] | None = None  # document ids put before the question, in context order
    model_stage: str | None = None  # kind of the stage that made the model (composed conditions)
    context_stage: str | None = None  # kind of the stage that made the context (composed conditions)
    details: dict[str, Any] = Field(default_factory=dict)  # per-question extras of a stage (thoughts, ...)


class Timings(_Record):
    prepare_s: float
    score_s: float
    total_s: float


class ModelInfo(_Record):
    """The model a cell scored with, as loaded (a peft wrapper is described by its base model)."""

    class_: str = Field(alias="class")
    name_or_path: str | None = None
    architecture: str | None = None
    parameters: int | None = None


class CellRecord(_Record):
    """One finished cell (a line of ``cells.jsonl``; ``cells/<cell>/cell.json`` marks the cell done).

    ``key`` is the hash of ``key_parts``: everything the cell's results depend on (the dataset as
    scored, the condition's resolved settings, the model and its weights, the seed, the scoring
    settings). A rerun recomputes a cell whose key no longer matches."""

    cell: str
    model: str
    dataset: str
    condition: str
    condition_kind: str
    model_stage: str | None = None  # as in ResultRow
    context_stage: str | None = None
    seed: int
    n_questions: int
    timings: Timings
    # each stage's Info by role (model, context; or baseline), as the stage module declares it
    stages: dict[str, dict[str, Any]] | None = None
    info: dict[str, Any] = Field(default_factory=dict)  # schema 1: both stages' output in one dict
    dataset_hash: str
    versions: dict[str, str]
    model_info: ModelInfo | None = None  # None: a model-free baseline
    dtype: str | None = None  # the precision it was scored in (genmodes.models.resolve_dtype); None: no model
    key: str
    key_parts: dict[str, Any]
    finished_at: str  # ISO 8601, UTC


class DatasetProvenance(_Record):
    content_hash: str  # sha256 of the dataset's data files (genmodes.data.io.content_hash)
    source: str  # "family:<name>", "path:<folder>" or "berglund:<folder>"
    questions: int  # questions scored (after splits / max_per_split)


class ModelProvenance(_Record):
    spec: str
    weights_hash: str | None  # sha256 of the weight files (or of the state dict when built in memory)
    weights_source: str | None  # what was hashed


class RunManifest(_Record):
    """What produced the run (``manifest.json``), rewritten by every invocation that works on the
    folder; each cell keeps its own ``versions`` and ``key`` in case an earlier invocation made it."""

    schema_version: int  # SCHEMA_VERSION when written: bumped when a record changes incompatibly
    name: str
    config_hash: str  # sha256 of config.yaml as written (what sha256sum prints)
    datasets: dict[str, DatasetProvenance]
    models: list[ModelProvenance]
    versions: dict[str, str]
    git_commit: str | None  # of the genmodes source, when it is a git checkout
    git_dirty: bool | None
    started_at: str  # ISO 8601, UTC: this invocation


def dump(record: BaseModel) -> dict[str, Any]:
    """The dict a record is written as: optional fields left at their default are omitted, so adding
    one leaves files of runs that do not use it byte for byte as before."""
    return record.model_dump(by_alias=True, exclude_defaults=True)


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], row: Any, where: str) -> M:
    """``model.model_validate(row)``; a mismatch is one :class:`DataError` line naming ``where`` and the field."""
    from genmodes.errors import DataError

    try:
        return model.model_validate(row)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(map(str, err["loc"]))
        raise DataError(f"{where}: {f'field {field!r}: ' if field else ''}{err['msg']}") from None


def read_records(path: str | os.PathLike, model: type[M]) -> list[M]:
    """Every line of a JSON Lines file as ``model``; any bad line is one :class:`DataError` naming the
    file, the line and the field."""
    from genmodes.io import read_jsonl

    return [validate(model, row, f"{path} line {i}") for i, row in read_jsonl(path)]
