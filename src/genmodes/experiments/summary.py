"""Summary rows (model x dataset x split x condition): accuracy, its 95% interval, chance, recall gate.

The one aggregation both the runner (``summary.csv``) and the report use; it lives with the runner
because the report sits above the experiments layer and reads it from here. ``ci_low`` and
``ci_high`` are the 95% interval over questions of :mod:`genmodes.experiments.statistics` (Wilson for
one (subtype, seed) group, a seeded cluster bootstrap over several); ``stderr`` is the standard error
of the same pooled accuracy (binomial for one group, else the larger of binomial and the bootstrap's).
Accuracy, interval and chance are fractions. ``gate`` is the recall gate of a trained model's latent
row (:mod:`genmodes.experiments.gates`): ``pass``, ``fail``, or empty where no gate applies.

A context stage may add columns of its own (its ``summary_columns(rows)`` hook, e.g. the thinking
stage's ``retrieval_rate``); they follow the standard columns, empty on rows of other stages.

No torch on purpose: the report imports it.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from genmodes.experiments.gates import Gate, group_gate
from genmodes.experiments.records import ResultRow
from genmodes.experiments.statistics import accuracy_of

# model first: a several-model study's rows then read as one block per model; a one-model summary has
# the same model on every row
SUMMARY_COLUMNS = ("model", "dataset", "split", "condition", "n", "accuracy", "stderr", "chance", "ci_low",
                   "ci_high", "gate")


def summarize(rows: Iterable[ResultRow], gates: Mapping[str, Gate] | None = None) -> list[dict[str, Any]]:
    """One row per (model, dataset, split, condition) with ``n, accuracy, stderr, chance, ci_low, ci_high,
    gate`` (``gates``: cell id -> its recall gate, :func:`genmodes.experiments.gates.cell_gates`;
    without them every ``gate`` is empty).

    Ordered by dataset (first appearance), split (first appearance within its dataset), condition
    (first appearance), then model (first appearance): several models' rows of one condition sit
    together.
    """
    groups: dict[tuple[str, str, str, str], list[ResultRow]] = {}
    ds_order: dict[str, int] = {}
    split_order: dict[tuple[str, str], int] = {}
    cond_order: dict[str, int] = {}
    model_order: dict[str, int] = {}
    for r in rows:
        d, s, c, m = r.dataset, r.split, r.condition, r.model
        ds_order.setdefault(d, len(ds_order))
        split_order.setdefault((d, s), len(split_order))
        cond_order.setdefault(c, len(cond_order))
        model_order.setdefault(m, len(model_order))
        groups.setdefault((d, s, c, m), []).append(r)

    out = []
    for (d, s, c, m) in sorted(groups, key=lambda k: (ds_order[k[0]], split_order[(k[0], k[1])], cond_order[k[2]],
                                                      model_order[k[3]])):
        g = groups[(d, s, c, m)]
        a = accuracy_of(g)
        chance = sum(r.chance for r in g) / a.n
        out.append({"model": m, "dataset": d, "split": s, "condition": c, "n": a.n, "accuracy": a.accuracy,
                    "stderr": a.stderr, "chance": chance, "ci_low": a.low, "ci_high": a.high,
                    "gate": group_gate(s, [r.cell for r in g], gates or {}), **stage_columns(g)})
    return out


def stage_columns(rows: Sequence[ResultRow]) -> dict[str, Any]:
    """The columns the rows' context stage adds (its ``summary_columns`` hook), where it has one."""
    from genmodes.conditions import CONTEXT_STAGES, context_stage

    kinds = {r.context_stage for r in rows}
    if len(kinds) != 1 or next(iter(kinds)) not in CONTEXT_STAGES:
        return {}
    hook = getattr(context_stage(next(iter(kinds))), "summary_columns", None)
    return hook(list(rows)) if hook is not None else {}


def columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The standard columns, then the stages' own in the order first seen."""
    extra = dict.fromkeys(k for r in rows for k in r if k not in SUMMARY_COLUMNS)
    return [*SUMMARY_COLUMNS, *extra]


def write_summary_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write summary rows (from :func:`summarize`) as CSV; a temporary file is renamed into place, so
    a reader never sees half a file."""
    import io

    from genmodes.io import atomic_write

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns(rows), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return atomic_write(path, buf.getvalue(), if_changed=True)
