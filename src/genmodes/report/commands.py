"""``genmodes report RUN_DIR [--out DIR]``.

The report is built in a temporary folder inside the destination and moved into place when complete,
all of it or none (figures folder, pages it links to, report.html, report.md last; a move that fails
puts back what was there), so a full disk, a path taken by a folder or a kill never leaves figures
without their report, nor a report pointing at missing figures; temporary folders a kill left are
removed by the next report. A run with no finished cell is one line (nothing to report); a partial
run's report says which cells it lacks, and so does one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="tables and figures of a run folder (report.md, report.html)",
                              description="Write report.md, a self-contained report.html and figures/*.png "
                                          "from a run folder's files (never loads a model).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (holds results.jsonl)")
    p.add_argument("--out", metavar="DIR", help="write the report here instead of into RUN_DIR")
    p.set_defaults(func=cmd_report)


def write_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                 note: Callable[[str], None] | None = None) -> tuple[Path, Path]:
    """:func:`genmodes.report.build_report`, all or nothing (see the module docstring). ``note``: told
    one line naming the cells a partial run lacks."""
    from genmodes.errors import DiskError
    from genmodes.io import clean_stale_temps, disk_error_message, move_together
    from genmodes.report import build_report, load_run
    from genmodes.report.run import check_reportable

    run = load_run(run_dir)  # a run folder it cannot read fails before anything is written
    check_reportable(run)
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
        # figures, then the pages the report links to (drilldown.html), then the report, report.md last
        last = ("report.html", "report.md")
        staged = ([tmp / "figures"] if (tmp / "figures").is_dir() else []) + \
            [f for f in sorted(tmp.iterdir()) if f.is_file() and f.name not in last] + [tmp / n for n in last]
        backups = tmp / ".replaced"
        backups.mkdir()
        move_together([(f, out / f.name) for f in staged], backups)
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
    missing = run.missing_cells()
    if missing and note is not None:
        note(f"genmodes: note: the report covers {len(run.cells)} of {run.expected_cells} cells; missing "
             f"{', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''} (rerun the config to finish them)")
    return out / "report.md", out / "report.html"


def cmd_report(args: argparse.Namespace) -> int:
    import sys

    md, html = write_report(args.run_dir, args.out, note=lambda line: print(line, file=sys.stderr))
    print(md)
    print(html)
    return 0
