"""Report: tables and figures from a run folder's files only, never from models.

``summarize`` (the summary rows the runner also writes as ``summary.csv``), ``build_report``
(``report.md``, self-contained ``report.html``, ``figures/*.png``), ``load_run``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from genmodes.experiments.summary import SUMMARY_COLUMNS, summarize, write_summary_csv

if TYPE_CHECKING:
    from genmodes.report.run import Run

__all__ = ["SUMMARY_COLUMNS", "summarize", "write_summary_csv", "build_report", "load_run"]


def build_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` (images embedded) and ``figures/*.png`` into ``out_dir``
    (default: the run folder) from the run folder's files. Returns (markdown path, HTML path)."""
    # imported here: the runner needs only ``summarize``, not matplotlib
    from genmodes.report.build import build_report as _build

    return _build(run_dir, out_dir)


def load_run(run_dir: str | os.PathLike) -> "Run":
    """The run folder's config, finished cells and their result rows (see :mod:`genmodes.report.run`)."""
    from genmodes.report.run import load_run as _load

    return _load(run_dir)
