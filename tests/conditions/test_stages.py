"""Conditions composed from a model stage and a context stage (issue 10 item 2): every model stage with
every context stage through the runner on tiny sizes, one checkpoint per model-stage settings, the
config's composed and short forms, and the per-question details a stage adds to the results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from genmodes import conditions
from genmodes.conditions import CONTEXT_STAGES, MODEL_STAGES, Condition, resolve
from genmodes.conditions.base import Built, CellContext, Prepared
from genmodes.errors import ConfigError
from genmodes.experiments.config import dump_config, parse_config
from genmodes.experiments.runner import Runner

FT = {"steps": 2, "batch_size": 2, "seq_len": 64}
# each context stage as the composed form writes it; retrieval once per memory
CONTEXTS = {"none": {"kind": "none"}, "in_context": {"kind": "in_context"},
            "oracle": {"kind": "retrieval", "method": "oracle", "k": 2},
            "bm25": {"kind": "retrieval", "method": "bm25", "k": 2},
            "dense": {"kind": "retrieval", "method": "dense", "k": 2}}
PRETRAINED_MODELS = {"pretrained": {"kind": "pretrained"}, "finetune": {"kind": "finetune", **FT},
                     # source oracle: the true reversals, nothing generated
                     "augmented_finetune": {"kind": "augmented_finetune", "source": "oracle", **FT}}
SCRATCH = {"kind": "scratch", "n_layers": 1, "d_model": 32, "n_heads": 2, "seq_len": 64, "batch_size": 4,
           "steps": 3, "eval_every": 1000, "eval_questions": 4, "checkpoint_every": 1000}


def _run(tmp_path: Path, name: str, model: str, dataset: dict, models: dict) -> tuple[list, list, Path]:
    conds = [{"name": f"{m}+{c}", "model": ms, "context": cs} for m, ms in models.items() for c, cs in CONTEXTS.items()]
    raw = {"name": name, "model": model, "datasets": [dataset], "conditions": conds}
    out = tmp_path / name
    Runner(parse_config(raw), out, progress=False).run()
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    cells = [json.loads(x) for x in (out / "cells.jsonl").read_text().splitlines()]
    return rows, cells, out


def _check_every_cell(rows: list, cells: list, models: dict) -> None:
    assert len(cells) == len(models) * len(CONTEXTS)
    for c in cells:
        m, ctx = c["condition"].split("+")
        assert (c["model_stage"], c["context_stage"]) == (models[m]["kind"], CONTEXTS[ctx]["kind"])
        mine = [r for r in rows if r["cell"] == c["cell"]]
        assert mine and len(mine) == c["n_questions"]
        assert all(math.isfinite(s["logprob"]) for r in mine for s in r["scores"]), c["cell"]
        assert all((r["model_stage"], r["context_stage"]) == (c["model_stage"], c["context_stage"]) for r in mine)
        # what the context stage did shows in what was scored
        context = c["stages"]["context"]
        if ctx == "in_context":
            assert context["documents_in_context"] > 0 and context["prefix_tokens"] > 0
        elif ctx != "none":
            assert context["method"] == ctx and all(r["retrieved"] for r in mine)
            assert all(len(r["retrieved"]) >= 2 for r in mine)
        if ctx == "oracle":
            assert context["recall_at_k"] == 1.0


def _trainings(cells: list, kind: str) -> list:
    """The cells of model stage ``kind`` that trained (the others reused its artifact)."""
    return [c for c in cells if c["model_stage"] == kind and c["stages"]["model"].get("reused") is False]


def test_every_pretrained_model_stage_with_every_context_stage(tmp_path):
    rows, cells, out = _run(tmp_path, "grid", "tiny-random",
                            {"name": "sr", "family": "simple_reversals", "settings": {"n_facts": 3}}, PRETRAINED_MODELS)
    _check_every_cell(rows, cells, PRETRAINED_MODELS)
    # one training per model-stage settings, shared by the five conditions that use it
    for kind, folder in (("finetune", "finetune"), ("augmented_finetune", "augmented_finetune")):
        assert len(_trainings(cells, kind)) == 1
        assert len([p for p in (out / "shared" / folder).iterdir() if p.is_dir()]) == 1
        assert len({c["stages"]["model"]["checkpoint"] for c in cells if c["model_stage"] == kind}) == 1
    scores = {c: [r["scores"] for r in rows if r["condition"] == c] for c in ("pretrained+none", "finetune+none")}
    assert scores["pretrained+none"] != scores["finetune+none"]  # the context stage got the trained model
    assert {c["condition_kind"] for c in cells} >= {"pretrained", "finetune", "in_context", "retrieval",
                                                     "finetune+retrieval", "augmented_finetune+in_context"}


def test_scratch_model_stage_with_every_context_stage(tmp_path):
    rel = {"name": "rel", "family": "relations",
           "settings": dict(balanced_distractors=False, n_relations=6, n_entities=12, n_episodes=4, n_filler=0, n_trained_questions=4,
                            heldout_fraction=0.25)}
    models = {"scratch": SCRATCH}
    rows, cells, out = _run(tmp_path, "scratch", "scratch", rel, models)
    _check_every_cell(rows, cells, models)
    assert len(_trainings(cells, "scratch")) == 1
    assert len([p for p in (out / "shared" / "scratch").iterdir() if p.is_dir()]) == 1


def test_composed_form_equals_the_short_form_and_round_trips():
    composed = resolve(model={"kind": "finetune", **FT}, context={"kind": "retrieval", "method": "bm25", "k": 3})
    short = resolve("retrieval", {"method": "bm25", "k": 3, "finetune": FT})
    assert composed.model_settings == short.model_settings and composed.context_settings == short.context_settings
    assert (composed.kind, short.kind) == ("finetune+retrieval", "retrieval")
    # either stage may be left out
    assert (resolve(context={"kind": "in_context"}).model, resolve(model={"kind": "finetune"}).context) == \
        ("pretrained", "none")
    # from_scratch's oracle is retrieval's oracle in P2's plain format
    fs = resolve("from_scratch", {"context": "oracle", "k": 3, "distractors": "options"})
    assert (fs.model, fs.context) == ("scratch", "retrieval")
    cs = fs.context_settings
    assert (cs.method, cs.k, cs.distractors, cs.instruction, cs.separator, cs.distractor_kinds) == \
        ("oracle", 3, "options", "", "\n", "support")
    raw = {"name": "t", "model": "tiny-random", "datasets": [{"family": "simple_reversals"}],
           "conditions": [{"name": "ft+rag", "model": {"kind": "finetune", "epochs": 2},
                           "context": {"kind": "retrieval", "method": "bm25"}},
                          {"name": "finetune", "settings": {"epochs": 2}},
                          {"name": "ft+icl", "model": "finetune", "context": "in_context"}]}
    cfg = parse_config(raw)
    again = parse_config(yaml.safe_load(dump_config(cfg)))
    assert dump_config(again) == dump_config(cfg)
    assert [c.kind for c in again.conditions] == ["finetune+retrieval", "finetune", "finetune+in_context"]
    assert again.conditions[0].stages.model_settings == again.conditions[1].stages.model_settings


@pytest.mark.parametrize("cond, msg", [
    ({"name": "x", "context": {"kind": "retrieval", "method": "bm25", "k": 0}},
     r"conditions\[0\]\.context\.k: .*at least 1"),
    ({"name": "x", "model": {"kind": "finetune", "lr": -1}}, r"conditions\[0\]\.model\.lr: "),
    ({"name": "x", "model": {"kind": "finetune", "epoch": 1}}, r"conditions\[0\]\.model\.epoch: no such setting; did you mean 'epochs'\?"),
    ({"name": "x", "model": {"kind": "distill"}}, r"conditions\[0\]\.model\.kind: unknown model stage 'distill'"),
    ({"name": "x", "context": {"k": 2}}, r"conditions\[0\]\.context\.kind: missing"),
    ({"name": "x", "context": {"kind": "retrieval", "method": "bm25", "max_support": 2}},
     r"conditions\[0\]\.context: 'max_support' is an oracle setting"),
    ({"name": "x", "kind": "finetune", "model": {"kind": "finetune"}}, r"conditions\[0\]: give either"),
    ({"name": "x", "context": {"kind": "retrieval", "k": 1e30}}, r"conditions\[0\]\.context\.k"),
])
def test_composed_form_errors_name_the_field(cond, msg):
    raw = {"name": "t", "model": "tiny-random", "datasets": [{"family": "simple_reversals"}], "conditions": [cond]}
    with pytest.raises(ConfigError, match=msg):
        parse_config(raw)


def test_scratch_model_stage_needs_model_scratch(tmp_path):
    raw = {"name": "t", "model": "tiny-random", "datasets": [{"family": "relations"}],
           "conditions": [{"name": "s", "model": {"kind": "scratch"}, "context": {"kind": "in_context"}}]}
    with pytest.raises(ConfigError, match="set the config's model to 'scratch'"):
        Runner(parse_config(raw), tmp_path / "a", progress=False).validate()
    raw = {**raw, "model": "scratch",
           "conditions": raw["conditions"] + [{"name": "r", "context": {"kind": "retrieval"}}]}
    with pytest.raises(ConfigError, match=r"need a pretrained model"):
        Runner(parse_config(raw), tmp_path / "b", progress=False).validate()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_question_details_reach_the_results_rows(tmp_path, monkeypatch):
    """A context stage's per-question extras land in that question's row, under ``details`` (so they
    can never overwrite what the scorer measured)."""
    from genmodes.conditions import no_context

    def apply(ctx: CellContext, built: Built, settings) -> Prepared:
        return Prepared(built.model, built.tokenizer,
                        question_details={q.id: {"thought": f"about {q.id}", "correct": "n/a"}
                                          for q in ctx.dataset.questions[:2]})

    monkeypatch.setattr(no_context, "apply", apply)
    raw = {"name": "t", "model": "tiny-random", "datasets": [{"name": "sr", "family": "simple_reversals",
                                                               "settings": {"n_facts": 2}}],
           "conditions": [{"name": "pretrained"}]}
    out = tmp_path / "run"
    Runner(parse_config(raw), out, progress=False).run()
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r.get("details", {}).get("thought") for r in rows[:3]] == [f"about {rows[0]['question_id']}",
                                                                      f"about {rows[1]['question_id']}", None]
    assert all(isinstance(r["correct"], bool) for r in rows)


def test_cell_context_knows_every_dataset_of_the_study(tmp_path, monkeypatch):
    from genmodes.conditions import pretrained

    seen = {}
    orig = pretrained.build

    def build(ctx, settings):
        seen[ctx.dataset_name] = sorted(ctx.datasets)
        assert ctx.datasets[ctx.dataset_name] is ctx.dataset
        return orig(ctx, settings)

    monkeypatch.setattr(pretrained, "build", build)
    raw = {"name": "t", "model": "tiny-random",
           "datasets": [{"name": "a", "family": "simple_reversals", "settings": {"n_facts": 2}},
                        {"name": "b", "family": "simple_reversals", "seed": 1, "settings": {"n_facts": 2}}],
           "conditions": [{"name": "pretrained"}]}
    Runner(parse_config(raw), tmp_path / "run", progress=False).run()
    assert seen == {"a": ["a", "b"], "b": ["a", "b"]}
    # outside the runner: the one dataset, under its family's name
    from genmodes.data.families import make_dataset

    ds = make_dataset("simple_reversals", 0, {"n_facts": 2})
    ctx = CellContext("tiny-random", ds, 0, tmp_path / "c")
    assert ctx.dataset_name == "simple_reversals" and ctx.datasets == {"simple_reversals": ds}


def test_registries_name_every_stage():
    assert set(MODEL_STAGES) >= {"pretrained", "finetune", "augmented_finetune", "scratch"}
    assert set(CONTEXT_STAGES) >= {"none", "in_context", "retrieval"}
    for kind in MODEL_STAGES:
        assert callable(conditions.model_stage(kind).build)
    for kind in CONTEXT_STAGES:
        assert callable(conditions.context_stage(kind).apply)
    assert isinstance(resolve("baseline", {"method": "bigram"}), Condition)
