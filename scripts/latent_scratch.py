"""Run a from-scratch latent-learning config without the experiment runner [P2].

Reads a ``configs/latent_*.yaml`` file, builds each dataset, and for every condition calls
``from_scratch.prepare`` then scores every question with the one Scorer, exactly as the runner does.
Writes ``OUT/results.json`` (per condition and split: accuracy, n, chance; plus the condition's info)
and ``OUT/curves.png`` (training curves of every trained model). Cells with the same training
settings share one trained model (``OUT/shared/scratch/<hash>``); a killed run resumes.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python scripts/latent_scratch.py \
        configs/latent_relations.yaml --out runs/latent_relations [--set steps=200] [--only parametric]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _value(s: str):
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", action="append", default=[], help="override a condition setting, key=value")
    ap.add_argument("--data", action="append", default=[], help="override a dataset setting, key=value")
    ap.add_argument("--only", action="append", default=None, help="run only these condition names")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch
    import yaml

    from genmodes.conditions import get_condition, make_settings
    from genmodes.conditions.base import CellContext
    from genmodes.data.families import make_dataset
    from genmodes.models.scratch import read_curves
    from genmodes.scoring import Scorer, accuracy

    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load(Path(args.config).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    over = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    dover = {k: _value(v) for k, v in (s.split("=", 1) for s in args.data)}
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    curves = {}
    for seed in cfg.get("seeds", [0]):
        for dspec in cfg["datasets"]:
            ds = make_dataset(dspec["family"], seed, {**dspec.get("settings", {}), **dover})
            splits = sorted({q.split for q in ds.questions})
            for cspec in cfg["conditions"]:
                if args.only and cspec["name"] not in args.only:
                    continue
                settings = make_settings(cspec["kind"], {**cspec.get("settings", {}), **over}, cspec["name"])
                cell = f"{dspec.get('name', dspec['family'])}-{cspec['name']}-s{seed}"
                ctx = CellContext(cfg.get("model", "scratch"), ds, seed, out / "cells" / cell,
                                  shared_dir=out / "shared", progress=True)
                t0 = time.perf_counter()
                prepared = get_condition(cspec["kind"]).prepare(ctx, settings)
                scorer = Scorer(prepared.model, prepared.tokenizer)
                t1 = time.perf_counter()
                by_split = {}
                for split in splits:
                    qs = [q for q in ds.questions if q.split == split]
                    scores = scorer.score([(prepared.context_for(q), q.choices) for q in qs], prefix=prepared.prefix)
                    by_split[split] = {"accuracy": accuracy(scores, [q.answer for q in qs]), "n": len(qs),
                                       "chance": sum(q.chance for q in qs) / len(qs)}
                results[cell] = {"condition": cspec["name"], "dataset": dspec.get("name", dspec["family"]),
                                 "seed": seed, "splits": by_split, "info": prepared.info,
                                 "prepare_seconds": t1 - t0, "score_seconds": time.perf_counter() - t1}
                results_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
                print(cell, {s: round(v["accuracy"], 3) for s, v in by_split.items()},
                      f"train {prepared.info['train_seconds']:.0f}s reused={prepared.info['reused']}",
                      file=sys.stderr, flush=True)
                label = "episodes" if settings.include_episodes else "no episodes"
                curves[f"{dspec.get('name', dspec['family'])} ({label})"] = read_curves(
                    out / prepared.info["curves_file"])
    plot_curves(curves, out / "curves.png")
    return 0


def plot_curves(curves: dict[str, list[dict]], path: Path) -> None:
    """Training loss and per-split accuracy against step, one column per trained model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curves:
        return
    fig, axes = plt.subplots(2, len(curves), figsize=(5 * len(curves), 6), squeeze=False)
    for j, (name, rows) in enumerate(curves.items()):
        steps = [r["step"] for r in rows]
        axes[0][j].plot(steps, [r["loss"] for r in rows])
        axes[0][j].set_title(name)
        axes[0][j].set_ylabel("training loss")
        for split in sorted({s for r in rows for s in r["accuracy"]}):
            axes[1][j].plot(steps, [r["accuracy"].get(split) for r in rows], label=split)
        axes[1][j].set_ylabel("accuracy (question alone)")
        axes[1][j].set_xlabel("step")
        axes[1][j].set_ylim(-0.02, 1.02)
        axes[1][j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
