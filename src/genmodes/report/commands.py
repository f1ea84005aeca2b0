"""``genmodes report RUN_DIR [--out DIR]``."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="tables and figures of a run folder (report.md, report.html)",
                              description="Write report.md, a self-contained report.html and figures/*.png "
                                          "from a run folder's files (never loads a model).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (holds results.jsonl)")
    p.add_argument("--out", metavar="DIR", help="write the report here instead of into RUN_DIR")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from genmodes.report.build import build_report

    md, html = build_report(args.run_dir, args.out)
    print(md)
    print(html)
    return 0
