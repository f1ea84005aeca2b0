"""Executors: how the cells of a grid are run (issue 13, item 1).

- :class:`LocalExecutor`: one cell after another in this process (the default).
- :class:`RayExecutor`: each cell a Ray task on a Ray cluster (an existing one, ``--address``, or a
  local one it starts), with the resources the config asks for per cell (``resources:``, top level or
  per condition), so a grid spreads over every CPU or GPU of a cluster.

A cell is a unit that any process can run from the run folder alone: :func:`run_cell_in_folder`
re-reads ``<out>/config.yaml``, builds the cell's dataset, runs the cell and writes ``cells/<id>/``
atomically (``cell.json`` last). The driver never receives results over the wire; it only collects
finished cells from disk, as the local executor does, so a driver killed at any moment is resumed by
the same command with no lost or duplicated row, and a worker that dies loses only its cell, which
Ray runs again (``max_retries``).

Shared model stages (one fine-tuned checkpoint used by finetune and finetune + retrieval, one
augmentation cache, one from-scratch model) are built once: the code that builds such an artifact in
``CellContext.artifact_dir`` holds a file lock beside it (:func:`genmodes.io.wait_lock`), so when
two cells that need it run at once, the first builds it and the other blocks, then loads it. A lock,
rather than scheduling cells in waves by model-stage key, because it needs no knowledge of which
condition builds what (new model stages get it by building under the lock), works across drivers and
processes on one machine or on a filesystem with working ``flock``, and costs nothing when nothing is
shared; its price is a waiting cell holding its worker slot, which only the cells that need the
artifact do, and which they would spend waiting in any schedule. Each cell also runs under a lock on
its own folder, so a cell run twice at once (a retried task whose first attempt still runs) is
computed once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genmodes.errors import ConfigError, GenmodesError

if TYPE_CHECKING:
    from genmodes.experiments.runner import Cell, Runner

CELL_LOCK = ".cell.lock"  # in cells/<id>/: held (pid inside) while a process runs the cell
MAX_RETRIES = 3  # a cell whose worker died is run again this many times


class ExecutorError(GenmodesError):
    """A cell could not be run by the executor (its worker kept dying, the cluster is unreachable)."""


# ------------------------------------------------------------------------------------------ one cell

def run_cell_in_folder(out: str | os.PathLike, cell_id: str, *, device: str | None = None,
                       model_cache: str | None = None, dtype: str | None = None, threads: int | None = None,
                       cwd: str | None = None, progress: bool = False) -> str:
    """Run cell ``cell_id`` of the run folder ``out`` in this process (any process: a Ray worker, a
    batch job), unless it is finished. Returns ``"ran"`` or ``"finished"`` (already done).

    ``cwd``: the directory relative paths of the config (dataset folders, a model folder) are
    relative to, the driver's, where it exists here."""
    import torch

    from genmodes.experiments.config import load_config
    from genmodes.experiments.runner import Runner, grid
    from genmodes.io import wait_lock

    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    out = Path(out)
    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(out / "config.yaml")
    cell = next((c for c in grid(cfg) if c.id == cell_id), None)
    if cell is None:
        raise ConfigError(f"{out}: the run has no cell {cell_id!r}")
    runner = Runner(cfg, out, progress=progress, device=device, model_cache=model_cache, dtype=dtype)
    with wait_lock(out / "cells" / cell_id / CELL_LOCK):
        if runner.done(cell):
            return "finished"
        runner.execute(cell)
    return "ran"


def cell_resources(runner: "Runner", cell: "Cell") -> dict[str, Any]:
    """Ray task options for ``cell``: its condition's ``resources``, else the config's, else 1 CPU."""
    res = cell.condition.resources or runner.cfg.resources
    opts: dict[str, Any] = {"num_cpus": 1}
    if res is not None:
        if res.num_cpus is not None:
            opts["num_cpus"] = res.num_cpus
        if res.num_gpus:
            opts["num_gpus"] = res.num_gpus
        if res.memory_gb is not None:
            opts["memory"] = int(res.memory_gb * 1e9)
    return opts


def cell_threads(runner: "Runner", cell: "Cell") -> int:
    """Torch threads of a cell in a worker: the config's ``threads``, else its CPUs (at least 1), so
    workers sharing a machine do not oversubscribe its cores."""
    if runner.cfg.threads:
        return runner.cfg.threads
    return max(1, int(cell_resources(runner, cell)["num_cpus"]))


# ------------------------------------------------------------------------------------------ executors

class LocalExecutor:
    """Every cell in this process, in grid order."""

    def run(self, runner: "Runner", cells: list["Cell"], todo: list["Cell"]) -> None:
        bar = None
        if runner.progress and todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="cells", unit="cell",
                       dynamic_ncols=True)
        try:
            for cell in todo:
                if bar is not None:
                    bar.set_postfix_str(cell.id)
                runner.execute(cell)
                runner.collect()
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()  # an error is printed below the bar, not on its line


class RayExecutor:
    """Each cell a Ray task. ``address``: a running cluster (``auto``, ``HOST:PORT``, ``ray://...``);
    ``None`` connects to ``RAY_ADDRESS`` if set, else starts a local cluster with ``num_cpus`` (default:
    this machine's) that ends with the run."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self.address = address
        self.num_cpus = num_cpus

    def _init(self) -> bool:
        """Connect (or start a local cluster); True when this call started Ray."""
        try:
            import ray
        except ImportError:
            raise ExecutorError("--executor ray needs Ray: pip install 'genmodes[ray]'") from None
        if ray.is_initialized():
            return False
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": "ERROR", "configure_logging": True}
        address = self.address or os.environ.get("RAY_ADDRESS")
        try:
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(num_cpus=self.num_cpus or os.cpu_count() or 1, **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
            raise ExecutorError(f"cannot connect to {where}: {str(e).splitlines()[0] if str(e) else e}") from None
        return True

    def run(self, runner: "Runner", cells: list["Cell"], todo: list["Cell"]) -> None:
        import ray

        started = self._init()
        try:
            self._run(ray, runner, cells, todo)
        finally:
            if started:
                ray.shutdown()  # a local cluster this run started ends with it

    def _run(self, ray: Any, runner: "Runner", cells: list["Cell"], todo: list["Cell"]) -> None:
        task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(run_cell_in_folder)
        _check_fits(ray, runner, todo)
        out = str(runner.out.resolve())
        cwd = os.getcwd()
        pending: dict[Any, "Cell"] = {}
        for cell in todo:
            ref = task.options(name=cell.id, **cell_resources(runner, cell)).remote(
                out, cell.id, device=runner.device, model_cache=runner.model_cache, dtype=runner.dtype,
                threads=cell_threads(runner, cell), cwd=cwd)
            pending[ref] = cell
        bar = None
        if runner.progress and todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="cells (ray)", unit="cell",
                       dynamic_ncols=True)
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    cell = pending.pop(ref)
                    try:
                        ray.get(ref)
                    except ray.exceptions.RayTaskError as e:
                        cause = getattr(e, "cause", None)
                        if isinstance(cause, GenmodesError):
                            raise cause from None
                        raise
                    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                            ray.exceptions.RayActorError, ray.exceptions.OutOfMemoryError) as e:
                        raise ExecutorError(f"cell {cell.id}: its Ray worker died {MAX_RETRIES + 1} times "
                                            f"({type(e).__name__}); finished cells are kept: rerun to "
                                            "resume") from None
                    runner.collect()
                    if bar is not None:
                        bar.update(1)
        finally:
            for ref in pending:  # an error (or ^C) stops the run: cells not finished are not waited for
                ray.cancel(ref, force=True)
            if bar is not None:
                bar.close()


def _check_fits(ray: Any, runner: "Runner", todo: list["Cell"]) -> None:
    """A cell asking for more than the whole cluster has would wait forever: say so instead."""
    have = ray.cluster_resources()
    names = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
    for cell in todo:
        for key, want in cell_resources(runner, cell).items():
            got = have.get(names[key], 0)
            if want > got:
                unit = " bytes" if key == "memory" else ""
                raise ExecutorError(f"cell {cell.id} asks for {names[key]} {want:g}{unit} (resources); the Ray "
                                    f"cluster has {got:g}{unit} in all")
