"""Statistics a paper reports beside a mean: binomial standard errors and Wilson intervals, and
paired comparisons of two conditions on the same questions.

Every condition of a run answers the same questions, so the honest comparison is paired: per
question, the difference of correctness (1, 0 or -1). Its mean is the accuracy difference; its 95%
interval comes from a seeded paired bootstrap over questions (resampling questions, both conditions
together), and McNemar's exact test asks whether the discordant questions (one right, the other
wrong) split unevenly. This is the comparison of P1's "in-context beats fine-tuning on reversals".

numpy only (the report never imports torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from genmodes.experiments.records import ResultRow

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
Z95 = 1.959963984540054


def binomial_stderr(k: int, n: int) -> float:
    return math.sqrt((k / n) * (1 - k / n) / n) if n else float("nan")


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n (sensible at 0% and 100%, unlike the Wald one)."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: b and c are the discordant counts (A right only, B right only)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_bootstrap_ci(diffs: Sequence[int], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of per-question differences in {-1, 0, 1}.

    Resampling n questions with replacement only changes how many of each value are drawn, so the
    resample counts are drawn directly from the multinomial: the same distribution, O(resamples)."""
    import numpy as np

    n = len(diffs)
    if n == 0:
        return float("nan"), float("nan")
    counts = np.array([sum(1 for d in diffs if d == v) for v in (-1, 0, 1)], dtype=float)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts / n, size=resamples)
    means = (draws[:, 2] - draws[:, 0]) / n
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


@dataclass
class Paired:
    dataset: str
    split: str
    a: str  # the difference is a - b
    b: str
    n: int  # questions both answered (matched by seed and question id)
    acc_a: float
    acc_b: float
    diff: float
    ci: tuple[float, float]
    only_a: int  # a right, b wrong
    only_b: int
    p_mcnemar: float

    def sentence(self) -> str:
        return (f"{self.a} - {self.b} on {self.split}: {_points(self.diff, sign=True)} points "
                f"[{_points(self.ci[0])}, {_points(self.ci[1])}]")


def _points(x: float, sign: bool = False) -> str:
    v = round(100 * x)
    v = 0 if v == 0 else v  # no "-0"
    return f"{v:+d}" if sign else f"{v:d}"


def paired_comparisons(rows: Iterable[ResultRow], conditions: Sequence[str],
                       resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> list[Paired]:
    """Every pair of ``conditions`` (later minus earlier, in the given order) on every (dataset, split),
    over the questions both answered. The bootstrap seed is fixed: the same run, the same intervals."""
    by: dict[tuple[str, str], dict[str, dict[tuple[int, str], bool]]] = {}
    for r in rows:
        by.setdefault((r.dataset, r.split), {}).setdefault(r.condition, {})[(r.seed, r.question_id)] = r.correct
    out: list[Paired] = []
    for (ds, sp), per_cond in by.items():
        present = [c for c in conditions if c in per_cond]
        for j, a in enumerate(present):
            for b in present[:j]:
                common = sorted(set(per_cond[a]) & set(per_cond[b]), key=str)
                if not common:
                    continue
                ca = [per_cond[a][k] for k in common]
                cb = [per_cond[b][k] for k in common]
                diffs = [int(x) - int(y) for x, y in zip(ca, cb)]
                n = len(common)
                out.append(Paired(ds, sp, a, b, n, sum(ca) / n, sum(cb) / n, sum(diffs) / n,
                                  paired_bootstrap_ci(diffs, resamples, seed),
                                  diffs.count(1), diffs.count(-1), mcnemar_exact(diffs.count(1), diffs.count(-1))))
    return out
