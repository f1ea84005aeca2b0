"""P3's criteria on a thinking run, per seed and over all seeds.

The report pools the seeds; this prints the same paired comparisons for each seed alone, so a lab note
can say whether the seeds agree. Per (dataset, split) of the latent splits, and for both semantic_b
latent splits together: the oracle-thought gate (oracle_thought minus finetune), rl+thinking minus
each control (paired bootstrap 95% interval, McNemar p), the share of rl+thinking's thoughts that
state every premise, and accuracy when they do and when they do not. The pooled lines equal the
report's (same statistics, same bootstrap seed).

    python dev/thinking_seeds.py runs/thinking [--thinker rl+thinking]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from genmodes.report import stats  # noqa: E402
from genmodes.report.run import load_run  # noqa: E402

CONTROLS = ["finetune", "finetune+thinking", "rl+empty_thought", "rl+shuffled_thought", "oracle_thought",
            "in_context", "augmented_a", "rl+generate_verify"]
SPLITS = [("semantic_b", "syllogism/transfer"), ("semantic_b", "category_holdout/transfer"),
          ("semantic_b", "syllogism+category_holdout"), ("reversal_b", "reversal/transfer"),
          ("semantic_a", "syllogism/rl"), ("semantic_a", "category_holdout/rl"), ("reversal_a", "reversal/rl")]


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def audit(rows: list, thinker: str, ds: str, split: str) -> str:
    mine = [r for r in rows if r.condition == thinker and r.dataset == ds and r.split == split]
    if not mine:
        return "-"
    stated = [r.correct for r in mine if r.details.get("retrieval") == "stated"]
    other = [r.correct for r in mine if r.details.get("retrieval") != "stated"]
    acc = lambda v: f"{pct(sum(v) / len(v))} (n={len(v)})" if v else "-"  # noqa: E731
    return f"stated {pct(len(stated) / len(mine))}; acc stated {acc(stated)}, not stated {acc(other)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--thinker", default="rl+thinking")
    args = ap.parse_args()
    run = load_run(args.run)
    rows = list(run.results)
    for r in rows:  # both semantic_b latent splits as one paired set (question ids are unique per split)
        if r.dataset == "semantic_b" and r.split in ("syllogism/transfer", "category_holdout/transfer"):
            rows.append(r.model_copy(update={"split": "syllogism+category_holdout",
                                             "question_id": f"{r.split}:{r.question_id}"}))
    seeds = sorted({r.seed for r in run.results})
    for label, keep in [(f"seed {s}", {s}) for s in seeds] + [("all seeds", set(seeds))]:
        sub = [r for r in rows if r.seed in keep]
        by = stats.answers(sub)
        print(f"== {label}")
        for ds, split in [("semantic_b", "syllogism+category_holdout"), ("reversal_b", "reversal/transfer")]:
            g = stats.compare(by, ds, split, "oracle_thought", "finetune")
            if g is not None:
                print(f"  gate (b) {ds} {split}: oracle_thought {pct(g.acc_a)} - finetune {pct(g.acc_b)} = "
                      f"{stats.points(g.diff, sign=True)} [{stats.points(g.ci[0])}, {stats.points(g.ci[1])}] n={g.n}")
        for ds, split in SPLITS:
            per = by.get((ds, split), {})
            if args.thinker not in per:
                continue
            t = per[args.thinker]
            print(f"  {ds} {split}: {args.thinker} {pct(sum(t.values()) / len(t))} (n={len(t)}); "
                  f"{audit(sub, args.thinker, ds, split)}")
            for c in CONTROLS:
                p = stats.compare(by, ds, split, args.thinker, c)
                if p is None:
                    continue
                print(f"    - {c:20s} {pct(p.acc_b):>6s}  diff {stats.points(p.diff, sign=True):>4s} "
                      f"[{stats.points(p.ci[0])}, {stats.points(p.ci[1])}]  McNemar p={p.p_mcnemar:.3g}  n={p.n}")


if __name__ == "__main__":
    main()
