"""The report sections stages declare (their ``report_sections`` hook, :mod:`genmodes.conditions.base`).

Each stage used by a finished cell gets a :class:`StageView`: its cells with their ``Info`` records,
and the report's helpers (formats, figures, the rows of a cell), so a stage module writes its section
without importing the report. Stages are visited in registry order: model stages, then context stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genmodes.conditions import CONTEXT_STAGES, MODEL_STAGES, context_stage, model_stage
from genmodes.conditions.base import Info
from genmodes.experiments.records import CellRecord, ResultRow
from genmodes.report import common
from genmodes.report.run import Run


class StageView:
    """One stage's part of a run, for its report section.

    ``cells``: (cell record, the stage's ``Info``) of every finished cell whose condition uses the stage,
    in run order."""

    DASH = common.DASH

    def __init__(self, run: Run, role: str, kind: str, figs: Any = None):
        self.run, self.role, self.kind = run, role, kind
        self._figs = figs
        self.cells: list[tuple[CellRecord, Any]] = [(c, run.infos(c)[role]) for c in run.cells
                                                    if getattr(run.stages_of(c), role) == kind]
        self._rows: dict[str, list[ResultRow]] | None = None

    # -- the run
    @property
    def condition_order(self) -> list[str]:
        return self.run.condition_order()

    @property
    def dataset_order(self) -> list[str]:
        return self.run.dataset_order()

    def rows(self, cell: CellRecord) -> list[ResultRow]:
        """The cell's results rows."""
        if self._rows is None:
            self._rows = {}
            for r in self.run.results:
                self._rows.setdefault(r.cell, []).append(r)
        return self._rows.get(cell.cell, [])

    def details(self, row: ResultRow, cls: type[Info]) -> Any:
        """A row's per-question extras, read as the stage's ``Details`` record."""
        return cls.read(row.details)

    def label(self, cell: CellRecord) -> list[str]:
        """dataset, condition (with its model when the run has several), seed."""
        return common.cell_label(self.run, cell)

    def summarize(self, rows: list[ResultRow]) -> list[dict[str, Any]]:
        from genmodes.experiments.summary import summarize

        return summarize(rows)

    def read_curves(self, relpath: str) -> tuple[list[dict[str, Any]], str | None]:
        """A curves file of the run folder (JSON Lines): (rows, None), or ([], what is wrong with it)."""
        f = self.run.path / str(relpath)
        if not f.is_file():
            return [], f"curves file {relpath} not found"
        try:
            from genmodes.report.run import read_curves

            return read_curves(f), None
        except Exception as e:  # noqa: BLE001 - a bad curves file must not cost the whole report
            return [], f"curves file unreadable ({e})"

    def paired(self, rows: list[ResultRow], conditions: list[str]) -> list[Any]:
        """Paired comparisons of ``conditions`` (later minus earlier) on every (dataset, split) of
        ``rows``, question by question (:func:`genmodes.report.stats.paired_comparisons`)."""
        from genmodes.report import stats

        return stats.paired_comparisons(rows, conditions)

    @staticmethod
    def points(x: float, sign: bool = False) -> str:
        """A difference of accuracies in whole points ("+12")."""
        from genmodes.report import stats

        return stats.points(x, sign)

    # -- formats and figures
    pct = staticmethod(common.pct)

    @staticmethod
    def rows_accuracy(rows: list[ResultRow]) -> str:
        """The accuracy of some result rows with its 95% interval and n, as every table of the report
        writes it (``50.0% [30.1, 69.9] (n=20)``); a dash for none."""
        from genmodes.experiments.statistics import accuracy_of, format_accuracy

        if not rows:
            return common.DASH
        a = accuracy_of(rows)
        return f"{format_accuracy(a.accuracy, a.low, a.high)} (n={a.n})"

    @staticmethod
    def accuracy(summary_row: dict[str, Any]) -> str:
        """A summary row's accuracy with its 95% interval, as every table of the report writes it."""
        from genmodes.experiments.statistics import format_accuracy

        return format_accuracy(summary_row["accuracy"], summary_row.get("ci_low"), summary_row.get("ci_high"))

    pct_trim = staticmethod(common.pct_trim)
    num = staticmethod(common.num)

    @property
    def figures(self) -> Any:
        """:mod:`genmodes.report.figures` (matplotlib): imported when a section draws."""
        from genmodes.report import figures

        return figures

    def figure_path(self, stem: str) -> Path:
        return self._figs.path(stem)


def stage_views(run: Run, figs: Any = None) -> list[tuple[Any, StageView]]:
    """(stage module, its view) of every stage a finished cell used, in registry order."""
    used = {(role, kind) for c in run.cells for role, kind in (("model", run.stages_of(c).model),
                                                               ("context", run.stages_of(c).context))}
    out = []
    for role, registry, module_of in (("model", MODEL_STAGES, model_stage), ("context", CONTEXT_STAGES, context_stage)):
        for kind in registry:
            if (role, kind) in used:
                out.append((module_of(kind), StageView(run, role, kind, figs)))
    return out


def stage_view(run: Run, role: str, kind: str) -> StageView:
    return StageView(run, role, kind)


def stage_sections(run: Run, figs: Any) -> list[common.Block]:
    """Every used stage's own sections (its ``report_sections`` hook), in registry order."""
    out: list[common.Block] = []
    for module, view in stage_views(run, figs):
        if hasattr(module, "report_sections") and view.cells:
            out += module.report_sections(view)
    return out


def stage_gates(run: Run, figs: Any) -> list[common.Block]:
    """Every used stage's gates (its ``report_gates`` hook): what must hold before any of the run's
    results mean what they claim; the report shows them first."""
    out: list[common.Block] = []
    for module, view in stage_views(run, figs):
        if hasattr(module, "report_gates") and view.cells:
            out += module.report_gates(view)
    return out
