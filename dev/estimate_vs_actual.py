"""A dry run's estimate per cell beside what the run's cells took: train and test seconds estimated
(`genmodes run CONFIG --dry-run`, its printed table saved to a file) against each cell's recorded
train time and total time (cells.jsonl), with the ratio estimate / actual.

    genmodes run CONFIG --dry-run > DRY.txt 2>&1
    python dev/estimate_vs_actual.py RUN_FOLDER DRY.txt [DRY2.txt ...] [--seed N]

``--seed N``: only that seed's cells (e.g. the seed that ran alone, where another ran beside other jobs).

A cell the dry run marks "at most" (a stopping rule) is estimated at its max_epochs; where the run
stopped earlier the ratio is above 1 by design. Where the dry run also gives what such a cell costs
if its rule stops at its first check, a last line sums those: the total's other bound.
"""
import json
import re
import sys
from pathlib import Path

args = sys.argv[1:]
seed = None
if "--seed" in args:
    i = args.index("--seed")
    seed = int(args[i + 1])
    del args[i:i + 2]
run = Path(args[0])
cells = {c["cell"]: c for c in map(json.loads, open(run / "cells.jsonl")) if seed is None or c["seed"] == seed}
row = re.compile(r"^\s+(\S+__s\d+)\s+\d+\s+(?:to run|done|\S+)\s+(\d+)\s+(\d+)")
estimates = []
for path in args[1:]:
    text = Path(path).read_text()
    est = {m[1]: (int(m[2]), int(m[3])) for line in text.splitlines() if (m := row.match(line))}
    first = {m[1]: int(f[1]) for line in text.splitlines()
             if (m := row.match(line)) and (f := re.search(r"~(\d+) s if it stops at its first check", line))}
    step = re.search(r"training ([\d.]+) s/step", text)
    estimates.append((path, est, step[1] if step else "?", first))

head = "| cell | actual train s | actual total s |"
for path, _, step, _ in estimates:
    head += f" {Path(path).name} ({step} s/step): train + test ~s | ratio |"
print(head)
print("|---" * (3 + 2 * len(estimates)) + "|")
tot_act = 0.0
tot_est = [0] * len(estimates)
for name, c in cells.items():
    train = c["stages"].get("model", {}).get("train_seconds", 0.0) or 0.0
    total = c["timings"]["total_s"]
    tot_act += total
    line = f"| {name} | {train:.0f} | {total:.0f} |"
    for i, (_, est, _, _) in enumerate(estimates):
        tr, te = est.get(name, (0, 0))
        tot_est[i] += tr + te
        ratio = f"{(tr + te) / total:.2f}" if total >= 1 else "–"  # a baseline cell: milliseconds
        line += f" {tr} + {te} = {tr + te} | {ratio} |"
    print(line)
line = f"| all cells | | {tot_act:.0f} ({tot_act / 60:.1f} min) |"
for s in tot_est:
    line += f" {s} ({s / 60:.1f} min) | {s / tot_act:.2f} |"
print(line)
if any(first for *_, first in estimates):
    line = "| all cells, every stopping rule at its first check | | |"
    for (_, est, _, first), s in zip(estimates, tot_est):
        low = s - sum(sum(est[c]) - first[c] for c in first)
        line += f" {low} ({low / 60:.1f} min) | {low / tot_act:.2f} |" if first else " – | – |"
    print(line)
# a gauge of the machine's load during each dry run: the cells the run only scored with no stage of
# their own before it (prepared in under 2 s, no context stage but in-context documents), whose
# estimate is the scorer's calls alone
only = [n for n, c in cells.items() if c["timings"].get("prepare_s", 0.0) < 2.0 and c["timings"]["total_s"] >= 1
        and c.get("context_stage") in ("none", "in_context")]
if only:
    act = sum(cells[n]["timings"]["total_s"] for n in only)
    line = f"| cells the run only scored ({len(only)}, no thinking: the load gauge) | | {act:.0f} |"
    for _, est, _, _ in estimates:
        s = sum(sum(est.get(n, (0, 0))) for n in only)
        line += f" {s} | {s / act:.2f} |"
    print(line)
