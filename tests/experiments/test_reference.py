"""The settings reference: generated from the pydantic models and the registries, kept current in
docs/SETTINGS.md, and the unknown-key errors that name the valid keys."""

import json
import re
import sys
import types
from pathlib import Path

import pytest
from pydantic import Field

from genmodes.cli import main
from genmodes.conditions import CONTEXT_STAGES, MODEL_STAGES
from genmodes.conditions.base import Settings
from genmodes.data.families import FAMILY_MODULES
from genmodes.experiments import reference

ROOT = Path(__file__).resolve().parents[2]


def test_docs_settings_page_is_what_the_generator_writes_now(capsys):
    assert main(["settings", "--markdown"]) == 0
    generated = capsys.readouterr().out
    on_disk = (ROOT / reference.SETTINGS_DOC).read_text(encoding="utf-8")
    assert generated == on_disk, ("docs/SETTINGS.md is out of date: run "
                                  "`genmodes settings --markdown > docs/SETTINGS.md`")


def test_every_registered_stage_family_and_baseline_has_a_section():
    kinds = [s.kind for s in reference.sections()]
    for name in [*MODEL_STAGES, *CONTEXT_STAGES, *FAMILY_MODULES, "baseline", "config"]:
        assert name in kinds, name
    # no issue numbers leak from comments or docstrings into the page
    assert not re.search(r"\bissue \d+", reference.markdown(), re.IGNORECASE)


class _Toy(Settings):
    # how many widgets to make
    widgets: int = Field(default=3, gt=0)
    mode: str = "fast"  # fast or slow
    noted: float | None = Field(default=None, description="from the description")


def test_a_new_registry_entry_appears_with_types_defaults_and_descriptions(monkeypatch):
    mod = types.ModuleType("toy_stage")
    mod.__doc__ = "Model stage ``toy``: a stage made up for this test."
    mod.Settings = _Toy
    monkeypatch.setitem(sys.modules, "toy_stage", mod)
    monkeypatch.setitem(MODEL_STAGES, "toy", "toy_stage")
    (sec,) = reference.select("toy")
    assert sec.title == "Model stage `toy`" and "made up for this test" in sec.intro
    rows = {f.name: f for f in sec.fields}
    assert (rows["widgets"].type, rows["widgets"].default, rows["widgets"].description) == \
        ("int (> 0)", "3", "how many widgets to make")
    assert (rows["mode"].default, rows["mode"].description) == ('"fast"', "fast or slow")
    assert (rows["noted"].type, rows["noted"].description) == ("float | None", "from the description")


def test_settings_command_one_kind_text_and_json(capsys):
    assert main(["settings", "retrieval"]) == 0
    out = capsys.readouterr().out
    assert "Context stage retrieval" in out and "distractor_kinds" in out and "Dataset family" not in out
    assert main(["settings", "finetune", "--json"]) == 0
    (sec,) = json.loads(capsys.readouterr().out)
    steps = next(f for f in sec["fields"] if f["name"] == "steps")
    assert steps["type"] == "int | None (> 0)" and steps["default"] == "null"
    assert main(["settings", "simple_reversals", "--json"]) == 0
    (fam,) = json.loads(capsys.readouterr().out)
    assert {f["name"]: f["default"] for f in fam["fields"]}["n_facts"] == "100"


def test_unknown_settings_kind_is_one_line_with_a_suggestion(capsys):
    assert main(["settings", "retreival"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("genmodes: error: unknown settings kind 'retreival'; did you mean 'retrieval'?")


@pytest.mark.parametrize("config, expected", [
    ({"conditions": [{"name": "finetune", "settings": {"stesp": 2}}]},
     "conditions[0] (finetune): bad setting 'stesp': no such setting; did you mean 'steps'? (valid: method, "),
    ({"conditions": [{"name": "ft", "model": {"kind": "finetune", "epoch": 2}}]},
     "conditions[0].model.epoch: no such setting; did you mean 'epochs'?"),
    ({"conditions": [{"name": "rag", "kind": "retrieval", "settings": {"methd": "bm25"}}]},
     "bad setting 'methd': no such setting; did you mean 'method'?"),
    ({"datasets": [{"family": "simple_reversals", "settings": {"n_fact": 3}}]},
     "simple_reversals: bad setting 'n_fact': no such setting; did you mean 'n_facts'?"),
    ({"datasets": [{"family": "simple_reversals", "setings": {}}]},
     "datasets[0].setings: no such key; did you mean 'settings'? (valid: name, family, path, berglund, seed,"),
    ({"seed": [1]}, "seed: no such key; did you mean 'seeds'?"),
    ({"scoring": {"batch_token": 3}}, "scoring.batch_token: no such key; did you mean 'batch_tokens'? "
                                      "(valid: batch_tokens, chat_template)"),
])
def test_unknown_keys_list_the_valid_ones(tmp_path, capsys, config, expected):
    import yaml

    raw = {"name": "t", "model": "tiny-random", "datasets": [{"family": "simple_reversals"}],
           "conditions": [{"name": "pretrained"}], **config}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "run").exists()


def test_unknown_family_setting_on_the_command_line_suggests(tmp_path, capsys):
    assert main(["data", "make", "simple_reversals", "--out", str(tmp_path / "d"), "--set", "n_fcts=3"]) == 2
    assert "bad setting 'n_fcts': no such setting; did you mean 'n_facts'?" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
