"""Command-line overrides of a config: applied to the YAML, validated like it, recorded in config.yaml."""

from __future__ import annotations

import json

import pytest
import yaml

from genmodes.cli import main
from genmodes.errors import ConfigError
from genmodes.experiments.overrides import apply_overrides, load_with_overrides, parse_seeds

RAW = {
    "name": "ov", "model": "tiny-random", "seeds": [0],
    "datasets": [{"family": "simple_reversals", "settings": {"n_facts": 6, "articles_per_fact": 2}},
                 {"name": "capped", "family": "simple_reversals", "max_per_split": 1}],
    "conditions": [{"name": "pretrained"}, {"name": "finetune", "settings": {"steps": 2, "batch_size": 2}}],
}


@pytest.fixture
def cfg_path(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(RAW))
    return p


def test_apply_overrides_by_name_and_index_without_touching_the_input():
    out = apply_overrides(RAW, limit=3, model="m", seeds=[0, 1],
                          sets=["conditions.finetune.settings.lr=0.01", "datasets.0.settings.n_facts=4",
                                "conditions.pretrained.settings.x=[a, b]", "scoring.batch_tokens=512"])
    assert out["model"] == "m" and out["seeds"] == [0, 1]
    assert [d["max_per_split"] for d in out["datasets"]] == [3, 1]  # a smaller cap stays
    assert out["conditions"][1]["settings"] == {"steps": 2, "batch_size": 2, "lr": 0.01}
    assert out["datasets"][0]["settings"]["n_facts"] == 4
    assert out["conditions"][0]["settings"] == {"x": ["a", "b"]}
    assert out["scoring"] == {"batch_tokens": 512}
    assert "max_per_split" not in RAW["datasets"][0] and RAW["model"] == "tiny-random"


@pytest.mark.parametrize("kw, msg", [
    ({"sets": ["conditions.nope.settings.x=1"]}, "conditions has no entry named 'nope' \\(have: pretrained, finetune\\)"),
    ({"sets": ["model"]}, "expected PATH=VALUE"),
    ({"sets": ["model.x=1"]}, "model is a value, not a mapping"),
    ({"limit": 0}, "--limit 0: must be at least 1"),
])
def test_bad_override_is_named(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        apply_overrides(RAW, **kw)


def test_overrides_are_validated_like_the_file(cfg_path):
    with pytest.raises(ConfigError, match=r"conditions\[1\] \(finetune\): bad setting 'epochs'.*both set"):
        load_with_overrides(cfg_path, sets=["conditions.finetune.settings.epochs=3"])
    with pytest.raises(ConfigError, match=r"conditions\[0\] \(pretrained\): bad setting 'bogus'"):
        load_with_overrides(cfg_path, sets=["conditions.pretrained.settings.bogus=1"])
    with pytest.raises(ConfigError, match=r"overrides\): config: duplicate seeds"):
        load_with_overrides(cfg_path, seeds=[1, 1])
    cfg = load_with_overrides(cfg_path, sets=["conditions.finetune.settings.steps=null",
                                              "conditions.finetune.settings.epochs=3"])
    assert cfg.conditions[1].spec.settings == {"steps": None, "batch_size": 2, "epochs": 3}
    assert parse_seeds("0, 2") == [0, 2]
    with pytest.raises(ConfigError, match="expected comma-separated integers"):
        parse_seeds("0,x")


def test_run_with_overrides_records_them_in_config_yaml(cfg_path, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", str(cfg_path), "--out", str(out), "--no-report", "--limit", "2", "--seeds", "0,1",
            "--set", "conditions.finetune.settings.steps=1", "--set", "datasets.capped.settings.n_facts=4"]
    assert main(args) == 0
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert recorded["seeds"] == [0, 1]
    assert [d["max_per_split"] for d in recorded["datasets"]] == [2, 1]
    assert recorded["conditions"][1]["settings"]["steps"] == 1
    assert recorded["datasets"][1]["settings"] == {"n_facts": 4}
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    per = {}
    for r in rows:
        per.setdefault((r["dataset"], r["split"], r["condition"], r["seed"]), []).append(r)
    assert {len(v) for k, v in per.items() if k[0] == "simple_reversals"} == {2}
    assert {len(v) for k, v in per.items() if k[0] == "capped"} == {1}
    assert {r["seed"] for r in rows} == {0, 1}
    cells = [json.loads(x) for x in (out / "cells.jsonl").read_text().splitlines()]
    assert {c["stages"]["model"]["steps"] for c in cells if c["condition"] == "finetune"} == {1}
    # the same command resumes; other overrides are another config, refused
    assert main(args) == 0
    assert main(args[:-2] + ["--set", "datasets.capped.settings.n_facts=5"]) == 2
    assert "holds a run of a different config" in capsys.readouterr().err


def test_bad_override_on_the_command_line_exits_2_and_writes_nothing(cfg_path, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(cfg_path), "--out", str(out), "--set", "conditions.finetune.settings.lr=-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genmodes: error: ") and "'lr'" in err[0]
    assert not out.exists()
