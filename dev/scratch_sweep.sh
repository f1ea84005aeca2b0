#!/usr/bin/env bash
# The from-scratch lever sweep for one ~8-minute GPU batch.
#
# Exact command, from the repository root on the GPU machine (python3 with torch, transformers,
# tokenizers, safetensors, pydantic, pyyaml, rich, tqdm, numpy; the package itself comes from ./src;
# the first line printed is an import probe, so a missing wheel shows at once):
#
#   bash dev/scratch_sweep.sh "$OUT/scratch_sweep"
#
# = python3 dev/scratch_sweep.py "$OUT/scratch_sweep" --device cuda --jobs 16 --budget 450
# 38 runs (2 paper-size, 36 levers at CPU scale), up to 16 at once on the one GPU, every run in its own
# process group with a timeout; all are stopped by 450 s (7.5 min) so the call returns inside 8 min.
# One failing run never stops the others. Output (a few MB): OUTDIR/summary.tsv and summary.md (one line
# per run: status, train seconds, steps, accuracy per condition and split, its exact command),
# OUTDIR/logs/NAME.txt, and each run folder without weights (summary.csv, cells.jsonl, config.yaml,
# shared/scratch/*/curves.jsonl, results.jsonl.gz). A run cut by the budget reports its last curve point.
# Launcher self-check (30 s, CPU is fine): bash dev/scratch_sweep.sh /tmp/sweep_smoke --only smoke --device cpu
# (PYTHON=/path/to/python picks the interpreter; default python3)
# The runs and their commands: python3 dev/scratch_sweep.py OUT --list
# Tables: python3 dev/scratch_sweep_table.py OUTDIR --curves
set -u
cd "$(dirname "$0")/.."
OUTDIR="${1:?usage: dev/scratch_sweep.sh OUTDIR [extra scratch_sweep.py options]}"
shift
exec "${PYTHON:-python3}" dev/scratch_sweep.py "$OUTDIR" --device cuda --jobs 16 --budget 450 "$@"
