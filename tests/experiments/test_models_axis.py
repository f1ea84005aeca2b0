"""Several model families in one study (issue 13 item 2): the ``models:`` axis, single-model ids kept,
the report side by side, and the in-context budget sweep (clipped to a model's window)."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from genmodes.cli import main
from genmodes.errors import ConfigError
from genmodes.experiments.config import load_config, parse_config

TINY_RC = {"n_people_a": 4, "n_people_d": 0, "n_people_b": 2, "n_paraphrases": 3, "n_test_paraphrases": 2}


@pytest.fixture(scope="module")
def second_model(tmp_path_factory):
    """A second model spec: another tiny random Llama (seed 1) saved as a local folder."""
    from genmodes.models import tiny_random

    model, tok = tiny_random(seed=1)
    d = tmp_path_factory.mktemp("models") / "tiny-b"
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


def write(tmp_path: Path, **over) -> Path:
    cfg = {"name": "t", "model": "tiny-random", "seeds": [0],
           "datasets": [{"name": "rc", "family": "reversal_curse", "settings": TINY_RC}],
           "conditions": [{"name": "pretrained"}, {"name": "in_context"}]}
    cfg.update(over)
    if "models" in over:
        cfg.pop("model")
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_models_make_a_grid_axis(tmp_path, second_model):
    out = tmp_path / "run"
    assert main(["run", str(write(tmp_path, models=["tiny-random", second_model])), "--out", str(out)]) == 0
    cells = sorted(p.name for p in (out / "cells").iterdir())
    assert cells == sorted(f"{m}__rc__{c}__s0" for m in ("tiny-random", "tiny-b") for c in ("pretrained", "in_context"))
    rows = rows_of(out)
    assert {r["model"] for r in rows} == {"tiny-random", second_model}
    records = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    assert {(c["model"], c["condition"]) for c in records} == {(m, c) for m in ("tiny-random", second_model)
                                                               for c in ("pretrained", "in_context")}
    # two different random models: their scores of the same question differ
    a = {r["question_id"]: r["scores"] for r in rows if r["model"] == "tiny-random" and r["condition"] == "pretrained"}
    b = {r["question_id"]: r["scores"] for r in rows if r["model"] == second_model and r["condition"] == "pretrained"}
    assert a.keys() == b.keys() and a != b
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert list(summary[0]) == ["model", "dataset", "split", "condition", "n", "accuracy", "stderr", "chance", "ci_low",
                                  "ci_high", "gate"]
    assert {(s["model"], s["condition"]) for s in summary} == {(m, c) for m in ("tiny-random", second_model)
                                                               for c in ("pretrained", "in_context")}
    for s in summary:  # each model's accuracy is its own rows' accuracy
        mine = [r for r in rows if r["model"] == s["model"] and r["condition"] == s["condition"]
                and r["split"] == s["split"]]
        assert int(s["n"]) == len(mine) and float(s["accuracy"]) == sum(r["correct"] for r in mine) / len(mine)
    # the report: both models side by side, one table column per split and model, a panel figure
    md = (out / "report.md").read_text()
    assert "Models `tiny-random`, " in md
    assert "Cells finished: 4 of 4." in md
    header = next(line for line in md.splitlines() if line.startswith("| condition |"))
    for sp in ("forward", "reversal"):
        assert f"{sp} · tiny-random" in header and f"{sp} · {second_model}" in header
    assert (out / "figures" / "accuracy_rc.png").is_file()
    assert "accuracy on rc, models side by side" in md


def test_one_model_keeps_ids_config_and_a_readable_summary(tmp_path):
    out = tmp_path / "run"
    assert main(["run", str(write(tmp_path)), "--out", str(out), "--no-report"]) == 0
    assert sorted(p.name for p in (out / "cells").iterdir()) == ["rc__in_context__s0", "rc__pretrained__s0"]
    dumped = yaml.safe_load((out / "config.yaml").read_text())
    # the resolved config is what it was before `models` existed: `model`, no `models`, no per-condition datasets
    assert dumped["model"] == "tiny-random" and "models" not in dumped
    assert all("datasets" not in c for c in dumped["conditions"])
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert {s["model"] for s in summary} == {"tiny-random"} and len(summary) == 4
    # no model given at all: the default model, still today's ids
    cfg = parse_config({"name": "x", "datasets": [{"family": "reversal_curse"}], "conditions": [{"name": "pretrained"}]})
    from genmodes.experiments.grid import grid

    assert cfg.model_specs == ["smollm2-135m"] and [c.id for c in grid(cfg)] == ["reversal_curse__pretrained__s0"]


@pytest.mark.parametrize("over,msg", [
    ({"model": "tiny-random", "models": ["tiny-random"]}, "not both"),
    ({"models": ["tiny-random", "tiny-random"]}, "duplicate model"),
    ({"models": []}, "models"),
    ({"models": ["a/x.gguf", "b/x.gguf"]}, "share the folder name 'x'"),
    ({"conditions": [{"name": "pretrained", "datasets": ["nope"]}]}, "no dataset named 'nope'"),
])
def test_bad_models_config_one_line(tmp_path, over, msg):
    cfg = {"name": "t", "seeds": [0], "datasets": [{"name": "rc", "family": "reversal_curse", "settings": TINY_RC}],
           "conditions": [{"name": "pretrained"}], **over}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_unresolvable_model_in_models_fails_before_anything_is_written(tmp_path, capsys):
    p = write(tmp_path, models=["tiny-random", str(tmp_path / "missing.gguf")])
    assert main(["run", str(p), "--out", str(tmp_path / "run"), "--dry-run"]) == 2
    assert "GGUF file not found" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_model_override_replaces_the_models_axis(tmp_path, second_model):
    from genmodes.experiments.overrides import load_with_overrides

    cfg = load_with_overrides(write(tmp_path, models=["tiny-random", second_model]), model="tiny-random")
    assert cfg.model_specs == ["tiny-random"] and not cfg.several_models


def test_condition_datasets_limit_the_grid(tmp_path, second_model):
    p = write(tmp_path, models=["tiny-random", second_model],
              datasets=[{"name": "rc", "family": "reversal_curse", "settings": TINY_RC},
                        {"name": "rc2", "family": "reversal_curse", "seed": 1, "settings": TINY_RC}],
              conditions=[{"name": "pretrained", "datasets": ["rc"]}, {"name": "in_context", "datasets": ["rc2"]}])
    from genmodes.experiments.grid import grid

    ids = [c.id for c in grid(load_config(p))]
    assert ids == ["tiny-random__rc__pretrained__s0", "tiny-b__rc__pretrained__s0",
                   "tiny-random__rc2__in_context__s0", "tiny-b__rc2__in_context__s0"]
    # the report expects as many cells as the grid has (not datasets x conditions x models)
    from genmodes.report.run import Run

    assert Run(path=tmp_path, config=load_config(p), manifest=None, results=[], cells=[]).expected_cells == 4


def test_budget_sweep_clips_above_the_window_and_draws_the_curve(tmp_path, second_model, capsys):
    # tiny-random's window is 8192 positions: 100000 is clipped to it, with one line and a mark in info
    budgets = [64, 256, 100000]
    p = write(tmp_path, models=["tiny-random", second_model],
              conditions=[{"name": f"ic_{b}", "kind": "in_context", "settings": {"budget_tokens": b}} for b in budgets])
    out = tmp_path / "run"
    assert main(["run", str(p), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "budget_tokens 100000 does not fit tiny-random's 8192-token window" in err
    records = {(c["model"], c["condition"]): c for c in
               (json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines())}
    big = records[("tiny-random", "ic_100000")]["stages"]["context"]
    assert big["budget_clipped"] is True and big["budget_tokens_requested"] == 100000
    assert big["budget_tokens"] == 8192 - big["longest_question_choice_tokens"]
    small = records[("tiny-random", "ic_64")]["stages"]["context"]
    assert small["budget_clipped"] is False and small["prefix_tokens"] <= 64
    rows = rows_of(out)
    assert all(r["context_tokens"] <= 8192 for r in rows)
    md = (out / "report.md").read_text()
    assert "## In-context accuracy against context length" in md
    assert (out / "figures" / "context_rc.png").is_file()
    section = md.split("## In-context accuracy against context length")[1].split("\n## ")[0]
    assert "(clipped)" in section and section.count("| tiny-random |") == 3
    # the x of each point is the mean context actually scored: it grows with the budget per model
    from genmodes.conditions.in_context import length_points
    from genmodes.report.run import load_run
    from genmodes.report.sections import stage_view

    pts = length_points(stage_view(load_run(out), "context", "in_context"))["rc"]
    for m in ("tiny-random", second_model):
        xs = [pt["tokens"] for pt in pts if pt["model"] == m]
        mine = [r["context_tokens"] for r in rows if r["model"] == m and r["condition"] == "ic_64"]
        assert len(xs) == 3 and xs == sorted(xs) and xs[0] == sum(mine) / len(mine)


def test_support_per_question_keeps_every_question_answerable(tmp_path):
    from genmodes.conditions import in_context, pretrained
    from genmodes.conditions.base import CellContext
    from genmodes.conditions.in_context import Settings
    from genmodes.data.families import make_dataset

    def prepare(ctx, settings):  # the pretrained model stage, then the in_context context stage
        return in_context.apply(ctx, pretrained.build(ctx, pretrained.Settings()), settings)

    ds = make_dataset("reversal_curse", seed=0, overrides={**TINY_RC, "n_people_a": 12, "n_people_b": 12})
    ctx = CellContext(model_spec="tiny-random", dataset=ds, seed=0, workdir=tmp_path)
    # a budget that holds some documents: at random many questions lose their support ...
    at_random = prepare(ctx, Settings(budget_tokens=1500))
    assert at_random.info.questions_without_support > 0
    # ... with one supporting document per question placed first, none does, in the same budget,
    # and the block holds as many documents (the rest are distractors)
    support = prepare(ctx, Settings(budget_tokens=1500, support_per_question=1))
    assert support.info.questions_without_support == 0 and support.info.prefix_tokens <= 1500
    assert support.info.documents_in_context == at_random.info.documents_in_context
    with pytest.raises(ConfigError, match="supporting documents of the scored questions take"):
        prepare(ctx, Settings(budget_tokens=600, support_per_question=1))
