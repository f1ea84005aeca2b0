"""``genmodes run CONFIG [--out DIR] [--dry-run]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a study config (a grid of datasets x conditions x seeds); resumable")
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("--out", help="run folder (default runs/<config name>); rerun the same command to resume")
    p.add_argument("--dry-run", action="store_true", help="print the grid and an estimated cost, run nothing")
    p.add_argument("--no-report", action="store_true", help="skip writing report.md/report.html at the end")
    p.add_argument("--json", action="store_true",
                   help="print the summary rows (summary.csv's columns) as a JSON list on stdout; "
                        "everything else goes to stderr")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--cache", help="model cache directory")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: cells one after another here; ray: each cell a Ray task (pip install "
                        "'genmodes[ray]'), with the config's per-cell `resources`")
    p.add_argument("--address", help="--executor ray: the cluster (auto, HOST:PORT); default: RAY_ADDRESS, "
                                     "else a local cluster on this machine's CPUs")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default="auto",
                   help="matrix-product precision: bf16 = mixed (fp32 weights, bf16 products under autocast); "
                        "auto = fp32 for now (see docs/PERFORMANCE.md, GPU)")
    from genmodes.experiments.overrides import add_arguments

    add_arguments(p)  # --limit --model --seeds --set
    p.set_defaults(func=cmd_run)

    s = sub.add_parser("settings", help="every setting of the study config, the stages and the dataset families: "
                                        "name, type, default, description")
    s.add_argument("kind", nargs="?", help="one section: config, a stage kind (finetune, retrieval, ...), "
                                           "baseline or a family name")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--json", action="store_true", help="print the sections as JSON")
    how.add_argument("--markdown", action="store_true", help="print the reference as markdown (docs/SETTINGS.md)")
    s.set_defaults(func=cmd_settings)


def cmd_settings(args: argparse.Namespace) -> int:
    from genmodes.experiments import reference

    secs = reference.select(args.kind)
    if args.json:
        print(reference.as_json(secs))
    elif args.markdown:
        print(reference.markdown(secs), end="")
    else:
        reference.print_sections(secs)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from genmodes.experiments.overrides import load_with_overrides
    from genmodes.experiments.runner import Runner

    cfg = load_with_overrides(args.config, args)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    if args.dry_run:
        from genmodes.experiments.estimate import calibrate, estimate, print_estimate

        runner = Runner(cfg, out, device=args.device, model_cache=args.cache, dtype=args.dtype)
        runner.validate()
        # another run's folder is refused now, not after hours; only this config's cells count as finished
        same = runner.check_folder() in ("same", "extend")
        print(f"{cfg.name}: calibrating {', '.join(cfg.model_specs)} (a few timed scoring and training steps) ...", flush=True)

        def say(msg: str) -> None:
            print(f"  timing {msg} ...", flush=True)

        cal = calibrate(runner, say=say)
        print_estimate(runner, out, cal, estimate(runner, cal, finished=same, say=say))
        return 0
    if args.address and args.executor != "ray":
        from genmodes.errors import ConfigError

        raise ConfigError("--address is the Ray cluster of --executor ray; add --executor ray")
    executor = None
    if args.executor == "ray":
        from genmodes.experiments.executors import RayExecutor

        executor = RayExecutor(address=args.address)
    runner = Runner(cfg, out, device=args.device, model_cache=args.cache, dtype=args.dtype, executor=executor)
    if args.json:
        import contextlib

        # stdout carries the JSON alone: anything a library prints while the grid runs goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            summary = _run_and_report(runner, out, args.no_report, say=lambda m: print(m, file=sys.stderr))
        print(summary_json(summary))
        return 0
    summary = _run_and_report(runner, out, args.no_report, say=print)
    return 0


def _run_and_report(runner: Any, out: Path, no_report: bool, say: Any) -> list[dict[str, Any]]:
    summary = runner.run()
    if say is print:
        print_summary(summary)
    from genmodes.experiments.gates import calibration_failures, calibration_headline

    failures = calibration_failures(runner.folder.records(), runner.study.recall_gate)
    if failures:
        say("\n" + calibration_headline(failures))
    say(f"\nrun folder: {out}")
    if not no_report:
        from genmodes.report.commands import write_report

        md, html = write_report(out)
        say(f"report: {html}")
    return summary


def summary_json(summary: list[dict[str, Any]]) -> str:
    """The summary rows as a JSON list, one object per row with summary.csv's columns (a value that is
    not a finite number, such as an undefined interval, is null)."""
    import json
    import math

    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return json.dumps([{k: clean(v) for k, v in r.items()} for r in summary], ensure_ascii=False, indent=2,
                      allow_nan=False)


def print_summary(summary: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    by_ds: dict[str, list[dict[str, Any]]] = {}
    several = len({r.get("model") for r in summary}) > 1
    for r in summary:
        if several:  # one row per condition and model, as the report's labels
            r = {**r, "condition": f"{r['condition']} · {r['model']}"}
        by_ds.setdefault(r["dataset"], []).append(r)
    console = Console(file=sys.stdout, width=120)
    for ds, rows in by_ds.items():
        splits = list(dict.fromkeys(r["split"] for r in rows))
        conds = list(dict.fromkeys(r["condition"] for r in rows))
        t = Table(title=f"{ds}: accuracy [95% interval over questions]", title_justify="left")
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
    """An accuracy with its 95% interval; a latent result of a model that failed its recall gate, or of
    a cell reading documents whose model failed its calibration ladder, is marked as not a test."""
    from genmodes.experiments.gates import FAIL, NOT_A_TEST
    from genmodes.experiments.statistics import format_accuracy

    text = format_accuracy(r["accuracy"], r.get("ci_low"), r.get("ci_high"))
    return text + (f" ({NOT_A_TEST})" if r.get("gate") == FAIL else "")
