"""From-scratch lever sweep [P2]: many ``genmodes run`` jobs in parallel on one device, time-boxed.

Each run is ``genmodes run CONFIG --out OUTDIR/NAME --device DEVICE --no-report --set ...`` in its own
process group with a timeout (the smaller of its own and what is left of ``--budget``); one run failing
or timing out never stops the others. After each run: model weights and checkpoints are deleted (only
results, curves and cell records come back; the log is OUTDIR/logs/NAME.txt), and one line is appended to ``OUTDIR/summary.tsv``:

    name  status  rc  wall_s  train_s  steps  accuracies  command

``accuracies`` is ``condition:split=acc`` from the run's summary.csv; for a run that did not finish,
``curve@STEP:split=acc`` from the last curve point (64-question samples). ``OUTDIR/summary.md`` is the
same as a table at the end. The models are tiny (about 1-20 M parameters), so many share one GPU.

    python3 dev/scratch_sweep.py OUTDIR --device cuda --jobs 14 --budget 450
    python3 dev/scratch_sweep.py OUTDIR --list                 # the runs and their commands
    python3 dev/scratch_sweep.py OUTDIR --only 'rel_*' --device cpu --budget 60

Needs python3 with torch, transformers, tokenizers, safetensors, pydantic, pyyaml, rich, tqdm, numpy (no
matplotlib: --no-report); it puts the repository's ``src`` first on PYTHONPATH. The first line printed is
an import probe: a missing package shows there.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Relations at CPU scale (configs/latent_relations.yaml: 1,000 relations, 3 layers, d_model 128,
# 3,000 steps of 16 rows; ~10-15 min on one CPU thread): one lever changed per run.
REL = "configs/latent_relations.yaml"
CB = "configs/latent_codebook.yaml"
REL_ALL = ["parametric", "oracle_retrieval", "oracle_retrieval_hard"]
CB_ALL = ["parametric", "oracle_retrieval"]


def cond(names: list[str], key: str, value: object) -> list[str]:
    """The same setting in every condition (they share one trained model only if all agree)."""
    return [f"conditions.{n}.settings.{key}={value}" for n in names]


def rel(key: str, value: object) -> list[str]:
    return cond(REL_ALL, key, value)


def cbs(key: str, value: object) -> list[str]:
    return cond(CB_ALL, key, value)


def data(key: str, value: object, ds: str = "relations") -> list[str]:
    return [f"datasets.{ds}.settings.{key}={value}"]


@dataclass
class Run:
    name: str
    config: str
    sets: list[str] = field(default_factory=list)
    timeout: float = 600.0

    def command(self, out: Path, device: str) -> list[str]:
        cmd = ["genmodes", "run", self.config, "--out", str(out / self.name), "--device", device, "--no-report",
               "--dtype", "fp32"]  # tiny models are launch-bound: autocast casts only add kernels
        for s in self.sets:
            cmd += ["--set", s]
        return cmd


RUNS: list[Run] = [
    # a 30-second check of the launcher itself (only when named: --only smoke)
    Run("smoke", REL, data("n_relations", 200) + data("n_entities", 200) + data("n_episodes", 300)
        + data("n_episode_entities", 40) + rel("steps", 30) + rel("eval_every", 10)),
    # Paper size (P2: 20,000 relations; 60 codebooks), sized for ~6 min on one H200 shared with the rest.
    Run("rel_paper", "configs/latent_relations_paper.yaml"),
    Run("cb_paper", "configs/latent_codebook_paper.yaml"),
    # --- relations levers, CPU scale
    Run("rel_base", REL),
    Run("rel_q1", REL, data("episode_queries", 1)),
    Run("rel_q1_min2", REL, data("episode_queries", 1) + data("episode_facts_min", 2)),
    Run("rel_q2_min2", REL, data("episode_queries", 2) + data("episode_facts_min", 2)),
    # every episode 4 facts and one query: the fact's position says nothing (with 1-4 or 2-4 facts the
    # answer is mostly among the last facts, and the models above pick by recency)
    Run("rel_q1_f4", REL, data("episode_queries", 1) + data("episode_facts_min", 4)),
    Run("rel_fresh100", REL, data("fresh_episode_fraction", 1.0)),
    Run("rel_ent1000", REL, data("n_episode_entities", 1000)),
    Run("rel_nocopyinit", REL, rel("copy_init", False)),
    Run("rel_lr1e3", REL, rel("lr", 0.001)),
    Run("rel_lr6e3", REL, rel("lr", 0.006)),
    Run("rel_L2", REL, rel("n_layers", 2)),
    Run("rel_L4_d256", REL, rel("n_layers", 4) + rel("d_model", 256)),
    Run("rel_bs64", REL, rel("batch_size", 64)),
    Run("rel_steps12k", REL, rel("steps", 12000) + rel("eval_every", 1000)),
    Run("rel_q1_min2_steps12k", REL, data("episode_queries", 1) + data("episode_facts_min", 2)
        + rel("steps", 12000) + rel("eval_every", 1000)),
    Run("rel_q1_min2_fresh100", REL, data("episode_queries", 1) + data("episode_facts_min", 2)
        + data("fresh_episode_fraction", 1.0)),
    Run("rel_q1_min2_L4_d256", REL, data("episode_queries", 1) + data("episode_facts_min", 2)
        + rel("n_layers", 4) + rel("d_model", 256)),
    Run("rel_story_both", REL, data("fresh_entities", "both")),
    Run("rel_story_relation", REL, data("fresh_entities", "relation") + data("episode_split", False)),
    Run("rel_q1_min2_story_both", REL, data("episode_queries", 1) + data("episode_facts_min", 2)
        + data("fresh_entities", "both")),
    Run("rel_curr1000", REL, rel("curriculum_steps", 1000)),
    Run("rel_q1_min2_curr1000", REL, data("episode_queries", 1) + data("episode_facts_min", 2)
        + rel("curriculum_steps", 1000)),
    Run("rel_oracle_k", "configs/levers/rel_oracle_k.yaml"),
    # --- codebook levers, CPU scale (configs/latent_codebook.yaml: 600 steps of 16 rows of 256 tokens)
    Run("cb_base", CB),
    Run("cb_steps3000", CB, cbs("steps", 3000)),
    Run("cb_fresh3000", CB, data("n_fresh_episodes", 3000, "codebook")),
    Run("cb_freshlong", CB, data("fresh_min_len", 6, "codebook") + data("fresh_max_len", 12, "codebook")),
    Run("cb_freshlong_steps3000", CB, data("fresh_min_len", 6, "codebook") + data("fresh_max_len", 12, "codebook")
        + cbs("steps", 3000)),
    Run("cb_L4_d256", CB, cbs("n_layers", 4) + cbs("d_model", 256)),
    Run("cb_lr1e3", CB, cbs("lr", 0.001)),
    Run("cb_no_standalone", CB, data("standalone_definitions", False, "codebook")),
    Run("cb_curr200", CB, cbs("curriculum_steps", 200)),
    Run("cb_freshlong_curr200", CB, data("fresh_min_len", 6, "codebook") + data("fresh_max_len", 12, "codebook")
        + cbs("curriculum_steps", 200)),
    Run("cb_freshlong_fresh3000_steps3000", CB, data("fresh_min_len", 6, "codebook")
        + data("fresh_max_len", 12, "codebook") + data("n_fresh_episodes", 3000, "codebook") + cbs("steps", 3000)),
    # --- best guesses: the data levers together, at the CPU budget and at 4x the steps
    Run("rel_combo", REL, data("episode_queries", 1) + data("episode_facts_min", 2) + data("fresh_entities", "both")
        + rel("curriculum_steps", 1000)),
    Run("rel_combo_steps12k", REL, data("episode_queries", 1) + data("episode_facts_min", 2)
        + data("fresh_entities", "both") + rel("curriculum_steps", 1000) + rel("steps", 12000) + rel("eval_every", 1000)),
    Run("cb_combo_steps3000", CB, data("fresh_min_len", 6, "codebook") + data("fresh_max_len", 12, "codebook")
        + data("n_fresh_episodes", 3000, "codebook") + cbs("curriculum_steps", 500) + cbs("steps", 3000)),
]


def _start_order(runs: list[Run]) -> list[Run]:
    """Paper size first, then the long runs, then the rest alternating families: whatever the budget
    cuts is the end of both families' lists, not all of the codebook."""
    long = {"rel_paper", "cb_paper", "rel_steps12k", "rel_q1_min2_steps12k", "rel_combo_steps12k",
            "cb_combo_steps3000", "cb_steps3000", "cb_freshlong_fresh3000_steps3000", "rel_combo"}
    first = [r for r in runs if r.name in long]
    rel_, cb_ = ([r for r in runs if r.name not in long and r.name.startswith(p)] for p in ("rel_", "cb_"))
    rest = [r for pair in zip(rel_, cb_ + [None] * len(rel_)) for r in pair if r is not None]
    rest += cb_[len(rel_):]
    other = [r for r in runs if r not in first and r not in rest]
    return other + first + rest


RUNS = _start_order(RUNS)


def accuracies(run_dir: Path) -> tuple[str, float | None, int | None]:
    """(``cond:split=acc ...``, train seconds, steps) of a finished run, else from its last curve point."""
    summ = run_dir / "summary.csv"
    train_s, steps = None, None
    cells = run_dir / "cells.jsonl"
    if cells.exists():
        for line in cells.read_text().splitlines():
            try:
                info = json.loads(line).get("info", {})
            except json.JSONDecodeError:
                continue
            if info.get("train_seconds") and not info.get("reused"):
                train_s, steps = info["train_seconds"], info.get("steps")
    if summ.exists():
        with summ.open() as f:
            rows = list(csv.DictReader(f))
        acc = " ".join(f"{r['condition']}:{r['split']}={float(r['accuracy']):.3f}" for r in rows)
        return acc, train_s, steps
    curves = sorted(run_dir.glob("shared/**/curves.jsonl"))
    for c in curves:
        pts = [json.loads(x) for x in c.read_text().splitlines() if x.strip()]
        if pts:
            last = pts[-1]
            acc = " ".join(f"curve@{last['step']}:{k}={v:.3f}" for k, v in sorted(last["accuracy"].items()))
            return acc, last.get("seconds"), last["step"]
    return "", train_s, steps


def prune(run_dir: Path) -> None:
    """Drop weights and checkpoints and gzip per-question results: summaries, curves and records are
    what comes back, small."""
    import gzip
    import shutil

    for pat in ("**/*.safetensors", "**/*.pt", "**/*.bin"):
        for p in run_dir.glob(pat):
            try:
                p.unlink()
            except OSError:
                pass
    for p in run_dir.glob("**/results.jsonl"):
        try:
            with p.open("rb") as src, gzip.open(str(p) + ".gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
            p.unlink()
        except OSError:
            pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="output folder (run folders + summary.tsv)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--jobs", type=int, default=16, help="runs at once")
    ap.add_argument("--budget", type=float, default=450, help="seconds for the whole sweep; runs still going are stopped")
    ap.add_argument("--timeout", type=float, help="seconds per run (default: each run's own, 600)")
    ap.add_argument("--only", default="*", help="comma-separated name patterns (fnmatch)")
    ap.add_argument("--list", action="store_true", help="print the runs and their commands, run nothing")
    ap.add_argument("--keep-models", action="store_true", help="keep weights and checkpoints")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    pats = [p.strip() for p in args.only.split(",") if p.strip()]
    runs = [r for r in RUNS if any(fnmatch.fnmatch(r.name, p) for p in pats)
            and (r.name != "smoke" or "smoke" in pats)]
    if args.list:
        for r in runs:
            print(r.name, " ".join(r.command(out, args.device)))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TQDM_MININTERVAL", "10")  # fewer progress-bar lines in the logs
    probe = subprocess.run([sys.executable, "-c", "import torch, transformers, tokenizers, safetensors, pydantic, yaml,"
                            "rich, tqdm, genmodes.cli;"
                            "print('torch', torch.__version__, 'transformers', transformers.__version__,"
                            "'cuda', torch.cuda.is_available())"], env=env, cwd=ROOT, capture_output=True, text=True)
    print(probe.stdout.strip() or probe.stderr.strip()[-2000:], flush=True)
    t0 = time.monotonic()
    summary = out / "summary.tsv"
    if not summary.exists():
        summary.write_text("name\tstatus\trc\twall_s\ttrain_s\tsteps\taccuracies\tcommand\n")
    pending = list(runs)
    active: dict[str, tuple[Run, subprocess.Popen, float, float]] = {}
    results: list[tuple[str, ...]] = []

    def finish(r: Run, p: subprocess.Popen, started: float, status: str) -> None:
        run_dir = out / r.name
        log = out / "logs" / f"{r.name}.txt"
        try:  # progress bars make long logs: the end (errors, the summary table) is what matters
            data = log.read_bytes()
            if len(data) > 40_000:
                log.write_bytes(b"[...]\n" + data[-40_000:])
        except OSError:
            pass
        acc, train_s, steps = accuracies(run_dir)
        if not args.keep_models:
            prune(run_dir)
        cmd = "PYTHONPATH=src python3 -m genmodes.cli " + " ".join(r.command(out, args.device)[1:])
        row = (r.name, status, str(p.returncode), f"{time.monotonic() - started:.0f}",
               f"{train_s:.0f}" if isinstance(train_s, (int, float)) else "", str(steps or ""), acc, cmd)
        results.append(row)
        with summary.open("a") as f:
            f.write("\t".join(row) + "\n")
        print(f"[{time.monotonic() - t0:5.0f}s] {r.name}: {status} rc={p.returncode} {acc}", flush=True)

    while pending or active:
        left = args.budget - (time.monotonic() - t0)
        while pending and len(active) < args.jobs and left > 20:
            r = pending.pop(0)
            (out / "logs").mkdir(parents=True, exist_ok=True)
            log = open(out / "logs" / f"{r.name}.txt", "w")  # the run folder must not exist before genmodes makes it
            cmd = [sys.executable, "-m", "genmodes.cli"] + r.command(out, args.device)[1:]
            try:
                p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
            except OSError as e:
                log.write(f"could not start: {e}\n")
                log.close()
                continue
            log.close()
            now = time.monotonic()
            active[r.name] = (r, p, now, now + min(args.timeout or r.timeout, left - 10))
            print(f"[{now - t0:5.0f}s] started {r.name}", flush=True)
        for name, (r, p, started, deadline) in list(active.items()):
            if p.poll() is not None:
                del active[name]
                finish(r, p, started, "ok" if p.returncode == 0 else "error")
            elif time.monotonic() > deadline:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        os.killpg(p.pid, signal.SIGKILL)
                        p.wait()
                except ProcessLookupError:
                    pass
                del active[name]
                finish(r, p, started, "timeout")
        if pending and args.budget - (time.monotonic() - t0) <= 20 and not active:
            for r in pending:
                results.append((r.name, "not started", "", "", "", "", "", ""))
            pending = []
        time.sleep(1)
    with (out / "summary.md").open("w") as f:
        f.write("| run | status | wall s | train s | steps | accuracies |\n|---|---|---:|---:|---:|---|\n")
        for row in results:
            f.write(f"| {row[0]} | {row[1]} | {row[3]} | {row[4]} | {row[5]} | {row[6]} |\n")
    print(f"done in {time.monotonic() - t0:.0f}s: {out / 'summary.tsv'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
