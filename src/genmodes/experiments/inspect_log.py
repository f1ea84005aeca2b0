"""A condition of a finished run as an inspect_ai evaluation log (``--to inspect``), for ``inspect view``.

One sample per scored question, built with inspect_ai's own types and written by its own writer, so
the file is theirs: ``input`` is the exact text genmodes scored before the choices (the condition's
documents, retrieved or in context, then the question; rebuilt as :func:`condition_contexts` rebuilds
it for lm-eval), ``choices`` the continuations, ``target`` the right one's letter (inspect's
multiple-choice convention), ``output`` the choice the model picked, and one score
(``genmodes_choice``: C or I) whose metadata holds every choice's log-probability and token count.
Sample metadata carries the split, subtype, chance and the row's extras (retrieved ids, thoughts).
Results hold the accuracy over all questions, its standard error as inspect computes it, and one
accuracy per split.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

from genmodes.errors import DataError

SCORER = "genmodes_choice"


def _letter(i: int, n: int) -> str:
    return chr(ord("A") + i) if n <= 26 else str(i)


def _require_inspect() -> None:
    import importlib.util

    if importlib.util.find_spec("inspect_ai") is None:
        raise DataError("the inspect export needs inspect_ai (pip install inspect_ai)")


def _cell_rows(run: Path, cell: str) -> dict[str, Any]:
    from genmodes.experiments.records import ResultRow, read_records

    path = run / "cells" / cell / "results.jsonl"
    if not path.is_file():
        raise DataError(f"{run}: cell {cell} has no results.jsonl; run the config first")
    return {r.question_id: r for r in read_records(path, ResultRow)}


def _sample(q: Any, row: Any, context: str, model_name: str, gate: str = "") -> Any:
    from inspect_ai.log import EvalSample
    from inspect_ai.model import ChatMessageAssistant, ChatMessageUser, ModelOutput
    from inspect_ai.scorer import CORRECT, INCORRECT, Score

    n = len(q.choices)
    picked = _letter(row.chosen, n)
    answer = f"ANSWER: {picked}"
    logprobs = [s.logprob for s in row.scores]
    explanation = "log-probabilities: " + ", ".join(f"{_letter(i, n)} {lp:.4f}" for i, lp in enumerate(logprobs))
    score = Score(value=CORRECT if row.correct else INCORRECT, answer=picked, explanation=explanation,
                  metadata={"logprobs": logprobs, "n_tokens": [s.n_tokens for s in row.scores],
                            "chosen": row.chosen, "chosen_norm": row.chosen_norm, "correct_norm": row.correct_norm,
                            "context_tokens": row.context_tokens})
    meta: dict[str, Any] = {"split": q.split, "subtype": q.subtype, "chance": row.chance, "answer": q.answer,
                            "question_context": q.context}
    if gate:  # the cell's recall gate on this (latent) split: fail means the result is not a test
        meta["gate"] = gate
    if row.retrieved is not None:
        meta["retrieved"] = row.retrieved
    if row.details:
        meta["details"] = row.details
    return EvalSample(id=q.id, epoch=1, input=context, choices=list(q.choices), target=_letter(q.answer, n),
                      messages=[ChatMessageUser(content=context), ChatMessageAssistant(content=answer)],
                      output=ModelOutput.from_content(model=model_name, content=answer),
                      scores={SCORER: score}, metadata=meta)


def _results(rows: list[Any]) -> Any:
    from inspect_ai.log import EvalMetric, EvalResults, EvalScore

    values = [1.0 if r.correct else 0.0 for r in rows]
    n = len(values)
    acc = sum(values) / n
    # inspect's stderr(): the sample standard deviation over sqrt(n)
    se = math.sqrt(sum((v - acc) ** 2 for v in values) / (n - 1) / n) if n > 1 else 0.0
    metrics = {"accuracy": EvalMetric(name="accuracy", value=acc), "stderr": EvalMetric(name="stderr", value=se)}
    for split in dict.fromkeys(r.split for r in rows):
        sv = [1.0 if r.correct else 0.0 for r in rows if r.split == split]
        key = split if split not in metrics else f"{split}_split"
        metrics[key] = EvalMetric(name=split, group="accuracy", value=sum(sv) / len(sv))
    return EvalResults(total_samples=n, completed_samples=n,
                       scores=[EvalScore(name=SCORER, scorer=SCORER, scored_samples=n, metrics=metrics)])


def _destination(dest: Path, name: str) -> Path:
    """``dest`` itself when it names a log file (.eval / .json), else ``dest/<name>.eval`` (a log
    folder, as ``inspect view --log-dir`` browses)."""
    if dest.suffix in (".eval", ".json"):
        if dest.is_dir():
            raise DataError(f"output {dest} is a folder; name a .eval file or a folder without that suffix")
        return dest
    if dest.exists() and not dest.is_dir():
        raise DataError(f"output {dest} exists and is not a folder (name a .eval or .json file to write one log)")
    return dest / f"{name}.eval"


def to_inspect(run_dir: str | os.PathLike, dest: str | os.PathLike, condition: str, dataset: str | None = None,
               seed: int | None = None, device: str | None = None) -> Path:
    """Write the cell (condition x dataset x seed) of a finished run as an inspect_ai log; returns its path.
    The file appears whole or not at all (written beside its place, then renamed)."""
    _require_inspect()
    from inspect_ai.log import EvalConfig, EvalDataset, EvalLog, EvalPlan, EvalPlanStep, EvalSpec, EvalStats
    from inspect_ai.log import write_eval_log

    from genmodes import __version__
    from genmodes.experiments.export import condition_contexts
    from genmodes.io import atomic_file

    run = Path(run_dir)
    ds, contexts, _, _, record, _ = condition_contexts(run, condition, dataset, seed, device, lm_eval=False)
    rows = _cell_rows(run, record.cell)
    missing = [q.id for q in ds.questions if q.id not in rows]
    if missing:
        raise DataError(f"{run}: cell {record.cell} has no result for question {missing[0]!r}; rerun the config")
    model_name = f"genmodes/{record.model}" if record.model_info is not None else f"genmodes/{record.condition_kind}"
    from genmodes.experiments.gates import export_metadata, run_threshold, split_gate

    threshold = run_threshold(run)
    samples = [_sample(q, rows[q.id], contexts[q.id], model_name, split_gate(record, threshold, q.split))
               for q in ds.questions]
    ordered = [rows[q.id] for q in ds.questions]
    task = f"{record.dataset}/{record.condition}"
    ident = hashlib.sha256(f"{run.resolve()}|{record.cell}|{record.key}".encode()).hexdigest()[:22]
    spec = EvalSpec(
        eval_id=ident, run_id=ident, created=record.finished_at, task=task, task_id=record.key[:22],
        task_version=0, dataset=EvalDataset(name=record.dataset, location=str(run.resolve()), samples=len(samples),
                                            sample_ids=[q.id for q in ds.questions], shuffled=False),
        model=model_name, config=EvalConfig(), packages={"genmodes": __version__},
        metadata={"run": str(run.resolve()), "cell": record.cell, "condition": record.condition,
                  "condition_kind": record.condition_kind, "model_stage": record.model_stage,
                  "context_stage": record.context_stage, "seed": record.seed, "dataset_hash": record.dataset_hash,
                  "model_spec": record.model, "info": record.info, **export_metadata(record, threshold)})
    plan = EvalPlan(name="genmodes", steps=[EvalPlanStep(solver=f"genmodes/{record.condition_kind}",
                                                         params=record.key_parts.get("condition") or {})])
    log = EvalLog(status="success", eval=spec, plan=plan, results=_results(ordered),
                  stats=EvalStats(started_at=record.finished_at, completed_at=record.finished_at), samples=samples)
    target = _destination(Path(dest), f"genmodes_{record.cell}")
    with atomic_file(target) as tmp:
        write_eval_log(log, location=str(tmp), format="json" if target.suffix == ".json" else "eval")
    return target
