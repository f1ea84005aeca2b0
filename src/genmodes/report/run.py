"""Reading a run folder (``config.yaml``, ``manifest.json``, ``results.jsonl``, ``cells.jsonl``) through
the records the runner writes them from (:mod:`genmodes.experiments.records`): a file that does not
match the schema is one line naming the file, the line and the field.

Only files are read, never models. A run may still be in progress: the runner rewrites each top-level
file atomically after every cell, results before cells, so a reader between the two may see rows of a
cell not yet in ``cells.jsonl``; those are left out (counted in ``notes``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

from genmodes.errors import ConfigError, DataError
from genmodes.experiments.config import Study, dump_config, parse_config
from genmodes.experiments.records import CellRecord, ResultRow, RunManifest


class ReportError(DataError):
    """A run folder the report cannot read (missing, no results, corrupt file)."""


M = TypeVar("M", bound=BaseModel)


@dataclass
class Run:
    path: Path
    config: Study
    manifest: RunManifest
    results: list[ResultRow]  # rows of finished cells only
    cells: list[CellRecord]  # finished cells, one each
    notes: list[str] = field(default_factory=list)  # what the reader should know (partial run, ...)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def expected_cells(self) -> int:
        """The grid's cells: a condition limited to some ``datasets`` runs on those only, on every model
        and seed."""
        from genmodes.experiments.grid import grid

        return len(grid(self.config))

    def stages_of(self, cell: CellRecord) -> Any:
        """The cell's condition, resolved (:class:`genmodes.conditions.Condition`)."""
        return self.config.condition(cell.condition).stages

    def infos(self, cell: CellRecord) -> dict[str, Any]:
        """Each stage's ``Info`` of a cell, by role (model, context; or baseline)."""
        cache = self.__dict__.setdefault("_infos", {})
        if cell.cell not in cache:
            cache[cell.cell] = self.stages_of(cell).read_infos(cell.stages, cell.info)
        return cache[cell.cell]

    def model_info(self, cell: CellRecord) -> Any:
        """The Info of the stage that made the cell's model (a baseline's stands in for it)."""
        infos = self.infos(cell)
        return infos.get("model") or infos.get("baseline")

    def gates(self) -> dict[str, Any]:
        """Cell id -> its recall gate (:mod:`genmodes.experiments.gates`), for the cells one applies to."""
        if "_gates" not in self.__dict__:
            from genmodes.experiments.gates import cell_gates

            self.__dict__["_gates"] = cell_gates(self.cells, self.config.recall_gate)
        return self.__dict__["_gates"]

    def missing_cells(self) -> list[str]:
        """The grid's cells that have not finished, in run order."""
        from genmodes.experiments.grid import grid

        done = {c.cell for c in self.cells}
        return [c.id for c in grid(self.config) if c.id not in done]

    @property
    def date(self) -> str | None:
        """When the last finished cell finished, in local time."""
        if not self.cells:
            return None
        last = max(datetime.fromisoformat(c.finished_at) for c in self.cells)
        return last.astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()

    def config_yaml(self) -> str:
        return dump_config(self.config)

    def condition_order(self) -> list[str]:
        """Config order (every condition of a finished cell is in the config)."""
        return [c.name for c in self.config.conditions]

    def dataset_order(self) -> list[str]:
        """Config order, datasets with results only."""
        present = {r.dataset for r in self.results}
        return [str(d.name) for d in self.config.datasets if d.name in present]


def read_records(path: Path, model: type[M]) -> list[M]:
    """:func:`genmodes.experiments.records.read_records`, failing as a :class:`ReportError`."""
    from genmodes.experiments.records import read_records as _read

    try:
        return _read(path, model)
    except DataError as e:
        raise ReportError(str(e)) from None


def _validate(model: type[M], raw: Any, path: Path) -> M:
    from genmodes.experiments.records import validate

    try:
        return validate(model, raw, str(path))
    except DataError as e:
        raise ReportError(str(e)) from None


def _read_config(path: Path) -> Study:
    from genmodes.io import read_text

    try:
        raw = yaml.safe_load(read_text(path, what="config", max_bytes=1 << 20))
    except DataError as e:
        raise ReportError(str(e)) from None
    except yaml.YAMLError as e:
        raise ReportError(f"{path}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(raw, dict):
        raise ReportError(f"{path}: expected a YAML mapping at the top level")
    try:
        return parse_config(raw, source=str(path), check_paths=False)
    except ConfigError as e:
        raise ReportError(str(e)) from None


def _read_manifest(path: Path) -> RunManifest:
    from genmodes.io import read_text

    try:
        raw = json.loads(read_text(path, what="manifest"))
    except DataError as e:
        raise ReportError(str(e)) from None
    except ValueError as e:
        raise ReportError(f"{path}: not valid JSON ({e})") from None
    return _validate(RunManifest, raw, path)


def load_run(run_dir: str | os.PathLike) -> Run:
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportError(f"run folder not found: {run_dir}")
    files = {name: path / name for name in ("config.yaml", "manifest.json", "results.jsonl", "cells.jsonl")}
    if not files["results.jsonl"].is_file():
        raise ReportError(f"{run_dir}: no results.jsonl (not a run folder, or the run has not started scoring)")
    missing = [n for n, p in files.items() if not p.is_file()]
    if missing:
        raise ReportError(f"{run_dir}: no {missing[0]} (every run folder has one; written by an older genmodes? "
                          "rerun its config with `genmodes run` to refresh it)")
    config = _read_config(files["config.yaml"])
    manifest = _read_manifest(files["manifest.json"])
    rows = read_records(files["results.jsonl"], ResultRow)
    cells = read_records(files["cells.jsonl"], CellRecord)
    notes: list[str] = []
    done = {c.cell for c in cells}
    unfinished = {r.cell for r in rows} - done
    if unfinished:
        n_rows = sum(r.cell in unfinished for r in rows)
        notes.append(f"{n_rows} result rows of {len(unfinished)} unfinished cell(s) are left out "
                     f"({', '.join(sorted(unfinished)[:3])}{', ...' if len(unfinished) > 3 else ''}).")
        rows = [r for r in rows if r.cell in done]
    # a cell listed as finished whose rows are not in results.jsonl (a file rewritten by hand, or one
    # copied from another run): its numbers are not there to report
    scored = {r.cell for r in rows}
    rowless = sorted(c.cell for c in cells if c.cell not in scored and c.n_questions)
    if rowless:
        notes.append(f"{len(rowless)} finished cell(s) have no rows in results.jsonl and are left out "
                     f"({', '.join(rowless[:3])}{', ...' if len(rowless) > 3 else ''}).")
        left_out = set(rowless)
        cells = [c for c in cells if c.cell not in left_out]
    return Run(path=path, config=config, manifest=manifest, results=rows, cells=cells, notes=notes)


def check_reportable(run: Run) -> None:
    """A run with something to report: one finished cell at least; else one line saying what is missing."""
    if not run.cells:
        extra = f" ({' '.join(run.notes)})" if run.notes else ""
        raise ReportError(f"{run.path}: no finished cell yet (0 of {run.expected_cells}), nothing to report{extra}; "
                          f"run its config (genmodes run {run.path / 'config.yaml'} --out {run.path}) first")


def read_curves(path: Path) -> list[dict[str, Any]]:
    """A from-scratch condition's curves file (``info.curves_file``): one JSON object per evaluation step."""
    from genmodes.io import read_jsonl as _read

    try:
        return [row for _, row in _read(path)]
    except DataError as e:
        raise ReportError(str(e)) from None
