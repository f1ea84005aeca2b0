"""``genmodes run CONFIG [--out DIR] [--dry-run]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# Rough CPU throughputs of SmolLM2-135M on this 2-core machine (tokens per second), for --dry-run's
# estimate only: forward over context ~250/s, a training step of 16x64 tokens ~5 s.
FORWARD_TOKENS_PER_S = 250.0
TRAIN_TOKENS_PER_S = 200.0
CHARS_PER_TOKEN = 4.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a study config (a grid of datasets x conditions x seeds); resumable")
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("--out", help="run folder (default runs/<config name>); rerun the same command to resume")
    p.add_argument("--dry-run", action="store_true", help="print the grid and an estimated cost, run nothing")
    p.add_argument("--no-report", action="store_true", help="skip writing report.md/report.html at the end")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--cache", help="model cache directory")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default="auto",
                   help="matrix-product precision: auto = bf16 (mixed, fp32 weights) on a CUDA GPU that "
                        "supports it, else fp32")
    from genmodes.experiments.overrides import add_arguments

    add_arguments(p)  # --limit --model --seeds --set
    p.set_defaults(func=cmd_run)


def _estimate(cfg: Any) -> list[tuple[str, int, float, float]]:
    """(cell id, questions, train-time estimate s, test-time estimate s) per cell; rough by design."""
    from genmodes.conditions.finetune import Settings as FinetuneSettings
    from genmodes.experiments.runner import build_dataset, grid

    out, cache = [], {}
    for cell in grid(cfg):
        if cell.dataset.name not in cache:
            cache[cell.dataset.name] = build_dataset(cell.dataset)
        ds = cache[cell.dataset.name]
        r = cell.condition.resolve()
        doc_tokens = sum(len(d.text) for d in ds.documents) / CHARS_PER_TOKEN
        q_tokens = sum((len(q.context) + sum(len(c) for c in q.choices)) / CHARS_PER_TOKEN for q in ds.questions)
        train = 0.0
        ft = r.model_settings if isinstance(r.model_settings, FinetuneSettings) else None
        if ft is not None and getattr(ft, "steps", None):
            train = ft.steps * ft.batch_size * getattr(ft, "seq_len", 128) / TRAIN_TOKENS_PER_S
        elif ft is not None and getattr(ft, "epochs", None):
            train = ft.epochs * doc_tokens / TRAIN_TOKENS_PER_S
        test = q_tokens / FORWARD_TOKENS_PER_S * 2
        if r.context == "in_context":
            test += min(doc_tokens, 8000) / FORWARD_TOKENS_PER_S
        out.append((cell.id, len(ds.questions), train, test))
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from genmodes.experiments.overrides import load_with_overrides
    from genmodes.experiments.runner import Runner

    cfg = load_with_overrides(args.config, args)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    if args.dry_run:
        Runner(cfg, out, device=args.device, model_cache=args.cache, dtype=args.dtype).validate()
        rows = _estimate(cfg)
        print(f"{cfg.name}: model {cfg.model}, {len(rows)} cells -> {out}")
        w = max(len(r[0]) for r in rows)
        print(f"  {'cell':<{w}}  {'questions':>9}  {'train ~s':>9}  {'test ~s':>8}")
        for cid, n, tr, te in rows:
            print(f"  {cid:<{w}}  {n:>9}  {tr:>9.0f}  {te:>8.0f}")
        total = sum(r[2] + r[3] for r in rows)
        print(f"estimated total: ~{total / 60:.0f} min on 2 CPU cores (rough; a GPU is much faster)")
        return 0
    runner = Runner(cfg, out, device=args.device, model_cache=args.cache, dtype=args.dtype)
    summary = runner.run()
    print_summary(summary)
    print(f"\nrun folder: {out}")
    if not args.no_report:
        from genmodes.report.commands import write_report

        md, html = write_report(out)
        print(f"report: {html}")
    return 0


def print_summary(summary: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    by_ds: dict[str, list[dict[str, Any]]] = {}
    for r in summary:
        by_ds.setdefault(r["dataset"], []).append(r)
    console = Console(file=sys.stdout, width=120)
    for ds, rows in by_ds.items():
        splits = list(dict.fromkeys(r["split"] for r in rows))
        conds = list(dict.fromkeys(r["condition"] for r in rows))
        t = Table(title=f"{ds}: accuracy ± stderr", title_justify="left")
        t.add_column("condition")
        for s in splits:
            chance = next(r["chance"] for r in rows if r["split"] == s)
            t.add_column(f"{s} (chance {float(chance):.0%})", justify="right")
        for c in conds:
            cells = []
            for s in splits:
                r = next((r for r in rows if r["split"] == s and r["condition"] == c), None)
                cells.append("" if r is None else _fmt(r))
            t.add_row(c, *cells)
        console.print(t)


def _fmt(r: dict[str, Any]) -> str:
    acc, se = float(r["accuracy"]), float(r["stderr"])
    return f"{acc:.1%} ± {se:.1%}" if se == se else f"{acc:.1%}"
