"""Report: tables and figures from a run folder's files only, never from models.

``summarize`` (the summary rows the runner also writes as ``summary.csv``), ``build_report``
(``report.md``, self-contained ``report.html``, ``figures/*.png``), ``load_run``.
"""

from genmodes.report.summary import SUMMARY_COLUMNS, summarize, write_summary_csv

__all__ = ["SUMMARY_COLUMNS", "summarize", "write_summary_csv", "build_report", "load_run", "ReportError"]


def __getattr__(name: str):
    # matplotlib is imported only when a report is built, not when the runner needs ``summarize``
    if name == "build_report":
        from genmodes.report.build import build_report

        return build_report
    if name in ("load_run", "ReportError"):
        from genmodes.report import run

        return getattr(run, name)
    raise AttributeError(name)
