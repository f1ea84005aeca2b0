"""Summary rows (dataset x split x condition): accuracy, standard error, chance.

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
from typing import Any, Iterable, Sequence

from genmodes.experiments.records import ResultRow

SUMMARY_COLUMNS = ("dataset", "split", "condition", "n", "accuracy", "stderr", "chance")


def _sem(values: Sequence[float]) -> float:
    n = len(values)
    m = sum(values) / n
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1) / n)


def summarize(rows: Iterable[ResultRow]) -> list[dict[str, Any]]:
    """One row per (dataset, split, condition) with ``n, accuracy, stderr, chance``.

    Ordered by dataset (first appearance), split (first appearance within its dataset), condition
    (first appearance). Rows are expected to come from one model; prefix ``condition`` with the
    model to compare several in one summary.
    """
    groups: dict[tuple[str, str, str], list[ResultRow]] = {}
    ds_order: dict[str, int] = {}
    split_order: dict[tuple[str, str], int] = {}
    cond_order: dict[str, int] = {}
    for r in rows:
        d, s, c = r.dataset, r.split, r.condition
        ds_order.setdefault(d, len(ds_order))
        split_order.setdefault((d, s), len(split_order))
        cond_order.setdefault(c, len(cond_order))
        groups.setdefault((d, s, c), []).append(r)

    out = []
    for (d, s, c) in sorted(groups, key=lambda k: (ds_order[k[0]], split_order[(k[0], k[1])], cond_order[k[2]])):
        g = groups[(d, s, c)]
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
        out.append({"dataset": d, "split": s, "condition": c, "n": n, "accuracy": acc,
                    "stderr": stderr, "chance": chance})
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
