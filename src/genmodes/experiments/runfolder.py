"""A study's run folder: whether a run may use it, its finished cells, and the top-level files rebuilt
from them.

    config.yaml      the resolved config
    manifest.json    what produced the run (records.RunManifest)
    cells/<cell>/    per-cell work: results.jsonl and cell.json, written atomically when the cell
                     finishes (cell.json last: it marks the cell done), plus condition artifacts
    shared/          artifacts several cells share (fine-tuned checkpoints, generation caches)
    results.jsonl    one row per question per finished cell, in grid order (records.ResultRow)
    cells.jsonl      one row per finished cell (records.CellRecord)
    summary.csv      model,dataset,split,condition,n,accuracy,stderr,chance,ci_low,ci_high,gate

A folder whose config changed is refused only once a cell of it has finished: until then it holds no
result, so it is not "another run". A changed config that keeps every finished cell (same id, same
dataset spec, condition settings, model, seed and scoring) extends the run: only the new cells are
computed, and the top-level files are rebuilt. A folder that is not a run (no manifest, no finished
cell) is never written into. The top-level files are rebuilt (atomically) from finished cells
after every cell, so a run killed at any moment and started again has no lost and no duplicated rows.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from genmodes.errors import ConfigError, DataError, DiskError, GenmodesError
from genmodes.experiments.config import Study, dump_config
from genmodes.experiments.grid import Cell, grid
from genmodes.experiments.records import CellRecord, ResultRow, RunManifest, dump, read_records, sha256_json
from genmodes.io import atomic_write, disk_error_message, jsonl_bytes, read_text, TEMP_RE

CELL_DONE = "cell.json"
MANIFEST = "manifest.json"


def _jsonl(records: list[Any]) -> bytes:
    return jsonl_bytes(dump(r) for r in records)


def read_cell(workdir: Path) -> tuple[CellRecord, list[ResultRow]]:
    """A finished cell's record and rows, validated; a file that does not match the schema raises
    :class:`DataError` naming the file, line and field."""
    records = read_records(workdir / CELL_DONE, CellRecord)
    if len(records) != 1:
        raise DataError(f"{workdir / CELL_DONE}: {len(records)} records, expected one")
    return records[0], read_records(workdir / "results.jsonl", ResultRow)


def describe_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What differs between two cells' key parts, in a few words."""
    said = []
    for part in sorted(set(old) | set(new)):
        a, b = old.get(part), new.get(part)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            said.append(f"{part} " + "; ".join(_describe_keys(a, b)))
        else:
            said.append(f"{part} {a!r} -> {b!r}")
    return "; ".join(said) or "its key changed"


def _describe_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    bits = []
    for k in sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)):
        x, y = a.get(k), b.get(k)
        if k.endswith("_hash") and isinstance(x, str) and isinstance(y, str):
            bits.append(f"{k.removesuffix('_hash')} {x[:12]} -> {y[:12]}")  # a prefix tells them apart
        elif isinstance(x, dict) and isinstance(y, dict):
            sub = sorted(j for j in set(x) | set(y) if x.get(j) != y.get(j))
            bits.append(", ".join(f"{k}.{j} {x.get(j)!r} -> {y.get(j)!r}" for j in sub[:3]))
        else:
            bits.append(f"{k} {x!r} -> {y!r}")
    return bits


def config_key(study: Study, cell: Cell) -> dict[str, Any]:
    """What the config says a cell computes: the config's part of its key
    (:func:`genmodes.experiments.grid.key_parts`, without what the data and the weights add)."""
    return {"dataset": cell.dataset.model_dump(mode="json", exclude={"name"}), "condition": cell.condition.stages.key(),
            "model": cell.model, "seed": cell.seed, "scoring": study.scoring.model_dump(mode="json")}


def config_change(old_text: str, new_text: str) -> str:
    """The top-level config entries that differ (``seeds``, ``conditions``, ...)."""
    import yaml

    try:
        old, new = yaml.safe_load(old_text), yaml.safe_load(new_text)
    except yaml.YAMLError:
        return "config.yaml"
    if not isinstance(old, dict) or not isinstance(new, dict):
        return "config.yaml"
    return ", ".join(k for k in dict.fromkeys([*new, *old]) if old.get(k) != new.get(k)) or "config.yaml"


@dataclass
class _Finished:
    stamp: int  # cell.json's mtime when read
    record: CellRecord
    rows: list[ResultRow]
    rows_bytes: bytes  # as results.jsonl lines
    record_bytes: bytes  # as a cells.jsonl line


class RunFolder:
    """The run folder of ``study`` at ``out``."""

    def __init__(self, study: Study, out: Path):
        self.study = study
        self.out = Path(out)
        self._finished: dict[str, _Finished] = {}

    def cell_dir(self, cell: Cell) -> Path:
        return self.out / "cells" / cell.id

    def finished_ids(self) -> list[str]:
        try:
            return sorted(p.parent.name for p in (self.out / "cells").glob(f"*/{CELL_DONE}"))
        except OSError:
            return []

    def done(self, cell: Cell) -> bool:
        return (self.cell_dir(cell) / CELL_DONE).exists()

    # -- may a run use it
    def check(self) -> str:
        """Whether the run may use its folder, writing nothing: "same" (this config's run), "extend"
        (this run with cells added: every finished cell is in the new grid and computes the same
        thing), "replace" (an earlier attempt with no finished cell), "new" (absent, or empty).
        Raises :class:`ConfigError` for a folder that is another run or not a run folder."""
        text = dump_config(self.study)
        cfg_path = self.out / "config.yaml"
        if self.out.exists() and not self.out.is_dir():
            raise DiskError(f"cannot use {self.out} as the run folder: it is a file")
        if cfg_path.is_file():
            try:
                old = read_text(cfg_path, what="config")
            except GenmodesError:
                old = None
            if old == text:
                return "same"  # this study's config as genmodes writes it: a run of it, not started or older
            if not self._is_run():
                raise ConfigError(f"{self.out} holds a config.yaml but no {MANIFEST}: not a genmodes run folder, "
                                  "left as it is; pass another --out (an empty or new folder)")
            finished = self.finished_ids()
            if not finished:
                return "replace"
            why = self.not_an_extension(old, finished) if old is not None else "config.yaml is unreadable"
            if why is None:
                return "extend"
            changed = config_change(old, text) if old is not None else "config.yaml"
            raise ConfigError(f"{self.out} holds a run of a different config (changed: {changed}; {why}; "
                              f"{len(finished)} finished cell(s)); to start fresh pass another --out or "
                              "delete the folder")
        if cfg_path.exists() or cfg_path.is_symlink():
            raise ConfigError(f"{cfg_path} is not a file; pass another --out")
        try:
            entries = [e for e in os.listdir(self.out) if e != ".lock" and not TEMP_RE.match(e)]
        except FileNotFoundError:
            entries = []
        except OSError as e:
            raise DiskError(disk_error_message(e, self.out) or str(e)) from None
        if not entries:
            return "new"
        if self.finished_ids():
            raise ConfigError(f"{self.out} holds finished cells but no config.yaml; pass another --out")
        if not (self.out / MANIFEST).is_file():
            raise ConfigError(f"{self.out} exists and is not a genmodes run folder; pass another --out")
        return "replace"  # a manifest alone: an attempt stopped before it wrote config.yaml

    def _is_run(self) -> bool:
        """A genmodes run folder: it has a manifest (written first), or finished cells (a run of a
        version that wrote its manifest later)."""
        return (self.out / MANIFEST).is_file() or bool(self.finished_ids())

    def not_an_extension(self, old_text: str, finished: list[str]) -> str | None:
        """Why the study is not the run of ``old_text`` with cells added (None: it is). A finished
        cell must stay in the grid and compute the same thing: the same dataset spec, resolved
        condition settings, model, seed and scoring (what changes with the data or the weights is
        each cell's key, checked when the run starts, as for an unchanged config)."""
        import yaml

        from genmodes.experiments.config import parse_config

        try:
            old = parse_config(yaml.safe_load(old_text), source="config.yaml", check_paths=False)
        except (GenmodesError, yaml.YAMLError):
            return "its config.yaml no longer parses"
        old_cells = {c.id: c for c in grid(old)}
        new_cells = {c.id: c for c in grid(self.study)}
        for cell_id in finished:
            if cell_id not in old_cells:
                continue  # not a cell of that run (its summary never listed it)
            if cell_id not in new_cells:
                return f"finished cell {cell_id} is not in the new config"
            a, b = config_key(old, old_cells[cell_id]), config_key(self.study, new_cells[cell_id])
            if a != b:
                return f"finished cell {cell_id} would change: {describe_change(a, b)}"
        return None

    def make(self) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError) as e:
            raise DiskError(f"cannot create the run folder {self.out}: "
                            f"{getattr(e, 'strerror', None) or e}") from None

    def init(self, manifest: RunManifest) -> str:
        """Check the folder and write the manifest, then config.yaml (a folder holding a manifest is a
        run folder, whatever stopped it); call with the folder lock held. Returns :meth:`check`'s state."""
        state = self.check()
        if state == "replace":
            # no finished cell: not another run, only an earlier attempt; its unfinished work is stale
            shutil.rmtree(self.out / "cells", ignore_errors=True)
        atomic_write(self.out / MANIFEST, json.dumps(dump(manifest), indent=2, sort_keys=True) + "\n")
        if state != "same":
            atomic_write(self.out / "config.yaml", dump_config(self.study))
        return state

    def same_config(self) -> bool:
        try:
            return read_text(self.out / "config.yaml", what="config") == dump_config(self.study)
        except GenmodesError:
            return False

    # -- finished cells
    def finished(self, cell: Cell) -> _Finished:
        """A finished cell's validated record and rows, read once per process (``collect`` runs
        after every cell; re-reading every finished cell each time grew with the square of the grid)."""
        done = self.cell_dir(cell) / CELL_DONE
        stamp = done.stat().st_mtime_ns
        hit = self._finished.get(cell.id)
        if hit is None or hit.stamp != stamp:
            record, rows = read_cell(done.parent)
            hit = self._finished[cell.id] = _Finished(stamp, record, rows, _jsonl(rows), _jsonl([record]))
        return hit

    def stale(self, cells: list[Cell], key_parts: Callable[[Cell], dict[str, Any]]) -> dict[str, str]:
        """Finished cells whose results no longer follow from the config and data: cell id -> why."""
        out = {}
        for cell in cells:
            if not self.done(cell):
                continue
            try:
                record = self.finished(cell).record
            except DataError as e:
                out[cell.id] = f"its record is unreadable or predates cell keys ({e})"
                continue
            parts = key_parts(cell)
            if record.key != sha256_json(parts):
                out[cell.id] = "changed since it was computed: " + describe_change(record.key_parts, parts)
        return out

    def write_cell(self, cell: Cell, rows: list[ResultRow], record: CellRecord) -> None:
        """The cell's results, then its record (which marks it done)."""
        atomic_write(self.cell_dir(cell) / "results.jsonl", _jsonl(rows))
        atomic_write(self.cell_dir(cell) / CELL_DONE, json.dumps(dump(record), sort_keys=True) + "\n")

    def forget(self, cell_id: str) -> None:
        """Forget one cell (its results and work folder); the next run recomputes it."""
        shutil.rmtree(self.out / "cells" / cell_id, ignore_errors=True)
        self._finished.pop(cell_id, None)

    def records(self) -> list[CellRecord]:
        """The finished cells' records, in grid order."""
        return [self.finished(cell).record for cell in grid(self.study) if self.done(cell)]

    def collect(self) -> list[dict[str, Any]]:
        """Rebuild results.jsonl, cells.jsonl and summary.csv from the finished cells, in grid order."""
        from genmodes.experiments.gates import cell_gates
        from genmodes.experiments.summary import summarize, write_summary_csv

        rows: list[ResultRow] = []
        records: list[CellRecord] = []
        rows_bytes, records_bytes = [], []
        for cell in grid(self.study):
            if self.done(cell):
                read = self.finished(cell)
                rows.extend(read.rows)
                records.append(read.record)
                rows_bytes.append(read.rows_bytes)
                records_bytes.append(read.record_bytes)
        atomic_write(self.out / "results.jsonl", b"".join(rows_bytes), if_changed=True)
        atomic_write(self.out / "cells.jsonl", b"".join(records_bytes), if_changed=True)
        summary = summarize(rows, cell_gates(records, self.study.recall_gate))
        write_summary_csv(summary, self.out / "summary.csv")
        return summary
