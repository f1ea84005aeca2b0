"""The study's own questions (config ``questions``), answered first in its report.

A study says what it asks, e.g. P1's "does fine-tuning that knows the facts fail the reversals that
retrieval gets right?", as differences: ``difference: [a, b]`` is condition a minus condition b on
the same questions of each split (paired: a bootstrap interval over questions and McNemar's test, as
the paired comparisons section computes them), ``split_difference: [s, t]`` is split s minus split t
for each condition (different questions: an unpaired bootstrap). Each row carries the recall gates
of the trained conditions in it: a difference involving a model that did not learn the facts is not a
test of generalization, and says so.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from genmodes.experiments.records import ResultRow
from genmodes.report import stats
from genmodes.report.common import DASH, Block, label_gate, models, pct, rows_by_label
from genmodes.report.run import Run


def unpaired_bootstrap_ci(x: Sequence[bool], y: Sequence[bool], resamples: int = stats.BOOTSTRAP_RESAMPLES,
                          seed: int = stats.BOOTSTRAP_SEED, level: float = 0.95) -> tuple[float, float]:
    """The interval of mean(x) - mean(y), each resampled over its own questions (seeded)."""
    import numpy as np

    if not x or not y:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    mx = rng.binomial(len(x), sum(x) / len(x), size=resamples) / len(x)
    my = rng.binomial(len(y), sum(y) / len(y), size=resamples) / len(y)
    lo, hi = np.quantile(mx - my, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def _points(x: float, sign: bool = False) -> str:
    return DASH if x is None or math.isnan(x) else stats._points(x, sign)


def _gates(run: Run, dataset: str, split: str, conditions: Sequence[str]) -> str:
    """The gates of the gated conditions among ``conditions`` on a latent split ("" where none applies)."""
    out = []
    for c in conditions:
        g = label_gate(run, dataset, c)
        if g is not None and g.applies_to(split):
            out.append(f"{c}: {g.label()}")
    return "; ".join(out)


def _by(rows: Sequence[ResultRow]) -> dict[tuple[str, str, str], list[ResultRow]]:
    by: dict[tuple[str, str, str], list[ResultRow]] = {}
    for r in rows:
        by.setdefault((r.dataset, r.split, r.condition), []).append(r)
    return by


def _per_model(run: Run) -> list[tuple[str, list[ResultRow]]]:
    """(label suffix, rows) per model: the rows relabelled ``condition · model`` when there are several."""
    rows, _ = rows_by_label(run)
    ms = models(run)
    if len(ms) <= 1:
        return [("", rows)]
    return [(f" · {m}", [r for r in rows if r.model == m]) for m in ms]


def _difference(run: Run, q: Any) -> list[list[str]]:
    body = []
    for suffix, rows in _per_model(run):
        a, b = (c + suffix for c in q.difference)
        for ds in run.dataset_order():
            mine = [r for r in rows if r.dataset == ds and r.condition in (a, b)
                    and (q.splits is None or r.split in q.splits)]
            for p in stats.paired_comparisons(mine, [b, a]):  # later minus earlier: a - b
                body.append([ds, p.split, f"{a} - {b}", str(p.n), f"{pct(p.acc_a)} vs {pct(p.acc_b)}",
                             f"{_points(p.diff, True)} [{_points(p.ci[0])}, {_points(p.ci[1])}]",
                             _p(p.p_mcnemar), _gates(run, ds, p.split, (a, b)) or DASH])
    return body


def _split_difference(run: Run, q: Any) -> list[list[str]]:
    s, t = q.split_difference
    body = []
    for suffix, rows in _per_model(run):
        by = _by(rows)
        for ds in run.dataset_order():
            for c in (c + suffix for c in q.conditions or run.condition_order()):
                x = [r.correct for r in by.get((ds, s, c), [])]
                y = [r.correct for r in by.get((ds, t, c), [])]
                if not x or not y:
                    continue
                diff = sum(x) / len(x) - sum(y) / len(y)
                lo, hi = unpaired_bootstrap_ci(x, y)
                body.append([ds, c, f"{s} - {t}", f"{len(x)}, {len(y)}",
                             f"{pct(sum(x) / len(x))} vs {pct(sum(y) / len(y))}",
                             f"{_points(diff, True)} [{_points(lo)}, {_points(hi)}]", DASH,
                             _gates(run, ds, s, [c]) or DASH])
    return body


def _p(p: float) -> str:
    return "1" if p >= 0.9995 else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def questions(run: Run) -> list[Block]:
    """One table per question of the config, in its order (nothing when the config asks none)."""
    qs = run.config.config.questions or []
    if not qs or not run.results:
        return []
    out: list[Block] = [("h", 2, "The study's questions"),
                        ("p", "Each question of the config as a difference in accuracy, in points, with its 95% "
                              "interval: between two conditions on the same questions (paired bootstrap over "
                              f"questions, {stats.BOOTSTRAP_RESAMPLES:,} resamples, and McNemar's exact test), or "
                              "between two splits of one condition (different questions: each resampled on its "
                              "own). A trained model's gate is beside its rows: where it did not learn the "
                              "facts, the difference is not a test of generalization.")]
    for q in qs:
        if q.difference is not None:
            body = _difference(run, q)
            headers = ["dataset", "split", "difference", "n", "accuracies", "points [95% CI]", "McNemar p", "gates"]
        else:
            body = _split_difference(run, q)
            headers = ["dataset", "condition", "difference", "n", "accuracies", "points [95% CI]", "McNemar p",
                       "gates"]
        out.append(("h", 3, q.ask))
        out.append(("table", headers, body) if body else ("p", "No finished cell answers it yet."))
    return out
