"""Paired comparisons of two conditions on the same questions, as the report shows them: the ones a
study declares (``compare:`` in its config) and, for exploration, every pair; each set Holm-corrected.

Every condition of a run answers the same questions, so the honest comparison is paired: per
question, the difference of correctness (1, 0 or -1). Its mean is the accuracy difference; its 95%
interval comes from a seeded paired bootstrap over questions (resampling questions, both conditions
together), and McNemar's exact test asks whether the discordant questions (one right, the other
wrong) split unevenly. This is the comparison of P1's "in-context beats fine-tuning on reversals".
The statistics themselves are defined once, in :mod:`genmodes.experiments.statistics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from genmodes.experiments.records import ResultRow
from genmodes.experiments.statistics import (ALPHA, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, binomial_stderr,  # noqa: F401
                                             holm, mcnemar_exact, paired_bootstrap_ci, unpaired_bootstrap_ci,
                                             wilson_interval)


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
    p_holm: float = float("nan")  # corrected over the set it was shown with (see holm_correct)

    @property
    def significant(self) -> bool:
        return self.p_holm < ALPHA

    def sentence(self) -> str:
        return (f"{self.a} - {self.b} on {self.dataset} / {self.split}: {points(self.diff, sign=True)} points "
                f"[{points(self.ci[0])}, {points(self.ci[1])}]")


def points(x: float, sign: bool = False) -> str:
    v = round(100 * x)
    v = 0 if v == 0 else v  # no "-0"
    return f"{v:+d}" if sign else f"{v:d}"


Answers = dict[tuple[str, str], dict[str, dict[tuple[int, str], bool]]]


def answers(rows: Iterable[ResultRow]) -> Answers:
    """(dataset, split) -> condition -> (seed, question id) -> correct."""
    by: Answers = {}
    for r in rows:
        by.setdefault((r.dataset, r.split), {}).setdefault(r.condition, {})[(r.seed, r.question_id)] = r.correct
    return by


def compare(by: Answers, dataset: str, split: str, a: str, b: str, resamples: int = BOOTSTRAP_RESAMPLES,
            seed: int = BOOTSTRAP_SEED) -> Paired | None:
    """``a - b`` on (dataset, split) over the questions both answered (None: no question in common)."""
    per_cond = by.get((dataset, split), {})
    if a not in per_cond or b not in per_cond:
        return None
    common = sorted(set(per_cond[a]) & set(per_cond[b]), key=str)
    if not common:
        return None
    ca = [per_cond[a][k] for k in common]
    cb = [per_cond[b][k] for k in common]
    diffs = [int(x) - int(y) for x, y in zip(ca, cb)]
    n = len(common)
    return Paired(dataset, split, a, b, n, sum(ca) / n, sum(cb) / n, sum(diffs) / n,
                  paired_bootstrap_ci(diffs, resamples, seed), diffs.count(1), diffs.count(-1),
                  mcnemar_exact(diffs.count(1), diffs.count(-1)))


def holm_correct(comps: list[Paired]) -> list[Paired]:
    """Set each comparison's ``p_holm``: Holm's correction over ``comps`` as one family."""
    for p, adj in zip(comps, holm([p.p_mcnemar for p in comps])):
        p.p_holm = adj
    return comps


def paired_comparisons(rows: Iterable[ResultRow], conditions: Sequence[str],
                       resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> list[Paired]:
    """Every pair of ``conditions`` (later minus earlier, in the given order) on every (dataset, split),
    over the questions both answered, Holm-corrected over all of them. The bootstrap seed is fixed:
    the same run, the same intervals."""
    by = answers(rows)
    out: list[Paired] = []
    for (ds, sp), per_cond in by.items():
        present = [c for c in conditions if c in per_cond]
        for j, a in enumerate(present):
            for b in present[:j]:
                p = compare(by, ds, sp, a, b, resamples, seed)
                if p is not None:
                    out.append(p)
    return holm_correct(out)


def declared_comparisons(rows: Iterable[ResultRow], declared: Sequence[Any], labels: dict[str, list[str]],
                         resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> list[Paired]:
    """The comparisons a study declares (``compare:`` entries with ``a``, ``b`` and optional ``dataset``
    and ``split``) on every (dataset, split) they name or, unnamed, where both conditions answered,
    Holm-corrected as one family. ``labels``: a condition's labels in the rows (``name · model`` per
    model in a several-model run), paired label by label."""
    by = answers(rows)
    out: list[Paired] = []
    for spec in declared:
        for la, lb in zip(labels.get(spec.a, []), labels.get(spec.b, [])):
            for ds, sp in by:
                if (spec.dataset is None or ds == spec.dataset) and (spec.split is None or sp == spec.split):
                    p = compare(by, ds, sp, la, lb, resamples, seed)
                    if p is not None:
                        out.append(p)
    return holm_correct(out)
