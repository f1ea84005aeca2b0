"""``genmodes run --dry-run`` (issue 13, item 4): calibrated on the configured model, finished cells
marked, unresolvable model or dataset refused in one line."""

import time

import pytest
import yaml

from genmodes.cli import main
from genmodes.experiments.config import load_config
from genmodes.experiments.estimate import calibrate, estimate
from genmodes.experiments.runner import Runner

TINY_RC = {"n_people_a": 4, "n_people_d": 0, "n_people_b": 2, "n_paraphrases": 3, "n_test_paraphrases": 2}
GRID = {"name": "t", "model": "tiny-random", "seeds": [0],
        "datasets": [{"name": "rc", "family": "reversal_curse", "settings": TINY_RC}],
        "conditions": [{"name": "pretrained"}, {"name": "in_context"},
                       {"name": "finetune", "settings": {"epochs": 20, "lr": 1.0e-3, "batch_size": 4, "seq_len": 64}},
                       {"name": "ft_oracle", "kind": "retrieval",
                        "settings": {"method": "oracle", "k": 2,
                                     "finetune": {"epochs": 20, "lr": 1.0e-3, "batch_size": 4, "seq_len": 64}}}]}


def write(tmp_path, cfg):
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def test_estimate_is_the_measured_run_within_a_factor_and_marks_finished_cells(tmp_path, capsys):
    path = write(tmp_path, GRID)
    cfg = load_config(path)
    out = tmp_path / "run"
    runner = Runner(cfg, out, progress=False)
    runner.validate()
    rows = estimate(runner, calibrate(runner))
    assert [r.finished for r in rows] == [False] * 4
    # the shared checkpoint is trained once: by the finetune cell, not again by finetune + retrieval
    by = {r.cell: r for r in rows}
    assert by["rc__finetune__s0"].train_s > 0 and by["rc__ft_oracle__s0"].train_s == 0
    estimated = sum(r.total_s for r in rows)
    t0 = time.perf_counter()
    Runner(cfg, out, progress=False).run()
    actual = time.perf_counter() - t0
    assert actual / 10 < estimated < actual * 10, (estimated, actual)

    assert main(["run", path, "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "calibrated on cpu" in printed and "to run: 0 of 4 cells" in printed
    for cell in by:
        line = next(line for line in printed.splitlines() if line.strip().startswith(cell))
        assert "finished" in line


def test_a_from_scratch_grid_is_calibrated_on_the_model_its_cells_build(tmp_path):
    arch = {"steps": 150, "batch_size": 8, "eval_every": 50, "d_model": 32, "n_heads": 2, "n_layers": 2}
    path = write(tmp_path, {
        "name": "s", "model": "scratch", "threads": 1,
        "datasets": [{"name": "rel", "family": "relations",
                      "settings": {"n_relations": 8, "n_entities": 16, "n_episodes": 8, "n_filler": 0,
                                   "n_trained_questions": 8, "heldout_fraction": 0.125}}],
        "conditions": [{"name": "parametric", "kind": "from_scratch", "settings": {"context": "none", **arch}},
                       {"name": "oracle", "kind": "from_scratch", "settings": {"context": "oracle", "k": 2, **arch}}]})
    cfg = load_config(path)
    runner = Runner(cfg, tmp_path / "run", progress=False)
    runner.validate()
    rows = estimate(runner, calibrate(runner))
    assert rows[0].train_s > 0 and rows[1].train_s == 0  # one model, trained by the first cell
    estimated = sum(r.total_s for r in rows)
    t0 = time.perf_counter()
    Runner(cfg, tmp_path / "run", progress=False).run()
    actual = time.perf_counter() - t0
    assert actual / 10 < estimated < actual * 10, (estimated, actual)


@pytest.mark.parametrize("change, message", [
    ({"model": "not-a-model"}, "unknown model 'not-a-model'"),
    ({"datasets": [{"name": "x", "path": "no/such/dataset"}]}, "no such directory"),
])
def test_dry_run_refuses_what_cannot_be_resolved(tmp_path, capsys, change, message):
    path = write(tmp_path, {**GRID, **change})
    assert main(["run", path, "--out", str(tmp_path / "run"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genmodes: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()
