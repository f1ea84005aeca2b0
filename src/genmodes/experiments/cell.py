"""One cell of a study: its condition prepared (the model stage built, the context stage applied), the
questions scored by the one scorer, and the results rows and record that say what came of it.

:func:`prepare_cell` is shared with the lm-eval export, which rebuilds exactly what a finished cell
scored (reusing its checkpoints from the run's ``shared/`` folder).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from genmodes.conditions import prepare
from genmodes.conditions.base import CellContext, Prepared
from genmodes.data.types import Dataset, Question
from genmodes.errors import DiskError, GenmodesError, NumericError
from genmodes.experiments import provenance
from genmodes.experiments.config import Study
from genmodes.experiments.grid import Cell
from genmodes.experiments.records import CellRecord, ResultRow, Timings, sha256_json
from genmodes.io import disk_error_message
from genmodes.timing import Timer


@dataclass
class PreparedCell:
    """A cell ready to score: what its condition prepared, and the text before each question's choices
    (the shared ``prefix``, then ``context_for(question)``; inside the chat template when the study
    scores in it)."""

    prepared: Prepared
    prefix: str
    context_for: Callable[[Question], str]
    seconds: float


def prepare_cell(study: Study, cell: Cell, datasets: dict[str, Dataset], workdir: Path, shared_dir: Path, *,
                 device: str | None = None, model_cache: str | None = None, progress: bool = True) -> PreparedCell:
    """Seed, build the model stage, apply the context stage (or let a baseline score)."""
    import torch

    ctx = CellContext(model_spec=cell.model, dataset=datasets[str(cell.dataset.name)], seed=cell.seed,
                      workdir=workdir, shared_dir=shared_dir, model_cache=model_cache, device=device,
                      progress=progress, datasets=dict(datasets), dataset_name=str(cell.dataset.name),
                      batch_tokens=study.scoring.batch_tokens, chat_template=study.scoring.chat_template)
    torch.manual_seed(cell.seed)
    random.seed(cell.seed)
    with Timer() as t:
        try:
            prepared = prepare(ctx, cell.condition.stages)
        except GenmodesError:
            raise
        except Exception as e:  # noqa: BLE001 - only filesystem failures are turned into a line
            msg = disk_error_message(e, workdir)
            if msg is None:
                raise
            raise DiskError(f"cell {cell.id}: {msg}") from None
    prefix, context_for = prepared.prefix, prepared.context_for
    if study.scoring.chat_template and prepared.score_questions is None:
        from genmodes.chat import wrap

        prefix, context_for = wrap(prepared.tokenizer, prefix, context_for)
    return PreparedCell(prepared, prefix, context_for, t.seconds)


def measure_recall(study: Study, cell: Cell, ds: Dataset, ready: PreparedCell, scores: list[list[Any]]) -> None:
    """The recall gate of a model stage that learns the dataset (``RECALL_GATE``): its recall splits
    scored on the built model with no context, into the model stage's record (``recall_*``). A cell
    whose context stage adds nothing scored exactly that already (``scores``); any other cell scores
    them again without its context. A stage that scored them already (a stopping rule) is left as it
    is; a study that scores no recall split gets the gate with no recall (not a test)."""
    from genmodes.conditions import model_stage
    from genmodes.scoring import chosen
    from genmodes.training.recall import RecallProbe, recall_questions

    stages, prepared = cell.condition.stages, ready.prepared
    if stages.is_baseline or not getattr(model_stage(stages.model), "RECALL_GATE", False):
        return
    info = prepared.model_info
    if info is None or prepared.model is None:
        return
    splits = [s for s in ds.meta.get("recall_splits") or [] if s in ds.splits]
    if info.recall_accuracy is not None and info.recall_splits == splits:
        return
    update: dict[str, Any] = {"recall_splits": splits, "recall_accuracy": None, "recall_questions": None}
    if splits:
        if not prepared.prefix and prepared.question_context is None:
            right = [chosen(sc) == q.answer for q, sc in zip(ds.questions, scores) if q.split in splits]
            accuracy, n = sum(right) / len(right), len(right)
        else:
            probe = RecallProbe(recall_questions(ds), batch_tokens=study.scoring.batch_tokens,
                                chat_template=study.scoring.chat_template)
            got = probe.score(prepared.model, prepared.tokenizer)
            accuracy, n = got.accuracy, got.questions
        update.update(recall_accuracy=round(accuracy, 6), recall_questions=n)
    prepared.model_info = info.model_copy(update=update)


def measure_calibration(study: Study, cell: Cell, ds: Dataset, ready: PreparedCell, scores: list[list[Any]]) -> None:
    """The calibration ladder of a dataset that declares one (``meta["calibration_splits"]``, split ->
    threshold), for any cell with a model: each split scored on the built model with the question's
    own context, into the model stage's record (``calibration``), so every model of the study shows
    whether it reads its context and the gate of a cell that puts documents before the question can
    say whether its results test their use (:mod:`genmodes.experiments.gates`). A cell whose context
    stage adds nothing scored exactly that already (``scores``); any other cell scores them again. A
    declared split the study does not score is recorded as not scored (its rung fails)."""
    from genmodes.conditions.base import CalibrationRung, ModelStageInfo
    from genmodes.scoring import chosen
    from genmodes.training.recall import RecallProbe

    declared = ds.meta.get("calibration_splits") or {}
    prepared = ready.prepared
    if not declared or cell.condition.stages.is_baseline or prepared.model is None:
        return
    info = prepared.model_info if prepared.model_info is not None else ModelStageInfo()
    thresholds = {s: float(t) for s, t in declared.items()}
    if info.calibration is not None and {r.split: r.threshold for r in info.calibration} == thresholds:
        return
    scored = [s for s in thresholds if s in ds.splits]
    accuracy: dict[str, float] = {}
    counts = {s: sum(q.split == s for q in ds.questions) for s in scored}
    if scored and not prepared.prefix and prepared.question_context is None:
        for s in scored:
            right = [chosen(sc) == q.answer for q, sc in zip(ds.questions, scores) if q.split == s]
            accuracy[s] = round(sum(right) / len(right), 6)
    elif scored:
        qs = [q for q in ds.questions if q.split in counts]
        got = RecallProbe(qs, [q.split for q in qs], batch_tokens=study.scoring.batch_tokens,
                          chat_template=study.scoring.chat_template).score(prepared.model, prepared.tokenizer)
        accuracy.update({s: round(got.by_group[s], 6) for s in scored})
    prepared.model_info = info.model_copy(update={"calibration": [
        CalibrationRung(split=s, threshold=t, accuracy=accuracy.get(s), questions=counts.get(s, 0))
        for s, t in thresholds.items()]})


def score_cell(study: Study, cell: Cell, ds: Dataset, ready: PreparedCell, *, progress: bool = True
               ) -> tuple[list[list[Any]], list[str], int, float]:
    """Every question scored: (per-choice scores per question, the context before each question's
    choices, the shared prefix's tokens, seconds). A non-finite score stops the cell."""
    from genmodes.scoring import Scorer

    prepared = ready.prepared
    contexts = [ready.context_for(q) for q in ds.questions]
    if prepared.score_questions is not None:  # a shortcut baseline: no model, no tokens
        with Timer() as t:
            scores = prepared.score_questions(ds.questions)
        prefix_tokens = 0
    else:
        scorer = Scorer(prepared.model, prepared.tokenizer, batch_tokens=study.scoring.batch_tokens)
        with Timer() as t:
            scores = scorer.score([(c, q.choices) for c, q in zip(contexts, ds.questions)],
                                  prefix=ready.prefix, progress=progress, desc=cell.id)
        prefix_tokens = scorer.prefix_tokens(ready.prefix)
    _check_finite(cell, ds, scores, prepared)
    return scores, contexts, prefix_tokens, t.seconds


def _check_finite(cell: Cell, ds: Dataset, scores: list[list[Any]], prepared: Prepared) -> None:
    trained = prepared.model_info is not None and (prepared.model_info.loss_curve is not None
                                                  or bool(prepared.model_info.train_seconds))
    for q, sc in zip(ds.questions, scores):
        bad = [s for s in sc if not math.isfinite(s.logprob)]
        if bad:
            hint = " (the training diverged: lower 'lr'?)" if trained else ""
            raise NumericError(f"cell {cell.id}: question {q.id!r}: the score of {bad[0].choice!r} is "
                               f"{bad[0].logprob}, not a number{hint}; no result was written")


def result_rows(cell: Cell, ds: Dataset, ready: PreparedCell, scores: list[list[Any]], contexts: list[str],
                prefix_tokens: int) -> list[ResultRow]:
    from genmodes.scoring import chosen, split_prefix

    prepared, stages = ready.prepared, cell.condition.stages
    tok = prepared.tokenizer
    rows = []
    for q, ctx_text, sc in zip(ds.questions, contexts, scores):
        pick, pick_norm = chosen(sc), chosen(sc, normalized=True)
        retrieved = (prepared.retrieved or {}).get(q.id)
        rows.append(ResultRow(
            cell=cell.id, model=cell.model, dataset=str(cell.dataset.name), family=ds.family,
            split=q.split, subtype=q.subtype, condition=cell.condition.name, condition_kind=stages.kind,
            model_stage=stages.model, context_stage=stages.context, seed=cell.seed, question_id=q.id,
            answer=q.answer, chance=q.chance, scores=[s.to_json() for s in sc], chosen=pick, chosen_norm=pick_norm,
            correct=pick == q.answer, correct_norm=pick_norm == q.answer,
            context_tokens=(prefix_tokens + len(tok(split_prefix(ready.prefix)[1] + ctx_text,
                                                    add_special_tokens=False).input_ids)
                            if tok is not None else 0),
            context=q.context, retrieved=list(retrieved) if retrieved is not None else None,
            details=prepared.question_details.get(q.id, {})))
    return rows


def stage_records(prepared: Prepared, cell: Cell) -> dict[str, dict[str, Any]]:
    """Each stage's ``Info`` as the cell's record holds it (role -> fields)."""
    if cell.condition.is_baseline:
        return {"baseline": _dump(prepared.info)}
    return {"model": _dump(prepared.model_info), "context": _dump(prepared.info)}


def _dump(info: Any) -> dict[str, Any]:
    return info.model_dump(mode="json", exclude_none=True) if info is not None else {}


def cell_record(cell: Cell, ds: Dataset, ready: PreparedCell, n_rows: int, score_s: float, t_start: float,
                parts: dict[str, Any], dtype: str) -> CellRecord:
    prepared, stages = ready.prepared, cell.condition.stages
    return CellRecord(
        cell=cell.id, model=cell.model, dataset=str(cell.dataset.name), condition=cell.condition.name,
        condition_kind=stages.kind, model_stage=stages.model, context_stage=stages.context, seed=cell.seed,
        n_questions=n_rows,
        timings=Timings(prepare_s=round(ready.seconds, 3), score_s=round(score_s, 3),
                        total_s=round(time.perf_counter() - t_start, 3)),
        stages=stage_records(prepared, cell), dataset_hash=ds.meta["content_hash"],
        versions=provenance.package_versions(),
        model_info=provenance.model_info(prepared.model) if prepared.model is not None else None,
        dtype=dtype if prepared.model is not None else None,
        key=sha256_json(parts), key_parts=parts, finished_at=provenance.now())
