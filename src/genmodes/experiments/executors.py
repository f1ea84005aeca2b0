"""Executors: how the cells of a grid are run.

- :class:`LocalExecutor`: one cell after another in this process (the default).
- :class:`RayExecutor`: each cell a Ray task on a Ray cluster (an existing one, ``--address``, or a
  local one it starts), with the resources the config asks for per cell (``resources:``, top level or
  per condition), so a grid spreads over every CPU or GPU of a cluster.

An executor gets plain callables from the runner: ``run_here(cell)`` runs a cell in this process,
``after_cell()`` rebuilds the run's top-level files, and ``remote`` runs a cell in another process:
``remote(cell_id, threads)`` (picklable; :class:`genmodes.experiments.runner.RemoteCells`), with
``remote.resources(cell)`` and ``remote.threads(cell)``. A cell is a unit that any process can run
from the run folder alone: ``remote`` re-reads ``<out>/config.yaml``, builds the cell's dataset, runs
the cell and writes ``cells/<id>/``
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
from typing import Any, Callable

from genmodes.errors import GenmodesError

MAX_RETRIES = 3  # a cell whose worker died is run again this many times


class ExecutorError(GenmodesError):
    """A cell could not be run by the executor (its worker kept dying, the cluster is unreachable)."""


def _bar(progress: bool, todo: list[Any], total: int, desc: str) -> Any:
    if not (progress and todo):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=total - len(todo), desc=desc, unit="cell", dynamic_ncols=True)


class LocalExecutor:
    """Every cell in this process, in grid order."""

    def run(self, todo: list[Any], *, total: int, run_here: Callable[[Any], None], after_cell: Callable[[], Any],
            progress: bool = True, remote: Any = None) -> None:
        bar = _bar(progress, todo, total, "cells")
        try:
            for cell in todo:
                if bar is not None:
                    bar.set_postfix_str(cell.id)
                run_here(cell)
                after_cell()
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()  # an error is printed below the bar, not on its line


def _run_remote(task: Callable[[str, int | None], str], cell_id: str, threads: int | None) -> str:
    return task(cell_id, threads)


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

    def run(self, todo: list[Any], *, total: int, run_here: Callable[[Any], None], after_cell: Callable[[], Any],
            progress: bool = True, remote: Any = None) -> None:
        import ray

        started = self._init()
        try:
            self._run(ray, todo, total, remote, after_cell, progress)
        finally:
            if started:
                ray.shutdown()  # a local cluster this run started ends with it

    def _run(self, ray: Any, todo: list[Any], total: int, remote: Any, after_cell: Callable[[], Any],
             progress: bool) -> None:
        task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_run_remote)
        _check_fits(ray, remote, todo)
        pending: dict[Any, Any] = {}
        for cell in todo:
            ref = task.options(name=cell.id, **remote.resources(cell)).remote(remote, cell.id, remote.threads(cell))
            pending[ref] = cell
        bar = _bar(progress, todo, total, "cells (ray)")
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
                    after_cell()
                    if bar is not None:
                        bar.update(1)
        finally:
            for ref in pending:  # an error (or ^C) stops the run: cells not finished are not waited for
                ray.cancel(ref, force=True)
            if bar is not None:
                bar.close()


def _check_fits(ray: Any, remote: Any, todo: list[Any]) -> None:
    """A cell asking for more than the whole cluster has would wait forever: say so instead."""
    have = ray.cluster_resources()
    names = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
    for cell in todo:
        for key, want in remote.resources(cell).items():
            got = have.get(names[key], 0)
            if want > got:
                unit = " bytes" if key == "memory" else ""
                raise ExecutorError(f"cell {cell.id} asks for {names[key]} {want:g}{unit} (resources); the Ray "
                                    f"cluster has {got:g}{unit} in all")
