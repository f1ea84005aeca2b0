"""The lever tables of docs/RESULTS.md ("From scratch") from a sweep's summary.tsv (dev/scratch_sweep.py).

    python3 dev/scratch_sweep_table.py OUTDIR [--curves]

One markdown table per family (relations, codebook); a row per run, accuracies in percent (chance 25%),
the run's command being ``python3 dev/scratch_sweep.py OUT --only NAME`` (its --set list: ``--list``).
A run that did not finish shows its last curve point (64-question samples), marked with ``@step``.
``--curves`` adds the last and best curve point of each split, to tell a still-rising curve from a flat one.
``--figures DIR --tag TAG`` also draws each run's training curves (loss, accuracy per split) to
``DIR/latent_TAG_NAME_curves.png`` with the report's figure (matplotlib needed).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REL_COLS = [("parametric", "trained", "trained"), ("parametric", "heldout_reversal", "held-out rev."),
            ("parametric", "heldout_reversal_in_context", "in ctx (option facts)"),
            ("parametric", "heldout_reversal_in_context_copyable", "copyable"),
            ("parametric", "episode_in_context", "episode entities in ctx"),
            ("oracle_retrieval", "heldout_reversal", "oracle"),
            ("oracle_retrieval_hard", "heldout_reversal", "oracle, hard")]
CB_COLS = [("parametric", "seen", "seen"), ("parametric", "latent", "latent"),
           ("parametric", "latent_in_context", "latent, def. in ctx"),
           ("parametric", "practice_in_context", "new codebook in ctx"),
           ("oracle_retrieval", "latent", "oracle latent")]


def parse(acc: str) -> tuple[dict[tuple[str, str], float], str]:
    out, at = {}, ""
    for item in acc.split():
        key, _, val = item.rpartition("=")
        cond, _, split = key.partition(":")
        if cond.startswith("curve@"):
            at = "@" + cond[len("curve@"):]
            out[("parametric", split)] = float(val)  # curve points score each question alone
        else:
            out[(cond, split)] = float(val)
    return out, at


def curve_note(run_dir: Path) -> str:
    notes = []
    for c in sorted(run_dir.glob("shared/**/curves.jsonl")):
        pts = [json.loads(x) for x in c.read_text().splitlines() if x.strip()]
        if not pts:
            continue
        for split in sorted(pts[-1]["accuracy"]):
            vals = [p["accuracy"].get(split) for p in pts if split in p["accuracy"]]
            best = max(range(len(vals)), key=lambda i: vals[i])
            notes.append(f"{split} {100 * vals[-1]:.0f} (best {100 * vals[best]:.0f} @{pts[best]['step']})")
    return "; ".join(notes)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--curves", action="store_true")
    ap.add_argument("--figures", help="folder for each run's training-curve figure")
    ap.add_argument("--tag", default="gpu", help="file name part of the figures")
    args = ap.parse_args()
    out = Path(args.out)
    if args.figures:
        from genmodes.report import figures

        for run in sorted(p for p in out.iterdir() if p.is_dir() and p.name != "logs"):
            # a run folder can hold an abandoned model (other settings): draw the longest curve
            curves = [[json.loads(x) for x in c.read_text().splitlines() if x.strip()]
                      for c in sorted(run.glob("shared/scratch/*/curves.jsonl"))]
            pts = max(curves, key=lambda c: (c[-1]["step"] if c else -1), default=[])
            if pts:
                figures.training_curves(f"{run.name} ({args.tag}, seed 0)", pts,
                                        Path(args.figures) / f"latent_{args.tag}_{run.name}_curves.png")
    with (out / "summary.tsv").open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for family, cols, prefix in (("relations", REL_COLS, "rel"), ("codebook", CB_COLS, "cb")):
        mine = [r for r in rows if r["name"].startswith(prefix + "_")]
        if not mine:
            continue
        print(f"\n{family}:\n")
        head = ["run", "status", "train s", "steps"] + [c[2] for c in cols] + (["curves"] if args.curves else [])
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2 - args.curves) + ["---"] * args.curves) + "|")
        for r in mine:
            acc, at = parse(r["accuracies"])
            cells = [f"`{r['name']}`", r["status"] + (f" {at}" if at else ""), r["train_s"], r["steps"]]
            cells += [f"{100 * acc[(c, s)]:.1f}" if (c, s) in acc else "" for c, s, _ in cols]
            if args.curves:
                cells.append(curve_note(out / r["name"]))
            print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
