"""The experiment runner: a study's grid of cells (:mod:`~genmodes.experiments.grid`), run in its run
folder (:mod:`~genmodes.experiments.runfolder`), one cell at a time or by an executor
(:mod:`~genmodes.experiments.executors`), each cell scored by the one scorer
(:mod:`~genmodes.experiments.cell`).

Before the folder is made, everything that can be checked is (datasets and their splits, the model
spec, the device, and each stage's own checks: LoRA target modules, document kinds), so a typo leaves
nothing behind. The folder is locked while a run works in it (``.lock`` names the pid); a second run
on it stops with one line. A non-finite score stops the cell: it is never a number.

Resuming: the top-level files are rebuilt (atomically) from finished cells after every cell, so a run
killed at any moment (kill -9 included) and started again has no lost and no duplicated rows;
finished cells are not recomputed, and conditions reuse their checkpoints from ``shared/``. A run that
fails mid-way leaves only that (finished cells, resumable work), and its error line says so.

Stale cells: each finished cell records a key, the hash of what its results depend on
(:func:`~genmodes.experiments.grid.key_parts`). A rerun recomputes exactly the cells whose key
changed (a ``path:`` dataset regenerated with other contents, a model folder with new weights, a
changed default of a condition) and logs one line per cell saying what changed. A changed config that
keeps every finished cell (seeds, datasets or conditions added) extends the run: only the new cells
are computed. A config that would change or drop a finished cell is another run: refused, with one
line naming what changed and how to start fresh.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from genmodes.conditions import MODEL_STAGES, model_stage
from genmodes.conditions.base import StageCheck
from genmodes.data.types import Dataset
from genmodes.errors import ConfigError, GenmodesError
from genmodes.experiments import provenance
from genmodes.experiments.cell import (cell_record, measure_calibration, measure_recall, prepare_cell, result_rows,
                                      score_cell)
from genmodes.experiments.config import (DatasetSpec, Study, check_compare_splits, check_split_contrasts, dump_config,
                                        load_config)
from genmodes.experiments.grid import Cell, find_cell, grid, key_parts, study_datasets
from genmodes.experiments.records import SCHEMA_VERSION, DatasetProvenance, ModelProvenance, RunManifest
from genmodes.experiments.runfolder import MANIFEST, RunFolder
from genmodes.io import clean_stale_temps, folder_lock

CELL_LOCK = ".cell.lock"  # in cells/<id>/: held (pid inside) while a process runs the cell


class Runner:
    def __init__(self, study: Study, out: Path, *, progress: bool = True, device: str | None = None,
                 model_cache: str | None = None, log: Callable[[str], None] | None = None,
                 dtype: str | None = None, executor: Any = None):
        self.study = study
        self.dtype = dtype  # auto | fp32 | bf16 (genmodes.models.resolve_dtype)
        self.executor = executor  # genmodes.experiments.executors: how cells run (default: here, in order)
        self.out = Path(out)
        self.folder = RunFolder(study, self.out)
        self.progress = progress
        self.device = device
        self.model_cache = model_cache
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._datasets: dict[str, Dataset] = {}
        self._weights: dict[str, ModelProvenance] = {}

    # -- checks, before anything is written
    def validate(self) -> None:
        """Everything resolvable, checked before the run folder is made: datasets with their contents
        and splits, the model spec and device, and each stage's ``validate`` hook."""
        from genmodes.models import check_device, resolve_dtype

        check_compare_splits(self.study, self.datasets())
        check_split_contrasts(self.study, self.datasets())
        check_device(self.device)
        resolve_dtype(self.dtype, self.device)
        self._check_models()
        self._check_stages()

    def _check_models(self) -> None:
        """A model stage that builds its own model (``OWN_MODEL``, e.g. scratch) needs the config's model
        to be that spec, and that spec serves no other stage; every other spec must load."""
        from genmodes.models import check_spec

        specs = self.study.model_specs
        owned = {k: getattr(model_stage(k), "OWN_MODEL", None) for k in MODEL_STAGES}
        own_specs = {v: k for k, v in owned.items() if v}
        stages = {c.name: c.stages.model for c in self.study.conditions if not c.is_baseline}
        for spec, kind in own_specs.items():
            mine = sorted(n for n, m in stages.items() if m == kind)
            others = sorted(n for n, m in stages.items() if m != kind)
            if spec in specs and others:
                raise ConfigError(f"model {spec!r} is built by the {kind} model stage only; condition(s) "
                                  f"{', '.join(others)} need a pretrained model")
            if mine and specs != [spec]:
                raise ConfigError(f"condition(s) {', '.join(mine)}: the {kind} model stage builds its own model: "
                                  f"set the config's model to {spec!r} (got {', '.join(map(repr, specs))})")
        for spec in specs:
            if spec not in own_specs:
                check_spec(spec, self.model_cache)

    def _check_stages(self) -> None:
        models: dict[str, Any] = {}
        windows: dict[str, int | None] = {}
        own = {getattr(model_stage(k), "OWN_MODEL", None) for k in MODEL_STAGES} - {None}

        def load(spec: str) -> Any:
            from genmodes.models import load_model

            if spec not in models:
                models[spec], _ = load_model(spec, device="cpu", cache=self.model_cache)
            return models[spec]

        def window(spec: str) -> int | None:
            from genmodes.models import model_window

            if spec not in windows:
                windows[spec] = None if spec in own else model_window(spec, self.model_cache)
            return windows[spec]

        datasets = self.datasets()
        for i, c in enumerate(self.study.conditions):
            check = StageCheck(where=f"conditions[{i}] ({c.name})", model_specs=self.study.model_specs,
                               datasets={n: ds for n, ds in datasets.items() if c.runs_on(n)}, load_model=load,
                               window=window)
            for _, _, module, settings in c.stages.stages():
                if hasattr(module, "validate"):
                    module.validate(settings, check)

    # -- datasets, provenance and cell keys
    def datasets(self) -> dict[str, Dataset]:
        """The study's datasets as its cells score them (built once, stages' designs applied)."""
        if not self._datasets:
            self._datasets.update(study_datasets(self.study))
        return self._datasets

    def dataset(self, spec: DatasetSpec) -> Dataset:
        return self.datasets()[str(spec.name)]

    def weights(self, spec: str) -> ModelProvenance:
        """A model spec and its weights hash, computed once per run (file hashes are also cached
        per machine, see :func:`provenance.weights_provenance`)."""
        if spec not in self._weights:
            self._weights[spec] = provenance.weights_provenance(spec, self.model_cache)
        return self._weights[spec]

    def resolved_dtype(self) -> str:
        from genmodes.models import resolve_dtype

        return resolve_dtype(self.dtype, self.device)

    def manifest(self) -> RunManifest:
        commit, dirty = provenance.git_commit()
        datasets = {}
        for d in self.study.datasets:
            ds = self.dataset(d)
            source = f"family:{d.family}" if d.family else (f"path:{d.path}" if d.path else f"berglund:{d.berglund}")
            datasets[str(d.name)] = DatasetProvenance(content_hash=ds.meta["content_hash"], source=source,
                                                      questions=len(ds.questions))
        config_hash = hashlib.sha256(dump_config(self.study).encode()).hexdigest()  # = sha256sum config.yaml
        return RunManifest(schema_version=SCHEMA_VERSION, name=self.study.name, config_hash=config_hash,
                           datasets=datasets, models=[self.weights(m) for m in self.study.model_specs],
                           versions=provenance.package_versions(),
                           git_commit=commit, git_dirty=dirty, started_at=provenance.now())

    def key_parts(self, cell: Cell) -> dict[str, Any]:
        """Everything a cell's results depend on; its hash is the cell key."""
        return key_parts(cell, self.dataset(cell.dataset), self.weights(cell.model),
                         {**self.study.scoring.model_dump(mode="json"), "dtype": self.resolved_dtype()})

    def stale(self, cells: list[Cell]) -> dict[str, str]:
        """Finished cells whose results no longer follow from the config and data: cell id -> why."""
        return self.folder.stale(cells, self.key_parts)

    def done(self, cell: Cell) -> bool:
        return self.folder.done(cell)

    def check_folder(self) -> str:
        return self.folder.check()

    def init_folder(self) -> str:
        return self.folder.init(self.manifest())

    def _all_done(self) -> bool:
        """A finished run of this very config and data: reading it changes nothing (works read-only)."""
        cells = grid(self.study)
        return (self.folder.same_config() and (self.out / MANIFEST).is_file()
                and all(self.done(c) for c in cells) and not self.stale(cells))

    # -- the grid
    def run(self) -> list[dict[str, Any]]:
        import torch

        if self.study.threads:
            torch.set_num_threads(self.study.threads)
        if self._all_done():
            n = len(grid(self.study))
            self.log(f"resuming: {n} of {n} cells already finished")
            return self.collect()
        self.validate()
        self.folder.check()
        self.folder.make()
        with folder_lock(self.out):
            clean_stale_temps(self.out, depth=2)
            if self.init_folder() == "extend":
                self.log(f"extending the run in {self.out}: the config adds cells; finished cells are kept")
            try:
                return self._run_grid()
            except GenmodesError as e:
                raise type(e)(f"{e}; {self._resume_hint()}") from None

    def _resume_hint(self) -> str:
        """How to go on after a failure mid-run: the folder holds finished cells and resumable work."""
        n = len(self.folder.finished_ids())
        return (f"{self.out} keeps {n} finished cell(s): fix the cause and rerun the same command to resume, "
                f"or delete {self.out} to start fresh")

    def _run_grid(self) -> list[dict[str, Any]]:
        from genmodes.experiments.executors import LocalExecutor

        cells = grid(self.study)
        stale = self.stale(cells)
        for cell_id, why in stale.items():
            self.log(f"recomputing {cell_id}: {why}")
            self.folder.forget(cell_id)
        if stale:
            self.collect()  # the top-level files no longer list the stale cells, even if killed now
        todo = [c for c in cells if not self.done(c)]
        if len(todo) < len(cells):
            self.log(f"resuming: {len(cells) - len(todo)} of {len(cells)} cells already finished")
        executor = self.executor or LocalExecutor()
        executor.run(todo, total=len(cells), run_here=self.execute, after_cell=self.collect,
                     progress=self.progress, remote=self.remote_task())
        return self.collect()

    def remote_task(self) -> "RemoteCells":
        """How another process runs a cell of this run (an executor's worker)."""
        return RemoteCells(out=str(self.out.resolve()), device=self.device, model_cache=self.model_cache,
                           dtype=self.dtype, study=self.study)

    def execute(self, cell: Cell) -> None:
        """Run one cell under the run's precision: what every executor calls."""
        from genmodes.models import precision

        with precision(self.resolved_dtype(), self.device):
            self.run_cell(cell)

    def run_cell(self, cell: Cell) -> None:
        ds = self.dataset(cell.dataset)
        workdir = self.folder.cell_dir(cell)
        workdir.mkdir(parents=True, exist_ok=True)
        t_start = time.perf_counter()
        ready = prepare_cell(self.study, cell, self.datasets(), workdir, self.out / "shared", device=self.device,
                             model_cache=self.model_cache, progress=self.progress)
        scores, contexts, prefix_tokens, score_s = score_cell(self.study, cell, ds, ready, progress=self.progress)
        measure_recall(self.study, cell, ds, ready, scores)
        measure_calibration(self.study, cell, ds, ready, scores)
        rows = result_rows(cell, ds, ready, scores, contexts, prefix_tokens)
        record = cell_record(cell, ds, ready, len(rows), score_s, t_start, self.key_parts(cell),
                             self.resolved_dtype())
        self.folder.write_cell(cell, rows, record)
        from genmodes.conditions.tracking import log_cell_accuracy

        steps = getattr(ready.prepared.model_info, "steps", None)
        log_cell_accuracy(cell.condition.stages, workdir, cell.id, rows, {"steps": steps},
                          {"dataset": record.dataset, "condition": record.condition, "seed": cell.seed,
                           "model": cell.model})
        del ready

    def collect(self) -> list[dict[str, Any]]:
        """Rebuild results.jsonl, cells.jsonl and summary.csv from the finished cells, in grid order."""
        return self.folder.collect()


class RemoteCells:
    """What a worker needs to run a cell of a run from its folder alone (picklable): see
    :func:`run_cell_in_folder`."""

    def __init__(self, out: str, device: str | None, model_cache: str | None, dtype: str | None, study: Study):
        self.out, self.device, self.model_cache, self.dtype = out, device, model_cache, dtype
        self.cwd = os.getcwd()
        self._study = study  # driver-side only: resources and threads per cell

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_study"}

    def resources(self, cell: Cell) -> dict[str, Any]:
        """Ray task options for ``cell``: its condition's ``resources``, else the config's, else 1 CPU."""
        res = cell.condition.resources or self._study.resources
        opts: dict[str, Any] = {"num_cpus": 1}
        if res is not None:
            if res.num_cpus is not None:
                opts["num_cpus"] = res.num_cpus
            if res.num_gpus:
                opts["num_gpus"] = res.num_gpus
            if res.memory_gb is not None:
                opts["memory"] = int(res.memory_gb * 1e9)
        return opts

    def threads(self, cell: Cell) -> int:
        """Torch threads of a cell in a worker: the config's ``threads``, else its CPUs (at least 1), so
        workers sharing a machine do not oversubscribe its cores."""
        if self._study.threads:
            return self._study.threads
        return max(1, int(self.resources(cell)["num_cpus"]))

    def __call__(self, cell_id: str, threads: int | None = None) -> str:
        return run_cell_in_folder(self.out, cell_id, device=self.device, model_cache=self.model_cache,
                                  dtype=self.dtype, threads=threads, cwd=self.cwd)


def run_cell_in_folder(out: str | os.PathLike, cell_id: str, *, device: str | None = None,
                       model_cache: str | None = None, dtype: str | None = None, threads: int | None = None,
                       cwd: str | None = None, progress: bool = False) -> str:
    """Run cell ``cell_id`` of the run folder ``out`` in this process (any process: a Ray worker, a
    batch job), unless it is finished. Returns ``"ran"`` or ``"finished"`` (already done).

    ``cwd``: the directory relative paths of the config (dataset folders, a model folder) are
    relative to, the driver's, where it exists here."""
    import torch

    from genmodes.io import wait_lock

    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    out = Path(out)
    if threads:
        torch.set_num_threads(threads)
    study = load_config(out / "config.yaml")
    try:
        cell = find_cell(study, cell_id)
    except ConfigError:
        raise ConfigError(f"{out}: the run has no cell {cell_id!r}") from None
    runner = Runner(study, out, progress=progress, device=device, model_cache=model_cache, dtype=dtype)
    with wait_lock(out / "cells" / cell_id / CELL_LOCK):
        if runner.done(cell):
            return "finished"
        runner.execute(cell)
    return "ran"


def run(config_path: str | os.PathLike, out: str | os.PathLike | None = None, **kw: Any) -> tuple[Path, list]:
    study = load_config(config_path)
    out_dir = Path(out) if out else Path("runs") / study.name
    runner = Runner(study, out_dir, **kw)
    return out_dir, runner.run()
