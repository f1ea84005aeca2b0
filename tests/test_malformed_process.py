"""Issue 12, the cases that need real processes: two runs on one folder, stale locks and temporary
files a kill leaves, a closed stdout, a diverging run, the progress bar under an error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.test_malformed import assert_one_line_error, base_config, invoke, write

# this checkout's src first, then whatever the environment already had on the path (a GPU image's
# site folder of extra packages, say)
ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src")]
                                     + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}


def cli(*args: object, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genmodes.cli", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=300, **kw)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_two_runs_at_once_one_runs_the_other_says_in_use(tmp_path):
    # long enough (a few seconds of fine-tuning) that the second start lands while the first works
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config(
        seeds=[0, 1], conditions=[{"name": "finetune", "settings": {"steps": 40, "batch_size": 4, "seq_len": 64}}])))
    out = tmp_path / "run"
    # The folder lock is under test, not the device: on CPU the first run stays busy long enough for the
    # second start to land while it works (on a GPU its 80 tiny steps take well under a second), and no
    # two processes need a CUDA context on one card at once.
    args = [sys.executable, "-m", "genmodes.cli", "run", str(cfg), "--out", str(out), "--no-report", "--device", "cpu"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[0] == 2)
    winner_pid = next(p.pid for p, r in zip(procs, results) if r[0] == 0)
    line = assert_one_line_error(2, loser[2], "is in use")
    assert f"pid {winner_pid}" in line
    rows = (out / "results.jsonl").read_text().splitlines()
    assert len({json.loads(r)["cell"] for r in rows}) == 2 and len(rows) == len(set(rows))


def test_a_live_lock_holder_is_named_and_a_dead_ones_lock_is_taken_over(tmp_path):
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config()))
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from genmodes.io import folder_lock\n"
                               f"with folder_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        rc, _, err = invoke(["run", cfg, "--out", out, "--no-report"])
        line = assert_one_line_error(rc, err, f"in use by another genmodes process (pid {holder.pid})")
        assert not (out / "config.yaml").exists() and "results" not in line
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead: its lock file stays, naming it, and is taken over
    assert (out / ".lock").read_text().strip() == str(holder.pid)
    rc, _, err = invoke(["run", cfg, "--out", out, "--no-report"])
    assert rc == 0, err
    assert (out / "summary.csv").is_file()


def test_a_folder_holding_only_a_config_temp_file_does_not_block(tmp_path):
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config()))
    out = tmp_path / "run"
    out.mkdir()
    stale = write(out / f".config.yaml.tmp-{dead_pid()}", "name: half")
    rc, _, err = invoke(["run", cfg, "--out", out, "--no-report"])
    assert rc == 0, err
    assert not stale.exists()


def test_temp_files_a_kill_leaves_are_removed_by_the_next_run_and_report(tmp_path):
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config(seeds=[0, 1])))
    out = tmp_path / "run"
    rc, _, err = invoke(["run", cfg, "--out", out])
    assert rc == 0, err
    pid = dead_pid()
    cell = out / "cells" / "sr__pretrained__s1"
    (cell / "cell.json").unlink()  # as if killed before the cell finished
    temps = [write(out / f".cells.jsonl.tmp-{pid}", "{"), write(cell / f".cell.json.tmp-{pid}", "{"),
             write(out / f".results.jsonl.tmp-{pid}", "{")]
    live = write(out / f".summary.csv.tmp-{os.getpid()}", "mine")  # a live process's temp stays
    rc, _, err = invoke(["run", cfg, "--out", out, "--no-report"])
    assert rc == 0, err
    assert not any(t.exists() for t in temps) and live.exists()
    fig_temp = write(out / "figures" / f".accuracy.tmp-{pid}.png", "x")
    rep_temp = write(out / f".report.tmp-{pid}-abc123", "x")
    rc, _, err = invoke(["report", out])
    assert rc == 0, err
    assert not fig_temp.exists() and not rep_temp.exists()
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name and p != live]


def test_dry_run_into_a_closed_pipe_ends_quietly(tmp_path):
    """`genmodes run --dry-run | head -1` once head has gone: the reader end is closed before the
    command writes anything, so its first write fails (deterministically)."""
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config(seeds=list(range(20)))))
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "genmodes.cli", "run", str(cfg), "--dry-run"],
                           stdout=w, stderr=subprocess.PIPE, env=ENV, timeout=300)
    finally:
        os.close(w)
    err = p.stderr.decode()
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert p.returncode == 141 and err == "", (p.returncode, err)


def test_infinite_lr_is_a_config_error_and_a_diverging_run_stops_without_a_result(tmp_path):
    ft = {"steps": 3, "batch_size": 2, "seq_len": 32}
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config(
        conditions=[{"name": "finetune", "settings": {**ft, "lr": float("inf")}}])))
    rc, _, err = invoke(["run", cfg, "--out", tmp_path / "run"])
    assert_one_line_error(rc, err, "lr: inf is not a finite number")
    assert not (tmp_path / "run").exists()
    # a finite but absurd lr (within the bound): the loss goes non-finite; the cell stops, nothing is reported
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config(
        conditions=[{"name": "finetune", "settings": {**ft, "lr": 1e8}}])))
    rc, _, err = invoke(["run", cfg, "--out", tmp_path / "run"])
    line = assert_one_line_error(rc, err, "training loss is nan")
    assert "lr 1e+08 too high" in line
    # failed mid-run: the line says what is left and how to go on
    assert f"{tmp_path / 'run'} keeps 0 finished cell(s): fix the cause and rerun the same command to resume, " \
           f"or delete {tmp_path / 'run'} to start fresh" in line
    raw = err.split("\n")
    assert any(x.startswith("genmodes: error:") for x in raw), "the error line must not share the bar's line"
    assert not (tmp_path / "run" / "results.jsonl").exists() or \
        (tmp_path / "run" / "results.jsonl").read_text() == ""
    assert not list((tmp_path / "run").rglob("cell.json"))
    # no finished cell: the folder is not "another run"; the corrected config runs in it
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config(
        conditions=[{"name": "finetune", "settings": {**ft, "lr": 1e-3}}])))
    rc, _, err = invoke(["run", cfg, "--out", tmp_path / "run", "--no-report"])
    assert rc == 0, err
    rows = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert rows and all(isinstance(s["logprob"], float) for r in rows for s in r["scores"])


def test_saved_dataset_folder_gets_normal_permissions(tmp_path):
    rc, _, err = invoke(["data", "make", "simple_reversals", "--out", tmp_path / "d", "--set", "n_facts=3"])
    assert rc == 0, err
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~umask


def test_usage_error_is_one_line_from_a_real_process(tmp_path):
    r = cli("data", "make", "--seed", "x")
    line = assert_one_line_error(r.returncode, r.stderr, "seed")
    assert "usage:" not in r.stderr and line.startswith("genmodes: error: data make:")


def test_non_finite_scores_stop_the_cell(tmp_path, monkeypatch):
    """Whatever made the model's scores non-finite, they are never turned into an accuracy."""
    import torch

    from genmodes.conditions.base import CellContext

    original = CellContext.load_model

    def broken(self, spec=None):
        model, tok = original(self, spec)
        with torch.no_grad():
            model.lm_head.weight.fill_(float("nan"))
        return model, tok

    monkeypatch.setattr(CellContext, "load_model", broken)
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config()))
    rc, _, err = invoke(["run", cfg, "--out", tmp_path / "run"])
    assert_one_line_error(rc, err, "not a number")
    assert not list((tmp_path / "run").rglob("cell.json"))
    assert not (tmp_path / "run" / "summary.csv").exists()
