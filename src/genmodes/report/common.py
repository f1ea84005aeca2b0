"""What every report section shares: number formats, labels of conditions and cells, figure files.

Blocks (what a section returns, rendered by :mod:`genmodes.report.build`): ``("h", level, text)``,
``("p", text)``, ``("list", [text])``, ``("table", headers, rows)``, ``("img", path, alt)``,
``("pre", text, language)``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Sequence

from genmodes.experiments.records import CellRecord, ResultRow
from genmodes.report.run import Run

DASH = "–"
Block = tuple


def is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


def pct(x: Any) -> str:
    """A share as a percentage with one decimal (``40.0%``); a dash when absent."""
    return DASH if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def pct_trim(x: Any, digits: int = 1) -> str:
    """A share as a percentage without trailing zeros (``40%``, ``33.3%``); a value that is not a
    number is shown as it is (a dash when absent)."""
    if not is_num(x):
        return DASH if x is None or isinstance(x, float) else str(x)
    s = f"{100 * x:.{digits}f}"
    return (s.rstrip("0").rstrip(".") if "." in s else s) + "%"


def num(x: float | None, unit: str = "s") -> str:
    if not is_num(x):
        return DASH
    if unit == "tokens":
        return f"{x:,.0f}"
    if unit == "frac":
        return f"{x:.3g}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def mean(xs: Sequence[Any]) -> float | None:
    v = [float(x) for x in xs if is_num(x)]
    return sum(v) / len(v) if v else None


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "x"


def write_atomic(path: Path, text: str) -> None:
    from genmodes.io import atomic_write

    atomic_write(path, text)


class Figures:
    """Figure files of this report: unique names under ``out/figures``."""

    def __init__(self, out: Path):
        self.dir = out / "figures"
        self.used: set[str] = set()

    def path(self, stem: str) -> Path:
        name, i = slug(stem), 2
        while name in self.used:
            name, i = f"{slug(stem)}_{i}", i + 1
        self.used.add(name)
        return self.dir / f"{name}.png"


# ------------------------------------------------------------------------------------------ labels

def models(run: Run) -> list[str]:
    """The run's models with results, in config order."""
    present = {r.model for r in run.results}
    return [m for m in run.config.model_specs if m in present]


def several(run: Run) -> bool:
    return len(models(run)) > 1


def rows_by_label(run: Run) -> tuple[list[ResultRow], list[str]]:
    """Result rows with ``condition`` relabelled ``condition · model`` when a run holds several models,
    and the conditions in report order (config order)."""
    ms = models(run)
    order = run.condition_order()
    if len(ms) <= 1:
        present = {r.condition for r in run.results}
        return run.results, [c for c in order if c in present]
    rows = [r.model_copy(update={"condition": f"{r.condition} · {r.model}"}) for r in run.results]
    present = {r.condition for r in rows}
    return rows, [f"{c} · {m}" for c in order for m in ms if f"{c} · {m}" in present]


def condition_label(run: Run, c: CellRecord) -> str:
    """A cell's condition, with its model when the run has several (``condition · model``)."""
    return f"{c.condition} · {c.model}" if several(run) else c.condition


def cell_label(run: Run, c: CellRecord) -> list[str]:
    """The first columns of a per-cell table: dataset, condition, seed."""
    return [c.dataset, condition_label(run, c), str(c.seed)]


def label_gate(run: Run, dataset: str, label: str) -> Any:
    """The recall gate of a condition (its report label) on a dataset, over its seeds
    (:func:`genmodes.experiments.gates.merged`); None when no gate applies."""
    from genmodes.experiments.gates import merged

    gates = run.gates()
    return merged(gates[c.cell] for c in run.cells
                  if c.dataset == dataset and condition_label(run, c) == label and c.cell in gates)
