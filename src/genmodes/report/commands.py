"""``genmodes report RUN_DIR [--out DIR]``.

The report is built in a temporary folder inside the destination and moved into place when complete
(figures folder, then report.html, then report.md), so a full disk or a kill never leaves figures
without their report, nor a report pointing at missing figures; temporary folders a kill left are
removed by the next report.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="tables and figures of a run folder (report.md, report.html)",
                              description="Write report.md, a self-contained report.html and figures/*.png "
                                          "from a run folder's files (never loads a model).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (holds results.jsonl)")
    p.add_argument("--out", metavar="DIR", help="write the report here instead of into RUN_DIR")
    p.set_defaults(func=cmd_report)


def write_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """:func:`genmodes.report.build_report`, all or nothing (see the module docstring)."""
    from genmodes.errors import DiskError
    from genmodes.io import clean_stale_temps, disk_error_message, replace_dir
    from genmodes.report import build_report, load_run

    load_run(run_dir)  # a run folder it cannot read fails before anything is written
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    created = not out.exists()
    tmp = None
    try:
        if out.exists() and not out.is_dir():
            raise DiskError(f"cannot write the report into {out}: it is a file")
        out.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(out, depth=1)
        tmp = Path(tempfile.mkdtemp(prefix=f".report.tmp-{os.getpid()}-", dir=out))
        build_report(run_dir, tmp)
        if (tmp / "figures").is_dir():
            replace_dir(tmp / "figures", out / "figures")
        # pages the report links to (drilldown.html) before the report itself, report.md last
        last = ("report.html", "report.md")
        for f in sorted(tmp.iterdir()):
            if f.is_file() and f.name not in last:
                os.replace(f, out / f.name)
        for name in last:
            os.replace(tmp / name, out / name)
    except BaseException as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        msg = disk_error_message(e, out) if isinstance(e, (OSError, ValueError)) else None
        if msg:
            raise DiskError(msg) from None
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return out / "report.md", out / "report.html"


def cmd_report(args: argparse.Namespace) -> int:
    md, html = write_report(args.run_dir, args.out)
    print(md)
    print(html)
    return 0
