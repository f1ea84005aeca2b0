"""The statistics policy, defined once: the interval every accuracy is shown with, and the paired test
every comparison of two conditions uses. ``summary.csv``, the terminal table, every report table and
every figure take their numbers from here, so they cannot disagree.

**An accuracy's 95% interval is over questions.** Its questions fall in groups, one per (subtype,
seed) pair: P1 puts error bars over inference subtypes, and seeds repeat the whole experiment.

- One group: the Wilson score interval of k correct out of n (:func:`wilson_interval`).
- Several groups: a two-stage cluster bootstrap (:func:`cluster_bootstrap_interval`): resample the
  groups with replacement, then each drawn group's questions with replacement, and take the 2.5th and
  97.5th percentiles of the pooled accuracy; 10,000 resamples from a fixed seed, so the same results
  give the same interval. It is widened to at least the Wilson interval: a bootstrap over a few
  groups, or over groups that are all at 0% or 100%, can be narrower than the questions allow.

Either way the interval contains the accuracy it belongs to (the Wilson interval always does).

**A difference between two conditions is paired**: every condition answers the same questions, so
per question (matched by seed and question id) the difference of correctness is 1, 0 or -1. Its mean
is the accuracy difference, its 95% interval a seeded paired bootstrap over questions, and its test
McNemar's exact test on the questions only one of the two got right (scipy's binomial test). A set of
comparisons is corrected for multiplicity with Holm's step-down method (:func:`holm`); a comparison is
called significant when its corrected p is below 0.05.

numpy and scipy only (the report never imports torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

LEVEL = 0.95
ALPHA = 0.05  # a corrected p below this is "significant"
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0

WILSON = "Wilson"
CLUSTER = "cluster bootstrap"

POLICY = ("Every accuracy is shown with its 95% interval over questions: the Wilson score interval when its "
          "questions form one (subtype, seed) group; with several groups, a two-stage cluster bootstrap "
          f"(groups resampled, then questions within each; {BOOTSTRAP_RESAMPLES:,} resamples, seed "
          f"{BOOTSTRAP_SEED}), widened to at least the Wilson interval. The same interval is the [low, high] "
          "of every table and the error bar of every figure; n is the number of answers (questions x seeds) "
          "it rests on. Differences between conditions are paired by question: a paired bootstrap interval "
          "and McNemar's exact test, Holm-corrected over the comparisons shown together; \"significant\" "
          f"means a corrected p below {ALPHA:g}.")


def format_accuracy(acc: float, low: float | None, high: float | None) -> str:
    """The one way an accuracy and its interval are written, in the terminal and in every report
    table: ``47.5% [40.0, 55.0]`` (percentages; the interval left out when undefined)."""
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return f"{100 * acc:.1f}%"
    return f"{100 * acc:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def binomial_stderr(k: int, n: int) -> float:
    return math.sqrt((k / n) * (1 - k / n) / n) if n else float("nan")


def wilson_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n (sensible at 0% and 100%, unlike the Wald one)."""
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return max(0.0, float(ci.low)), min(1.0, float(ci.high))


@lru_cache(maxsize=4096)
def _cluster_bootstrap(groups: tuple[tuple[int, int], ...], resamples: int, seed: int,
                       level: float) -> tuple[float, float, float]:
    import numpy as np

    k = np.array([g[0] for g in groups], dtype=float)
    n = np.array([g[1] for g in groups], dtype=np.int64)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(groups), size=(resamples, len(groups)))
    sizes = n[drawn]
    correct = rng.binomial(sizes, (k / n)[drawn])  # a drawn group's questions, resampled
    acc = correct.sum(axis=1) / sizes.sum(axis=1)
    lo, hi = np.quantile(acc, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi), float(acc.std(ddof=1))


def cluster_bootstrap_interval(groups: Sequence[tuple[int, int]], resamples: int = BOOTSTRAP_RESAMPLES,
                               seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> tuple[float, float, float]:
    """(low, high, standard deviation) of the pooled accuracy under a two-stage bootstrap of
    ``groups`` ((correct, questions) per group, in any order: they are sorted first)."""
    key = tuple(sorted((int(k), int(n)) for k, n in groups if n > 0))
    if not key:
        return float("nan"), float("nan"), float("nan")
    return _cluster_bootstrap(key, resamples, seed, level)


@dataclass(frozen=True)
class Accuracy:
    """An accuracy with its interval (see the module docstring)."""

    k: int  # correct answers
    n: int  # answers (questions x seeds)
    groups: int  # (subtype, seed) groups
    low: float
    high: float
    stderr: float  # binomial for one group; else the larger of binomial and the bootstrap's
    method: str  # WILSON or CLUSTER

    @property
    def accuracy(self) -> float:
        return self.k / self.n if self.n else float("nan")


def accuracy(groups: dict[object, tuple[int, int]] | Sequence[tuple[int, int]]) -> Accuracy:
    """The accuracy over every question of ``groups`` ((correct, questions) per (subtype, seed) group)
    with its 95% interval: the policy of the module docstring."""
    counts = list(groups.values()) if isinstance(groups, dict) else list(groups)
    counts = [(int(k), int(n)) for k, n in counts if n > 0]
    k, n = sum(c[0] for c in counts), sum(c[1] for c in counts)
    lo, hi = wilson_interval(k, n)
    se = binomial_stderr(k, n)
    if len(counts) <= 1:
        return Accuracy(k, n, len(counts), lo, hi, se, WILSON)
    b_lo, b_hi, b_sd = cluster_bootstrap_interval(counts)
    return Accuracy(k, n, len(counts), min(lo, b_lo), max(hi, b_hi), max(se, b_sd), CLUSTER)


def accuracy_of(rows: Iterable[object]) -> Accuracy:
    """:func:`accuracy` of result rows (anything with ``subtype``, ``seed`` and ``correct``)."""
    groups: dict[tuple[str, int], list[int]] = {}
    for r in rows:
        g = groups.setdefault((r.subtype, r.seed), [0, 0])  # type: ignore[attr-defined]
        g[0] += bool(r.correct)  # type: ignore[attr-defined]
        g[1] += 1
    return accuracy({key: (k, n) for key, (k, n) in groups.items()})


# ------------------------------------------------------------------------------------------ paired

def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: b and c are the discordant counts (A right only, B right only)."""
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest

    return min(1.0, float(binomtest(b, b + c, 0.5).pvalue))


def paired_bootstrap_ci(diffs: Sequence[int], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                        level: float = LEVEL) -> tuple[float, float]:
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


def unpaired_bootstrap_ci(x: Sequence[bool], y: Sequence[bool], resamples: int = BOOTSTRAP_RESAMPLES,
                          seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of mean(x) - mean(y) for answers to different questions (two splits): each
    side resampled over its own questions (the count of right answers of a resample is binomial)."""
    import numpy as np

    if not x or not y:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    mx = rng.binomial(len(x), sum(x) / len(x), size=resamples) / len(x)
    my = rng.binomial(len(y), sum(y) / len(y), size=resamples) / len(y)
    lo, hi = np.quantile(mx - my, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): the i-th smallest p times (m - i),
    made non-decreasing, capped at 1. Controls the family-wise error rate over the set."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
