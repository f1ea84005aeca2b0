"""Summary rows (model x dataset x split x condition): accuracy, standard error, chance, recall gate.

The one aggregation both the runner (``summary.csv``) and the report use; it lives with the runner
because the report sits above the experiments layer and reads it from here. Error bars follow the
P1 protocol: standard errors over inference subtypes. A group is a (subtype, seed) pair; the standard
error is the sample sd of the group accuracies over sqrt(#groups). With a single group there is no
spread to measure, so the binomial standard error sqrt(p(1-p)/n) stands in.

Pure Python on purpose: the report imports it and must not import torch.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from genmodes.experiments.gates import Gate, group_gate
from genmodes.experiments.records import ResultRow

# model first: a several-model study's rows then read as one block per model; a one-model summary has
# the same model on every row
# gate: the recall gate of the row's cells (genmodes.experiments.gates): pass, fail, or empty where none applies
SUMMARY_COLUMNS = ("model", "dataset", "split", "condition", "n", "accuracy", "stderr", "chance", "gate")


def _sem(values: Sequence[float]) -> float:
    n = len(values)
    m = sum(values) / n
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1) / n)


def summarize(rows: Iterable[ResultRow], gates: Mapping[str, Gate] | None = None) -> list[dict[str, Any]]:
    """One row per (model, dataset, split, condition) with ``n, accuracy, stderr, chance, gate``
    (``gates``: cell id -> its recall gate, :func:`genmodes.experiments.gates.cell_gates`; without
    them every ``gate`` is empty).

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
        n = len(g)
        acc = sum(r.correct for r in g) / n
        by_group: dict[tuple[str, int], list[bool]] = {}
        for r in g:
            by_group.setdefault((r.subtype, r.seed), []).append(r.correct)
        if len(by_group) > 1:
            stderr = _sem([sum(v) / len(v) for v in by_group.values()])
        else:
            stderr = math.sqrt(acc * (1 - acc) / n)
        chance = sum(r.chance for r in g) / n
        out.append({"model": m, "dataset": d, "split": s, "condition": c, "n": n, "accuracy": acc,
                    "stderr": stderr, "chance": chance})
    for row in out:
        cells = [r.cell for r in groups[(row["dataset"], row["split"], row["condition"], row["model"])]]
        row["gate"] = group_gate(row["split"], cells, gates or {})
    return out


def write_summary_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write summary rows (from :func:`summarize`) as CSV; a temporary file is renamed into place, so
    a reader never sees half a file."""
    import io

    from genmodes.io import atomic_write

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return atomic_write(path, buf.getvalue(), if_changed=True)
