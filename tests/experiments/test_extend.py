"""Extending a finished run: a config that adds seeds, datasets or conditions keeps every finished cell
and computes only the new ones; one that would change or drop a finished cell is another run."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from genmodes.cli import main
from genmodes.experiments.runner import Runner

SR = {"n_facts": 3, "articles_per_fact": 1}


def write(tmp_path: Path, **over) -> Path:
    cfg = {"name": "t", "model": "tiny-random", "seeds": [0],
           "datasets": [{"name": "sr", "family": "simple_reversals", "settings": SR}],
           "conditions": [{"name": "pretrained"}]}
    cfg.update(over)
    p = tmp_path / f"c{len(list(tmp_path.glob('c*.yaml')))}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.fixture
def computed(monkeypatch):
    """The ids of the cells this process computes."""
    ids: list[str] = []
    original = Runner.run_cell

    def counting(self, cell):
        ids.append(cell.id)
        return original(self, cell)

    monkeypatch.setattr(Runner, "run_cell", counting)
    return ids


def finished(out: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted((out / "cells").glob("*/cell.json"))}


def test_a_new_seed_and_a_new_condition_compute_only_the_new_cells(tmp_path, computed, capsys):
    out = tmp_path / "run"
    assert main(["run", str(write(tmp_path)), "--out", str(out), "--no-report"]) == 0
    assert computed == ["sr__pretrained__s0"]
    before = finished(out)
    computed.clear()
    bigger = write(tmp_path, seeds=[0, 1], conditions=[{"name": "pretrained"}, {"name": "in_context"}])
    assert main(["run", str(bigger), "--out", str(out), "--no-report"]) == 0
    assert sorted(computed) == ["sr__in_context__s0", "sr__in_context__s1", "sr__pretrained__s1"]
    assert {k: v for k, v in finished(out).items() if k in before} == before  # the old cell untouched
    err = capsys.readouterr().err
    assert "extending the run" in err and "resuming: 1 of 4 cells already finished" in err
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert {r["condition"] for r in summary} == {"pretrained", "in_context"}
    assert {int(r["n"]) for r in summary} == {6}  # 3 questions per split x 2 seeds, every condition
    assert yaml.safe_load((out / "config.yaml").read_text())["seeds"] == [0, 1]  # the run is now the bigger one
    # and it is finished: the same command computes nothing
    computed.clear()
    assert main(["run", str(bigger), "--out", str(out), "--no-report"]) == 0
    assert computed == []


def test_a_new_dataset_and_a_declared_comparison_extend_too(tmp_path, computed):
    out = tmp_path / "run"
    assert main(["run", str(write(tmp_path)), "--out", str(out), "--no-report"]) == 0
    computed.clear()
    more = write(tmp_path, datasets=[{"name": "sr", "family": "simple_reversals", "settings": SR},
                                     {"name": "sr2", "family": "simple_reversals", "seed": 1, "settings": SR}],
                 conditions=[{"name": "pretrained"}, {"name": "in_context"}],
                 compare=[{"a": "in_context", "b": "pretrained", "split": "reversal"}])
    assert main(["run", str(more), "--out", str(out), "--no-report"]) == 0
    assert sorted(computed) == ["sr2__in_context__s0", "sr2__pretrained__s0", "sr__in_context__s0"]


@pytest.mark.parametrize("change,why", [
    ({"seeds": [1]}, "finished cell sr__pretrained__s0 is not in the new config"),
    ({"conditions": [{"name": "pretrained", "kind": "in_context"}]}, "finished cell sr__pretrained__s0 would change"),
    ({"datasets": [{"name": "sr", "family": "simple_reversals", "settings": {**SR, "n_facts": 4}}]},
     "finished cell sr__pretrained__s0 would change: dataset settings.n_facts 3 -> 4"),
    ({"scoring": {"batch_tokens": 128}}, "would change: scoring batch_tokens 4096 -> 128"),
])
def test_a_config_that_changes_or_drops_a_finished_cell_is_another_run(tmp_path, computed, capsys, change, why):
    out = tmp_path / "run"
    assert main(["run", str(write(tmp_path)), "--out", str(out), "--no-report"]) == 0
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    computed.clear()
    assert main(["run", str(write(tmp_path, **change)), "--out", str(out), "--no-report"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "holds a run of a different config" in line and why in line and "start fresh" in line
    assert computed == [] and {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


def test_a_dry_run_of_an_extension_counts_the_finished_cells(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(write(tmp_path)), "--out", str(out), "--no-report"]) == 0
    capsys.readouterr()
    bigger = write(tmp_path, seeds=[0, 1])
    assert main(["run", str(bigger), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    line_s0 = next(ln for ln in text.splitlines() if "sr__pretrained__s0" in ln)
    line_s1 = next(ln for ln in text.splitlines() if "sr__pretrained__s1" in ln)
    assert "finished" in line_s0 and "to run" in line_s1
    assert yaml.safe_load((out / "config.yaml").read_text())["seeds"] == [0]  # a dry run writes nothing
