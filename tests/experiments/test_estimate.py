"""``genmodes run --dry-run`` (issue 13, item 4): calibrated on the configured model, finished cells
marked, unresolvable model or dataset refused in one line."""

import json
import time

import pytest
import yaml

from genmodes.cli import main
from genmodes.experiments.config import load_config
from genmodes.experiments.estimate import CellEstimate, calibrate, estimate, total_line
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


def estimate_then_run(tmp_path, grid_cfg):
    """(the grid's estimate per cell, the path of its config, its run folder, the estimated total and
    the measured seconds of running it)."""
    path = write(tmp_path, grid_cfg)
    cfg = load_config(path)
    out = tmp_path / "run"
    runner = Runner(cfg, out, progress=False)
    runner.validate()
    rows = estimate(runner, calibrate(runner))
    estimated = sum(r.total_s for r in rows)
    t0 = time.perf_counter()
    Runner(cfg, out, progress=False).run()
    return rows, path, out, estimated, time.perf_counter() - t0


def test_estimate_is_the_measured_run_within_a_factor_and_marks_finished_cells(tmp_path, capsys):
    rows, path, out, estimated, actual = estimate_then_run(tmp_path, GRID)
    assert [r.finished for r in rows] == [False] * 4
    # the shared checkpoint is trained once: by the finetune cell, not again by finetune + retrieval
    by = {r.cell: r for r in rows}
    assert by["rc__finetune__s0"].train_s > 0 and by["rc__ft_oracle__s0"].train_s == 0
    assert actual / 10 < estimated < actual * 10, (estimated, actual)

    assert main(["run", path, "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "calibrated on cpu" in printed and "to run: 0 of 4 cells" in printed
    for cell in by:
        line = next(line for line in printed.splitlines() if line.strip().startswith(cell))
        assert "finished" in line


def test_a_from_scratch_grid_is_calibrated_on_the_model_its_cells_build(tmp_path):
    arch = {"steps": 150, "batch_size": 8, "eval_every": 50, "d_model": 32, "n_heads": 2, "n_layers": 2}
    rows, _, _, estimated, actual = estimate_then_run(tmp_path, {
        "name": "s", "model": "scratch", "threads": 1,
        "datasets": [{"name": "rel", "family": "relations",
                      "settings": {"balanced_distractors": False, "n_relations": 8, "n_entities": 16, "n_episodes": 8, "n_filler": 0,
                                   "n_trained_questions": 8, "heldout_fraction": 0.125}}],
        "conditions": [{"name": "parametric", "kind": "from_scratch", "settings": {"context": "none", **arch}},
                       {"name": "oracle", "kind": "from_scratch", "settings": {"context": "oracle", "k": 2, **arch}}]})
    assert rows[0].train_s > 0 and rows[1].train_s == 0  # one model, trained by the first cell
    assert actual / 10 < estimated < actual * 10, (estimated, actual)


def test_a_from_scratch_stopping_rule_is_costed_at_its_most_and_at_its_first_curve_point(tmp_path):
    arch = {"steps": 200, "batch_size": 8, "eval_every": 50, "d_model": 32, "n_heads": 2, "n_layers": 2}
    rel = {"balanced_distractors": False, "n_relations": 8, "n_entities": 16, "n_episodes": 8, "n_filler": 0,
           "n_trained_questions": 8, "heldout_fraction": 0.125}

    def rows_for(extra):
        cfg = load_config(write(tmp_path, {
            "name": "s", "model": "scratch", "threads": 1, "datasets": [{"name": "rel", "family": "relations", "settings": rel}],
            "conditions": [{"name": "parametric", "kind": "from_scratch", "settings": {"context": "none", **arch, **extra}}]}))
        runner = Runner(cfg, tmp_path / "run", progress=False)
        runner.validate()
        return estimate(runner, calibrate(runner))

    fixed, = rows_for({})
    ruled, = rows_for({"until_ready": 0.9})
    assert fixed.stoppable_s == 0 and "at most" not in fixed.note
    # at most every step; at its first curve point a quarter of them (50 of 200 steps, one evaluation)
    assert ruled.stoppable_s > 0 and "at most: 200 steps" in ruled.note
    assert 0.15 * ruled.train_s < ruled.train_s - ruled.stoppable_s < 0.4 * ruled.train_s
    assert "if every stopping rule (1 cell(s), costed at their most)" in total_line([ruled])


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


THINK_FT = {"steps": 2, "batch_size": 4, "seq_len": 64}
THINK_GRID = {"name": "think", "model": "tiny-random", "seeds": [0],
              "datasets": [{"name": "syl_a", "family": "simple_syllogisms", "seed": 0,
                            "settings": {"n_examples": 6, "vocabulary": {"part": 0, "of": 2}}},
                           {"name": "syl_b", "family": "simple_syllogisms", "seed": 1,
                            "settings": {"n_examples": 6, "vocabulary": {"part": 1, "of": 2}}}],
              "conditions": [
                  {"name": "finetune", "model": {"kind": "finetune_all", **THINK_FT}},
                  {"name": "finetune+thinking", "model": {"kind": "finetune_all", **THINK_FT},
                   "context": {"kind": "thinking", "max_thought_tokens": 4}},
                  {"name": "rl+thinking", "context": {"kind": "thinking", "max_thought_tokens": 4},
                   "model": {"kind": "rl", "rl_dataset": ["syl_a"], "steps": 2, "group_size": 2,
                             "prompts_per_step": 2, "max_thought_tokens": 4, "finetune": THINK_FT}}]}


@pytest.mark.slow
def test_thinking_and_rl_stages_are_estimated_once_per_study_and_near_the_run(tmp_path):
    rows, _, _, estimated, actual = estimate_then_run(tmp_path, THINK_GRID)
    by = {r.cell: r for r in rows}
    # the study-wide fine-tune is trained once (by the first cell), the RL model once (by the first
    # rl cell, its fine-tuned start shared); every other cell only scores
    assert by["syl_a__finetune__s0"].train_s > 0
    assert by["syl_a__rl+thinking__s0"].train_s > 0 and "GRPO" in by["syl_a__rl+thinking__s0"].note
    assert all(by[c].train_s == 0 for c in by if c not in ("syl_a__finetune__s0", "syl_a__rl+thinking__s0"))
    # a thought per question costs test time: thinking cells above the same model's plain cell
    for ds in ("syl_a", "syl_b"):
        assert by[f"{ds}__finetune+thinking__s0"].test_s > by[f"{ds}__finetune__s0"].test_s
    assert actual / 10 < estimated < actual * 10, (estimated, actual)


SEMANTIC = {"subtrees": ["mammal", "vehicle"], "n_documents": 135, "n_qa_items": 0, "n_holdout_categories": 6,
            "holdout_mentions": 1, "questions_per_split": 6, "support_docs_per_premise": 1}
LONG_PREFIX = {"name": "long", "model": "tiny-random", "seeds": [0], "threads": 1,
               "datasets": [{"name": "sem", "family": "semantic_structure", "settings": SEMANTIC}],
               "conditions": [{"name": "pretrained"}, {"name": "in_context"},
                              {"name": "oracle", "kind": "retrieval", "settings": {"method": "oracle", "k": 1}}]}


def test_scoring_is_estimated_as_the_scorer_runs_it_a_long_shared_prefix_included(tmp_path):
    """The in-context cell's documents fill tiny-random's 8,192-token window: every question's tokens
    attend to the whole block, so its scoring costs far more per question than the 512-token prefix
    a linear extrapolation would start from. Each scoring cell's estimate is near its measured
    scoring time."""
    rows, _, out, _, _ = estimate_then_run(tmp_path, LONG_PREFIX)
    cells = {c["condition"]: c for c in map(json.loads, (out / "cells.jsonl").read_text().splitlines())}
    assert cells["in_context"]["stages"]["context"]["prefix_tokens"] > 7000
    by = {r.cell.split("__")[1]: r for r in rows}
    for name in ("in_context", "oracle"):
        measured = cells[name]["timings"]["score_s"]
        assert measured / 2 < by[name].test_s < measured * 2, (name, by[name].test_s, measured)
    # the long prefix dominates: far above scoring the questions alone, as measured
    assert by["in_context"].test_s > 3 * by["pretrained"].test_s


def test_training_to_the_gate_is_estimated_at_max_epochs_with_its_recall_checks(tmp_path):
    """The stopping rule's cost is at most max_epochs of training plus one recall scoring per epoch."""
    ft = {"lr": 1.0e-3, "batch_size": 4, "seq_len": 64, "until_recall": 0.9}
    cfg = {**GRID, "conditions": [{"name": "few", "kind": "finetune", "settings": {**ft, "max_epochs": 2}},
                                  {"name": "many", "kind": "finetune", "settings": {**ft, "max_epochs": 8}}]}
    runner = Runner(load_config(write(tmp_path, cfg)), tmp_path / "run", progress=False)
    runner.validate()
    by = {r.cell: r for r in estimate(runner, calibrate(runner))}
    few, many = by["rc__few__s0"], by["rc__many__s0"]
    assert "at most" in few.note and "stops once recall reaches 0.9" in many.note
    assert many.train_s > few.train_s * 1.5
    # stopped at its first check, both are one epoch and one recall check
    assert 0 < few.stoppable_s < many.stoppable_s < many.train_s
    assert few.first_check_s == pytest.approx(many.first_check_s, rel=0.2)


def test_the_total_gives_the_stopping_rules_at_most_and_at_their_first_check():
    rows = [CellEstimate("a", 10, False, train_s=0.0, test_s=60.0),
            CellEstimate("b", 10, False, train_s=3000.0, test_s=60.0, note="at most: 8 epochs", stoppable_s=2400.0),
            CellEstimate("c", 10, True, train_s=9000.0, test_s=60.0, stoppable_s=8000.0),  # finished: not counted
            CellEstimate("d", 10, False, train_s=None, test_s=None, note="not calibrated")]
    line = total_line(rows)
    assert "to run: 3 of 4 cells; estimated total ~52 min one after another at most" in line
    assert "~12 min if every stopping rule (1 cell(s), costed at their most) stops at its first check" in line
    assert "longest cell ~51 min at most" in line and line.endswith("1 cell(s) not estimated")
    plain = total_line([rows[0]])
    assert "at most" not in plain and "stopping rule" not in plain


EI_GRID = {**THINK_GRID, "conditions": [
    {"name": "finetune", "model": {"kind": "finetune_all", **THINK_FT}},
    {"name": "rl+thinking", "context": {"kind": "thinking", "max_thought_tokens": 8},
     "model": {"kind": "rl", "method": "expert_iteration", "rl_dataset": ["syl_a"], "max_thought_tokens": 8,
               "temperature": 1.0, "finetune": THINK_FT,
               "expert_iteration": {"rounds": 2, "samples": 2, "generation_batch": 4, "batch_size": 2,
                                    "seq_len": 32, "epochs": 1}}}]}


def test_expert_iteration_is_estimated_from_a_timed_round_near_the_run(tmp_path):
    """The rl cell's training (its fine-tuned start built by the finetune cell) is expert iteration
    alone: sampling and scoring timed at the run's shapes, the fine-tune on the kept thoughts; the
    estimate is near what the run's rounds took, and says what it assumed."""
    rows, _, out, _, _ = estimate_then_run(tmp_path, EI_GRID)
    by = {r.cell: r for r in rows}
    rl = by["syl_a__rl+thinking__s0"]
    assert "expert iteration" in rl.note and "2 x (" in rl.note and "sampled to 8 tokens" in rl.note
    assert "scored at ~" in rl.note and "kept (chance)" in rl.note
    assert by["syl_b__rl+thinking__s0"].train_s == 0  # the RL model is built once
    record = json.loads((out / "cells" / "syl_a__rl+thinking__s0" / "cell.json").read_text())
    measured = record["stages"]["model"]["expert_iteration"]["train_seconds"]
    assert measured / 3 < rl.train_s < measured * 3 + 1.0, (rl.train_s, measured)


SS = {"subtrees": ["canine"], "n_documents": 1, "n_qa_items": 0, "holdout_mentions": 1, "n_holdout_categories": 2,
      "questions_per_split": 10, "probe_questions_per_split": 0}
DRILLED = {"kind": "finetune_all", **THINK_FT, "recall_drills": "answer"}
THOUGHT_MODES = {"name": "modes", "model": "tiny-random", "seeds": [0],
                 "datasets": [{"name": "sem", "family": "semantic_structure", "splits": ["rephrase", "syllogism"],
                               "settings": SS}],
                 "conditions": [
                     {"name": "think", "model": DRILLED, "context": {"kind": "thinking", "max_thought_tokens": 6,
                                                                     "batch_size": 3, "recall_thoughts": False}},
                     {"name": "shuffled", "model": DRILLED, "context": {"kind": "thinking", "max_thought_tokens": 6,
                                                                         "batch_size": 3, "recall_thoughts": False,
                                                                         "thought": "shuffled"}},
                     {"name": "empty", "model": DRILLED, "context": {"kind": "thinking", "thought": "empty"}},
                     {"name": "oracle", "model": DRILLED, "context": {"kind": "thinking", "thought": "oracle"}},
                     {"name": "verify", "model": DRILLED, "context": {"kind": "thinking", "thought": "verify",
                                                                      "max_thought_tokens": 5, "batch_size": 4}},
                     {"name": "long", "model": DRILLED, "context": {"kind": "thinking", "max_thought_tokens": 64,
                                                                    "batch_size": 3, "recall_thoughts": False}}]}


def thinking_costs(tmp_path, cfg, scored=None):
    """Per condition: the thinking stage's estimate of its cell (its generation in test_s, its scoring
    in score_s), the generation batches it asked to have timed, and the dataset. ``scored`` gets, per
    condition, the characters of every context (prefix included) its scoring was costed on."""
    from genmodes.conditions import thinking
    from genmodes.experiments.estimate import CellCost, Estimator
    from genmodes.experiments.grid import grid

    runner = Runner(load_config(write(tmp_path, cfg)), tmp_path / "run", progress=False)
    runner.validate()
    est = Estimator(runner, calibrate(runner))
    out = {}
    for cell in grid(runner.study):
        cost = CellCost(est, cell)
        timed = []
        real = cost.generation_batch
        cost.generation_batch = lambda prompts, *a, **kw: timed.append((list(prompts), *a)) or real(prompts, *a, **kw)
        if scored is not None:
            real_scoring, name = cost.scoring, cell.condition.name

            def scoring(contexts=None, prefix="", questions=None, real_scoring=real_scoring, name=name):
                qs = list(cost.dataset.questions if questions is None else questions)
                ctxs = [q.context for q in qs] if contexts is None else list(contexts)
                scored[name] = sum(len(prefix) + len(c) for c in ctxs)
                return real_scoring(contexts, prefix=prefix, questions=questions)
            cost.scoring = scoring
        st = cell.condition.stages
        out[cell.condition.name] = (thinking.estimate(st.context_settings, cost), timed)
    return out, runner.dataset(grid(runner.study)[0].dataset)


def test_thoughts_are_costed_for_what_each_mode_generates(tmp_path):
    """A thought the model writes is a batch of its prompts timed at the stage's batch size and budget
    per batch of thoughts (verify: a row per option); a shuffled cell reuses the generating cell's
    thoughts; an empty or oracle thought generates nothing. Scoring counts the thought's tokens."""
    import math

    from genmodes.conditions.thinking import thinks_on

    scored = {}
    costs, ds = thinking_costs(tmp_path, THOUGHT_MODES, scored)
    think = thinks_on(ds, load_config(write(tmp_path, THOUGHT_MODES)).condition("think").stages.context_settings)
    assert 0 < len(think) < len(ds.questions)  # the recall split is scored after an empty thought
    cost, timed = costs["think"]
    assert len(timed) == 1
    prompts, batch, tokens, temperature = timed[0][:4]
    assert len(prompts) == len(think) and all(p.endswith("Recall what you know about this:") for p in prompts)
    assert (batch, tokens, temperature) == (3, 6, 0.0)
    per_batch = cost.test_s / math.ceil(len(think) / 3)
    assert per_batch > 0
    verify, verify_timed = costs["verify"]
    rows = sum(len(q.choices) for q in ds.questions)  # recall_thoughts: every question thinks
    assert len(verify_timed[0][0]) == rows and verify_timed[0][0][0].startswith("Recall what you know about ")
    assert verify_timed[0][1:3] == (4, 5)
    for name in ("shuffled", "empty", "oracle"):
        assert costs[name][0].test_s == 0 and not costs[name][1], name
    assert "generated by an earlier cell" in costs["shuffled"][0].note
    # scoring: the same questions after the same prompt, longer with a thought in the slot (what is
    # costed is asserted, not its seconds: each cell's scoring is timed under the load of its moment)
    assert scored["empty"] < scored["think"] and scored["empty"] < scored["oracle"]
    assert all(costs[name][0].score_s > 0 for name in ("empty", "think", "oracle"))
    # the budget is what a batch decodes: 64 tokens cost more than 6, on as many batches (each timed
    # on its own under the machine's load of the moment, so only the order is asserted)
    assert costs["long"][1][0][2] == 64 and costs["long"][0].test_s > cost.test_s


def test_a_warm_started_thought_is_expected_at_the_drills_length(tmp_path):
    """A model given the recall drills writes thoughts of their form: the dry run takes a thought to be
    as long as the dataset's drill recollections (capped at the budget); without a warm start, the
    budget."""
    from genmodes.data.families import make_dataset
    from genmodes.models import load_model
    from genmodes.training.thoughts import (ANSWER_CUE, THOUGHT_LEAD, expected_thought_tokens, recall_drills,
                                            thought_tokens)

    ds = make_dataset("semantic_structure", 0, SS)
    _, tok = load_model("tiny-random")
    lengths = [thought_tokens(tok, d.text.split(":", 1)[1]) for d in recall_drills(ds)]
    assert lengths and max(lengths) < 200
    assert expected_thought_tokens(ds, tok, 200, warm_start=True) == pytest.approx(sum(lengths) / len(lengths))
    assert expected_thought_tokens(ds, tok, 200, warm_start=False) == 200
    assert expected_thought_tokens(ds, tok, 2, warm_start=True) == 2
    # two-topic drills: the thought goes on to a second subject's facts, so it is expected longer
    two = expected_thought_tokens(ds, tok, 10 ** 4, warm_start="two_topics")
    assert two > expected_thought_tokens(ds, tok, 10 ** 4, warm_start="answer") * 1.5
    # chain drills: the thought goes on to the linked subjects' facts; measured on the chain thoughts
    chain = [thought_tokens(tok, d.text.split(THOUGHT_LEAD, 1)[1].split(ANSWER_CUE)[0])
             for d in recall_drills(ds, form="chain")]
    by_topic = {d.meta["topic"]: n for d, n in zip(recall_drills(ds, form="chain"), chain)}
    assert expected_thought_tokens(ds, tok, 10 ** 4, warm_start="chain") == pytest.approx(
        sum(by_topic.values()) / len(by_topic))


def test_a_training_step_is_the_marginal_cost_of_several_steps(monkeypatch):
    """A step is timed as (1 + k steps) - (1 step), over k, each on a fresh model: set-up is not
    counted, and one noisy step is a k-th of the figure; a difference below zero (a loaded machine)
    falls back to the longer run per step."""
    from types import SimpleNamespace

    import genmodes.experiments.estimate as est
    import genmodes.models as models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: (object(), object()))
    runner = SimpleNamespace(study=SimpleNamespace(model_specs=["tiny-random"]), device="cpu", model_cache=None)
    ran: list[int] = []

    def clock(setup, step, noise=(0.0, 0.0)):
        def timed(fn, device=None):
            fn()
            return setup + step * ran[-1] + noise[len(ran) - 1]
        return timed

    monkeypatch.setattr(est, "_timed", clock(6.0, 4.0))
    assert est._marginal_step(runner, lambda m, t, n: ran.append(n), more=4) == pytest.approx(4.0)
    assert ran == [1, 5]
    ran.clear()
    monkeypatch.setattr(est, "_timed", clock(6.0, 4.0, noise=(4.0, 0.0)))  # one step's worth of noise
    assert est._marginal_step(runner, lambda m, t, n: ran.append(n), more=4) == pytest.approx(3.0)
    ran.clear()
    monkeypatch.setattr(est, "_timed", clock(6.0, 4.0, noise=(30.0, 0.0)))
    assert est._marginal_step(runner, lambda m, t, n: ran.append(n), more=4) == pytest.approx(26.0 / 5)
    assert est.FINETUNE_TIMED_STEPS > 1
