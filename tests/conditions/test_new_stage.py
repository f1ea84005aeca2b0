"""Adding a stage is one file: this module declares a context stage (a fixed sentence before every
question), registers it, and a tiny-random study with it runs, dry-runs, exports to lm-eval and
reports, with no change to genmodes itself. README's "Extending" section shows the stage part."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from pydantic import Field

from genmodes.conditions import CONTEXT_STAGES, register_stage
from genmodes.conditions.base import Built, CellContext, ContextStageInfo, Prepared, Settings as StageSettings
from genmodes.conditions.base import StageCost

# ------------------------------------------------------------------------------------------ the stage


class Settings(StageSettings):
    sentence: str = Field("The people below are made up.", min_length=1)


class Info(ContextStageInfo):
    sentence_tokens: int | None = None


def apply(ctx: CellContext, built: Built, settings: Settings) -> Prepared:
    n = len(built.tokenizer(settings.sentence, add_special_tokens=False).input_ids)
    return Prepared(built.model, built.tokenizer, question_context=lambda q: f"{settings.sentence} {q.context}",
                    info=Info(sentence_tokens=n))


def estimate(settings: Settings, cost: Any) -> StageCost:  # the sentence, scored before every choice
    n = len(cost.tokenizer(settings.sentence, add_special_tokens=False).input_ids)
    return StageCost(test_s=sum(len(q.choices) for q in cost.dataset.questions) * n * cost.score_rate)


def report_sections(view: Any) -> list[tuple]:
    rows = [view.label(cell) + [str(info.sentence_tokens)] for cell, info in view.cells]
    return [("h", 2, "Prepended sentence"), ("table", ["dataset", "condition", "seed", "sentence tokens"], rows)]


# register_stage("context", "prepend", "my_package.prepend") in a package; here, this module itself

# ------------------------------------------------------------------------------------------ the proof

STUDY = {"name": "new-stage", "model": "tiny-random", "seeds": [0],
         "datasets": [{"name": "sr", "family": "simple_reversals", "settings": {"n_facts": 3}, "max_per_split": 3}],
         "conditions": [{"name": "pretrained"},
                        {"name": "prepend", "context": {"kind": "prepend"}},
                        {"name": "finetune+prepend", "model": {"kind": "finetune", "steps": 2, "batch_size": 2,
                                                               "seq_len": 64},
                         "context": {"kind": "prepend", "sentence": "Read carefully."}}]}


@pytest.fixture
def registered():
    register_stage("context", "prepend", sys.modules[__name__])
    yield
    del CONTEXT_STAGES["prepend"]


def test_a_stage_from_a_test_module_runs_dry_runs_exports_and_reports(registered, tmp_path, capsys):
    from genmodes.cli import main
    from genmodes.experiments.config import load_config
    from genmodes.experiments.estimate import calibrate, estimate as estimate_cells
    from genmodes.experiments.export import to_lm_eval_condition
    from genmodes.experiments.runner import Runner
    from genmodes.report import build_report

    config = _write(tmp_path, STUDY)
    study = load_config(config)
    out = tmp_path / "run"
    # dry run: the stage's own estimate adds its sentence's tokens to the scoring
    runner = Runner(study, out, progress=False)
    runner.validate()
    est = {e.cell.split("__")[1]: e for e in estimate_cells(runner, calibrate(runner))}
    assert est["prepend"].test_s > est["pretrained"].test_s > 0 and est["prepend"].train_s == 0
    assert est["finetune+prepend"].train_s > 0
    # run
    Runner(study, out, progress=False, log=lambda m: None).run()
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    tokens = {c: [r["context_tokens"] for r in rows if r["condition"] == c] for c in ("pretrained", "prepend")}
    assert all(a > b for a, b in zip(tokens["prepend"], tokens["pretrained"]))
    cells = {c["condition"]: c for c in map(json.loads, (out / "cells.jsonl").read_text().splitlines())}
    assert cells["prepend"]["context_stage"] == "prepend" and cells["prepend"]["stages"]["context"]["sentence_tokens"] > 0
    # export: lm-eval scores the sentence before each question, on the run's fine-tuned checkpoint
    tasks, model_args, _batch = to_lm_eval_condition(out, tmp_path / "lm", "finetune+prepend")
    data = [json.loads(x) for f in sorted((tmp_path / "lm" / "data").glob("*.jsonl")) for x in f.read_text().splitlines()]
    assert data and all(d["context"].startswith("Read carefully. ") for d in data)
    assert str(out / "shared" / "finetune") in model_args
    # report: the stage's own section, from the run folder
    md = build_report(out)[0].read_text()
    section = md.split("## Prepended sentence\n", 1)[1].split("\n## ", 1)[0]
    assert "| sr | prepend | 0 |" in section and "| sr | finetune+prepend | 0 |" in section
    # the CLI's dry run too
    assert main(["run", config, "--out", str(out), "--dry-run"]) == 0
    assert "to run: 0 of 3 cells" in capsys.readouterr().out


def _write(tmp_path, cfg) -> str:
    import yaml

    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def test_an_unregistered_stage_is_one_line_naming_the_known_ones():
    from genmodes.errors import ConfigError
    from genmodes.experiments.config import parse_config

    with pytest.raises(ConfigError, match=r"conditions\[1\]\.context\.kind: unknown context stage 'prepend'"):
        parse_config(STUDY)
