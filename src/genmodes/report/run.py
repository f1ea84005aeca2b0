"""Reading a run folder (``config.yaml``, ``results.jsonl``, ``cells.jsonl``, curves files).

Only files are read, never models. A run may still be in progress: a last line without its newline
is a row being written and is skipped; results of cells not yet listed in ``cells.jsonl`` are left
out (their questions are not all scored) and counted in ``notes``. A cell or question written twice
(a resumed run) counts once, the last row winning.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from genmodes.errors import DataError


class ReportError(DataError):
    """A run folder the report cannot read (missing, no results, corrupt file)."""


_RESULT_FIELDS = ("cell", "dataset", "split", "condition", "correct")
_TIME_KEYS = ("finished_at", "finished", "end_time", "timestamp", "time")


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    results: list[dict[str, Any]]  # rows of finished cells only
    cells: list[dict[str, Any]]  # finished cells, one row each
    notes: list[str] = field(default_factory=list)  # what the reader should know (partial run, ...)
    expected_cells: int | None = None
    date: str | None = None

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.path.name)

    def condition_order(self) -> list[str]:
        """Config order, then any other condition in order of appearance."""
        names = [str(c.get("name")) for c in self.config.get("conditions") or [] if isinstance(c, dict)]
        return _merge(names, [str(r["condition"]) for r in self.results] + [str(c.get("condition")) for c in self.cells])

    def dataset_order(self) -> list[str]:
        names = [str(d.get("name")) for d in self.config.get("datasets") or [] if isinstance(d, dict)]
        present = [str(r["dataset"]) for r in self.results] + [str(c.get("dataset")) for c in self.cells]
        return [n for n in _merge(names, present) if n in set(present)]


def _merge(first: list[str], then: list[str]) -> list[str]:
    out = dict.fromkeys(first)
    out.update(dict.fromkeys(then))
    return list(out)


def read_jsonl(path: Path, required: tuple[str, ...] = ()) -> tuple[list[dict[str, Any]], bool]:
    """Rows of a JSONL file and whether an incomplete last line (a row being written) was skipped.
    Any other bad line raises a one-line :class:`ReportError` naming the file and line."""
    from genmodes.io import read_jsonl as _read

    try:
        numbered = _read(path, partial_tail=True)
    except DataError as e:
        raise ReportError(str(e)) from None
    # the last line was skipped: it has no newline, holds something, and gave no row
    data = path.read_bytes()
    last = data.count(b"\n") + 1
    partial = bool(data.rsplit(b"\n", 1)[-1].strip()) and (not numbered or numbered[-1][0] != last)
    rows = []
    for i, row in numbered:
        for k in required:
            if k not in row:
                raise ReportError(f"{path} line {i}: missing field {k!r}")
        rows.append(row)
    return rows, partial


def _fmt_time(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()


def _run_date(cells: list[dict[str, Any]], files: list[Path]) -> str | None:
    stamps: list[float] = []
    for c in cells:
        for k in _TIME_KEYS:
            v = c.get(k)
            if isinstance(v, (int, float)) and v > 0:
                stamps.append(float(v))
            elif isinstance(v, str):
                try:
                    stamps.append(datetime.fromisoformat(v).timestamp())
                except ValueError:
                    continue
            else:
                continue
            break
    if stamps:
        return _fmt_time(max(stamps))
    mtimes = [f.stat().st_mtime for f in files if f.is_file()]
    return _fmt_time(max(mtimes)) if mtimes else None


def _expected_cells(config: dict[str, Any]) -> int | None:
    try:
        n_ds = len(config["datasets"])
        # a condition limited to some datasets (its `datasets`) runs on those only
        pairs = sum(len(c["datasets"]) if isinstance(c, dict) and isinstance(c.get("datasets"), list) else n_ds
                    for c in config["conditions"])
        models = config.get("models") or config.get("model")
        return pairs * len(config.get("seeds") or [0]) * (len(models) if isinstance(models, list) else 1)
    except (KeyError, TypeError):
        return None


def load_run(run_dir: str | os.PathLike) -> Run:
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportError(f"run folder not found: {run_dir}")
    res_path = path / "results.jsonl"
    if not res_path.is_file():
        raise ReportError(f"{run_dir}: no results.jsonl (not a run folder, or the run has not started scoring)")
    notes: list[str] = []

    cfg_path = path / "config.yaml"
    config: dict[str, Any] = {}
    if cfg_path.is_file():
        from genmodes.io import read_text

        try:
            loaded = yaml.safe_load(read_text(cfg_path, what="config", max_bytes=1 << 20))
        except DataError as e:
            raise ReportError(str(e)) from None
        except RecursionError:
            raise ReportError(f"{cfg_path}: nested too deeply") from None
        except yaml.YAMLError as e:
            raise ReportError(f"{cfg_path}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ReportError(f"{cfg_path}: expected a YAML mapping at the top level")
        config = loaded or {}
    else:
        notes.append("config.yaml is missing: names and the expected number of cells are unknown.")

    rows, partial = read_jsonl(res_path, _RESULT_FIELDS)
    if partial:
        notes.append("results.jsonl ends in an incomplete line (still being written); it was skipped.")
    cells_path = path / "cells.jsonl"
    cells: list[dict[str, Any]] = []
    if cells_path.is_file():
        cells, partial = read_jsonl(cells_path, ("cell",))
        if partial:
            notes.append("cells.jsonl ends in an incomplete line (still being written); it was skipped.")
        cells = list({str(c["cell"]): c for c in cells}.values())
        done = {str(c["cell"]) for c in cells}
        unfinished = {str(r["cell"]) for r in rows} - done
        if unfinished:
            n_rows = sum(str(r["cell"]) in unfinished for r in rows)
            notes.append(f"{n_rows} result rows of {len(unfinished)} unfinished cell(s) are left out "
                         f"({', '.join(sorted(unfinished)[:3])}{', ...' if len(unfinished) > 3 else ''}).")
            rows = [r for r in rows if str(r["cell"]) in done]
    else:
        notes.append("cells.jsonl is missing: timings and condition info are unavailable; "
                     "every result row is reported.")
    # a resumed run may have scored a question twice: the last row wins
    rows = list({(str(r["cell"]), str(r.get("question_id", i))): r for i, r in enumerate(rows)}.values())

    expected = _expected_cells(config)
    return Run(path=path, config=config, results=rows, cells=cells, notes=notes, expected_cells=expected,
               date=_run_date(cells, [cells_path, res_path]))
