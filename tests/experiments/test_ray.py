"""The Ray executor (issue 13, item 1) on a local 2-CPU Ray cluster, tiny-random model."""

import fcntl
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from genmodes.experiments.config import dump_config, parse_config
from genmodes.experiments.executors import RayExecutor
from genmodes.experiments.grid import grid
from genmodes.experiments.runner import CELL_LOCK, Runner

ray = pytest.importorskip("ray")

TINY_RC = {"n_people_a": 4, "n_people_d": 0, "n_people_b": 2, "n_paraphrases": 3, "n_test_paraphrases": 2}
FT = {"epochs": 2, "lr": 1.0e-3, "batch_size": 4, "seq_len": 64}


def config(**over):
    cfg = {"name": "t", "model": "tiny-random", "seeds": [0],
           "datasets": [{"name": "rc", "family": "reversal_curse", "settings": TINY_RC}],
           "conditions": [{"name": "pretrained"}, {"name": "finetune", "settings": FT}]}
    cfg.update(over)
    return parse_config(cfg)


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module: starting Ray costs seconds on a loaded machine. Its workers
    inherit this process's environment (PYTHONPATH, OMP_NUM_THREADS)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_resources_per_condition_and_not_in_the_run_identity():
    cfg = config(resources={"num_cpus": 2},
                 conditions=[{"name": "pretrained"},
                             {"name": "finetune", "settings": FT, "resources": {"num_gpus": 1, "num_cpus": 1}}])
    task = Runner(cfg, Path("unused")).remote_task()
    by = {c.condition.name: c for c in grid(cfg)}
    assert task.resources(by["pretrained"]) == {"num_cpus": 2}
    assert task.resources(by["finetune"]) == {"num_cpus": 1, "num_gpus": 1}
    assert task.threads(by["pretrained"]) == 2 and task.threads(by["finetune"]) == 1
    assert Runner(config(), Path("unused")).remote_task().resources(by["pretrained"]) == {"num_cpus": 1}
    # where cells run is not what they compute: a run resumed with other resources is the same run
    assert dump_config(cfg) == dump_config(config())


@pytest.mark.slow
def test_ray_gives_the_local_results_and_builds_a_shared_checkpoint_once(tmp_path, cluster):
    cfg = config(seeds=[0, 1], conditions=[
        {"name": "pretrained"}, {"name": "finetune", "settings": FT},
        {"name": "finetune_oracle", "kind": "retrieval", "settings": {"method": "oracle", "k": 2, "finetune": FT}}])
    local, remote = tmp_path / "local", tmp_path / "ray"
    Runner(cfg, local, progress=False).run()
    Runner(cfg, remote, progress=False, executor=RayExecutor()).run()
    assert rows(remote) == rows(local)
    assert (remote / "summary.csv").read_bytes() == (local / "summary.csv").read_bytes()
    cells = [json.loads(line) for line in (remote / "cells.jsonl").read_text().splitlines()]
    assert len(cells) == 6
    for seed in (0, 1):
        # finetune and finetune + retrieval share one checkpoint: trained by one cell, loaded by the other
        ft = [c["stages"]["model"] for c in cells if c["seed"] == seed and c["condition"] == "finetune"][0]
        fo = [c["stages"]["model"] for c in cells if c["seed"] == seed and c["condition"] == "finetune_oracle"][0]
        assert sorted([ft["reused"], fo["reused"]]) == [False, True]
    assert len(list((remote / "shared" / "finetune").glob("*/DONE"))) == 2


@pytest.mark.slow
def test_a_worker_killed_mid_cell_loses_only_its_cell(tmp_path, cluster):
    """The fine-tuning cell's worker is killed while it is inside the cell; Ray runs the cell again
    and the run ends with the local executor's rows, none twice. To kill it mid-cell without a race,
    the test holds the lock of the cell's checkpoint, so the worker waits inside the cell."""
    cfg = config()
    local, remote = tmp_path / "local", tmp_path / "ray"
    Runner(cfg, local, progress=False).run()
    (ckpt,) = [p.name for p in (local / "shared" / "finetune").iterdir() if p.is_dir()]
    remote.mkdir()
    shutil.copy(local / "config.yaml", remote / "config.yaml")  # the same run, not started yet
    lock_path = remote / "shared" / "finetune" / f"{ckpt}.lock"
    lock_path.parent.mkdir(parents=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    cell_lock = remote / "cells" / "rc__finetune__s0" / CELL_LOCK
    seen: list[int] = []

    def holder_pid() -> int | None:
        try:
            text = cell_lock.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def kill_then_release():
        try:
            deadline = time.monotonic() + 300  # Ray starts workers slowly on a loaded machine
            while time.monotonic() < deadline and holder_pid() is None:
                time.sleep(0.1)
            first = holder_pid()
            if first is None:
                return
            seen.append(first)
            os.kill(first, signal.SIGKILL)
            while time.monotonic() < deadline and holder_pid() in (None, first):
                time.sleep(0.1)
            if holder_pid() not in (None, first):
                seen.append(holder_pid())  # the retried cell, in another worker process
        finally:
            os.close(fd)  # releases the checkpoint lock, whatever happened

    killer = threading.Thread(target=kill_then_release)
    killer.start()
    try:
        Runner(cfg, remote, progress=False, executor=RayExecutor()).run()
    finally:
        killer.join()
    assert len(seen) == 2 and seen[0] != seen[1]
    got = rows(remote)
    assert len({(r["cell"], r["question_id"]) for r in got}) == len(got)
    assert got == rows(local)
    assert (remote / "summary.csv").read_bytes() == (local / "summary.csv").read_bytes()
    assert len((remote / "cells.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_a_cell_error_in_a_worker_is_the_one_line_error_of_the_local_run(tmp_path, cluster):
    from genmodes.errors import NumericError

    cfg = config(conditions=[{"name": "pretrained"},
                             {"name": "finetune", "settings": {**FT, "lr": 1e8}}])  # the loss goes non-finite
    with pytest.raises(NumericError, match="training loss is nan"):
        Runner(cfg, tmp_path / "run", progress=False, executor=RayExecutor()).run()
    assert not (tmp_path / "run" / "cells" / "rc__finetune__s0" / "cell.json").exists()


@pytest.mark.slow
def test_a_cell_asking_more_than_the_cluster_has_is_refused(tmp_path, cluster):
    from genmodes.experiments.executors import ExecutorError

    cfg = config(resources={"num_gpus": 1})  # this local cluster has no GPU: the cell would wait forever
    with pytest.raises(ExecutorError, match="asks for GPU 1 .* has 0"):
        Runner(cfg, tmp_path / "run", progress=False, executor=RayExecutor()).run()
    assert not list((tmp_path / "run").rglob("cell.json"))
