"""Thinking and RL (P3): the reward agrees with the scorer, GRPO trains every parameter and
resumes from its checkpoint, no RL prompt leaks an evaluated or transfer question or entity, and the
implicit-retrieval audit reads the family's statements."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

from genmodes.conditions import rl
from genmodes.conditions.finetune import Settings as FT
from genmodes.data.families import make_dataset
from genmodes.data.types import Fact
from genmodes.models import load_model
from genmodes.scoring import chosen, naive_score
from genmodes.training import grpo
from genmodes.training.thoughts import (answer_context, audit_thought, choice_probabilities, reward,
                                        think_prompt)


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random", device="cpu")


def _study():
    return {"syl_a": make_dataset("simple_syllogisms", seed=0, overrides={"n_examples": 12}),
            "syl_b": make_dataset("simple_syllogisms", seed=1, overrides={"n_examples": 12}),
            "rev_a": make_dataset("reversal_curse", seed=0, overrides={
                "n_people_a": 8, "n_people_d": 0, "n_people_b": 0, "n_paraphrases": 2, "n_test_paraphrases": 2}),
            "rev_b": make_dataset("reversal_curse", seed=1, overrides={
                "n_people_a": 8, "n_people_d": 0, "n_people_b": 0, "n_paraphrases": 2, "n_test_paraphrases": 2})}


def test_reward_is_one_exactly_when_the_scorer_picks_the_answer(tiny):
    model, tok = tiny
    q = make_dataset("simple_syllogisms", seed=0, overrides={"n_examples": 2}).questions[0]
    for thought in ["", "All glon are yomp.", "I do not know anything about this"]:
        # an independent path: the reference scorer, one full forward per choice
        ref = naive_score(model, tok, answer_context(q, thought), q.choices)
        pick = chosen(ref)
        for answer in range(len(q.choices)):
            qa = type(q)(**{**q.__dict__, "answer": answer})
            assert reward(model, tok, qa, thought) == (1.0 if answer == pick else 0.0)
            dense = reward(model, tok, qa, thought, kind="probability")
            assert dense == pytest.approx(choice_probabilities([s.logprob for s in ref])[answer], rel=1e-4)


def test_thought_is_cut_at_the_stop_rule_and_placed_before_the_cue():
    q = make_dataset("simple_syllogisms", seed=0, overrides={"n_examples": 1}).questions[0]
    ctx = answer_context(q, " No a are b.\nAnswer: cheat")
    assert ctx.startswith(think_prompt(q)) and "No a are b." in ctx and "cheat" not in ctx
    assert ctx.endswith("\nAnswer: " + q.context)


def test_audit_reads_premises_false_facts_and_reversed_statements():
    syl = make_dataset("simple_syllogisms", seed=0, overrides={"n_examples": 3})
    q = syl.questions[0]
    premises_text = " ".join(f"{f.relation.capitalize()} {f.subject} are {f.object}." for f in q.premises
                             if f.relation != "some not")
    if len(premises_text.split(".")) - 1 == len(q.premises):
        assert audit_thought(syl, q, premises_text)["retrieval"] == "stated"
    assert audit_thought(syl, q, "")["retrieval"] == "none"
    assert audit_thought(syl, q, "The weather is nice today.")["retrieval"] == "none"
    a, b = q.premises[0].subject, q.premises[0].object
    wrong = [f"{quant} {x} are {y}." for quant in ("All", "Some", "No") for x, y in ((a, b), (b, a))]
    false = [w for w in wrong if audit_thought(syl, q, w)["false"]]
    assert false and audit_thought(syl, q, false[0])["retrieval"] == "false"
    rev = make_dataset("reversal_curse", seed=0, overrides={"n_people_a": 4, "n_people_d": 0, "n_people_b": 0,
                                                            "n_paraphrases": 2, "n_test_paraphrases": 1})
    rq = next(x for x in rev.questions if x.split == "reversal")
    name, desc = rq.premises[0].subject, rq.premises[0].object
    assert audit_thought(rev, rq, f"{name} is {desc}.")["retrieval"] == "stated"
    assert audit_thought(rev, rq, f"{desc[0].upper() + desc[1:]} is {name}.")["retrieval"] == "stated"
    other = next(p["name"] for p in rev.meta["people"] if p["name"] != name)
    assert audit_thought(rev, rq, f"{other} is {desc}.")["retrieval"] == "false"


def test_no_rl_prompt_contains_an_evaluated_or_transfer_question_or_entity():
    dss = _study()
    # a transfer dataset that shares one word with an RL dataset: that word's group never trains RL
    shared = dss["syl_a"].meta["entities"][0]
    dss["syl_b"].meta["entities"] = [*dss["syl_b"].meta["entities"], shared]
    s = rl.Settings(rl_dataset=["syl_a", "rev_a"], rl_fraction=0.5)
    source = {n: [(q.id, q.split) for q in d.questions] for n, d in dss.items()}
    designed = rl.design(dss, [s])
    # the design makes new datasets: the study's sources are left as they were
    assert {n: [(q.id, q.split) for q in d.questions] for n, d in dss.items()} == source
    dss = designed
    assert {d.role for d in dss.values()} == {"rl", "transfer"}
    train = dss["syl_a"].rl_train_questions + dss["rev_a"].rl_train_questions
    assert train and dss["syl_a"].questions and dss["rev_a"].questions
    prompts = [think_prompt(q) for q in train]
    # held-out questions: RL's groups' recall questions are scored too (the gate), trained facts asked anew
    recall = {r for d in dss.values() for r in d.meta["recall_splits"]}
    evaluated = [q for d in dss.values() for q in d.questions if q.split not in recall]
    eval_ids = {q.id for d in ("syl_a", "rev_a") for q in dss[d].questions}
    assert not eval_ids & {q.id for q in train}
    vocab = set().union(*[rl.entity_words(d) for d in dss.values()])
    eval_entities = set().union(*[rl.question_entities(q, vocab) for q in evaluated])
    for p in prompts:
        assert not any(q.context in p for q in evaluated)
        words = {w.lower() for w in re.findall(r"[A-Za-z]+", p)}
        assert not words & eval_entities, p
        assert shared not in words
    # the split names say which dataset is which
    assert {q.split for q in dss["syl_a"].questions} <= {"syllogism/rl", "trained/rl"}
    assert {q.split for q in dss["rev_b"].questions} == {"forward/transfer", "reversal/transfer"}
    assert dss["syl_a"].meta["recall_splits"] == ["trained/rl"]


def test_every_rl_condition_names_the_same_design():
    from genmodes.errors import ConfigError

    with pytest.raises(ConfigError, match="same rl_dataset"):
        rl.design(_study(), [rl.Settings(rl_dataset="syl_a"), rl.Settings(rl_dataset="rev_a")])
    with pytest.raises(ConfigError, match="not a dataset"):
        rl.design(_study(), [rl.Settings(rl_dataset="nope")])


def _rl_settings(**kw):
    base = dict(rl_dataset="syl_a", steps=2, group_size=2, prompts_per_step=2, max_thought_tokens=6,
                reward="probability", lr=1e-3, temperature=1.0, save_every=2)
    return rl.Settings(**{**base, **kw})


def _train_questions():
    dss = {"syl_a": make_dataset("simple_syllogisms", seed=0, overrides={"n_examples": 8})}
    dss = rl.design(dss, [_rl_settings()])
    return dss["syl_a"].rl_train_questions


def test_grpo_steps_change_every_trainable_parameter(tmp_path):
    model, tok = load_model("tiny-random", device="cpu")
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model, info = grpo.grpo_train(model, tok, _train_questions(), _rl_settings(), 0, tmp_path / "grpo", progress=False)
    unchanged = [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p.detach(), before[n])]
    assert not unchanged
    assert [s for s, _ in info["reward_curve"]] == [1, 2] and info["tokens_generated"] > 0
    assert all(0.0 <= r <= 1.0 for _, r in info["reward_curve"])


def test_grpo_reward_terms_are_logged_apart_and_sum_to_the_reward(tmp_path):
    from genmodes.training.thoughts import states_a_fact, thought_tokens
    from genmodes.data.families import get_family

    parse = get_family("simple_syllogisms").parse_statements
    s = _rl_settings(length_weight=0.25, format_weight=0.5, group_size=4)
    model, tok = load_model("tiny-random", device="cpu")
    _, info = grpo.grpo_train(model, tok, _train_questions(), s, 0, tmp_path / "grpo", progress=False, parse=parse)
    terms = info["reward_terms_curves"]
    assert set(terms) == {"scorer_probability", "thought_length", "states_fact"}
    for i, (step, total) in enumerate(info["reward_curve"]):
        base, length, fact = (terms[n][i][1] for n in ("scorer_probability", "thought_length", "states_fact"))
        assert 0.0 <= base <= 1.0 and -1.0 <= length <= 0.0 and 0.0 <= fact <= 1.0
        assert total == pytest.approx(base + 0.25 * length + 0.5 * fact, abs=1e-4)
    # the terms' definitions: the length term is the stop rule's thought, the fact term the parser's verdict
    assert thought_tokens(tok, "") == 0 and thought_tokens(tok, "All glon are yomp.\nmore") == \
        thought_tokens(tok, "All glon are yomp.")
    assert states_a_fact(parse, "All glon are yomp.") and not states_a_fact(parse, "\nAll glon are yomp.")
    # without terms the reward is the scorer's alone, and a format term without a parser is refused
    _, plain = grpo.grpo_train(*load_model("tiny-random", device="cpu"), _train_questions(), _rl_settings(), 0,
                             tmp_path / "plain", progress=False)
    assert "reward_terms_curves" not in plain
    from genmodes.errors import ConfigError

    with pytest.raises(ConfigError, match="statement parser"):
        grpo.grpo_train(*load_model("tiny-random", device="cpu"), _train_questions(), _rl_settings(format_weight=1.0),
                      0, tmp_path / "noparse", progress=False)
    # a mapping gives each question its own parser: here one that reads a statement in any text
    qs = _train_questions()
    _, every = grpo.grpo_train(*load_model("tiny-random", device="cpu"), qs, _rl_settings(format_weight=1.0), 0,
                             tmp_path / "every", progress=False, parse={q.id: (lambda t: [t]) for q in qs})
    assert [v for _, v in every["reward_terms_curves"]["states_fact"]] == [1.0, 1.0]
    with pytest.raises(ConfigError, match="statement parser"):
        grpo.grpo_train(*load_model("tiny-random", device="cpu"), qs, _rl_settings(format_weight=1.0), 0,
                      tmp_path / "missing", progress=False, parse={qs[0].id: (lambda t: [t])})


def test_format_term_reads_each_question_with_its_own_familys_parser(tmp_path):
    from genmodes.conditions.base import CellContext

    dss = _study()
    s = _rl_settings(rl_dataset=["syl_a", "rev_a"], format_weight=0.5)
    dss = rl.design(dss, [s])
    ctx = CellContext(model_spec="tiny-random", dataset=dss["syl_b"], seed=0, workdir=tmp_path, progress=False)
    ctx.datasets = dss
    qs = rl.rl_questions(ctx, s)
    parsers = rl.statement_parsers(ctx, s, qs)
    assert set(parsers) == {q.id for q in qs}
    syl = next(q for q in qs if q in dss["syl_a"].rl_train_questions)
    rev = next(q for q in qs if q in dss["rev_a"].rl_train_questions)
    # a syllogism-form sentence is a statement for a syllogism question, not for a reversal question
    assert parsers[syl.id]("No students are boys.") and not parsers[rev.id]("No students are boys.")


def test_rl_resumes_from_its_checkpoint_after_a_kill(tmp_path, monkeypatch):
    from transformers import TrainerCallback

    class Killed(Exception):
        pass

    class KillAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise Killed()

    calls = []
    real = grpo.rewards
    monkeypatch.setattr(grpo, "rewards", lambda *a, **k: calls.append(1) or real(*a, **k))
    s = _rl_settings(steps=4, save_every=2)
    qs = _train_questions()
    model, tok = load_model("tiny-random", device="cpu")
    with pytest.raises(Killed):
        grpo.grpo_train(model, tok, qs, s, 0, tmp_path / "grpo", progress=False, callbacks=[KillAfter()])
    assert (tmp_path / "grpo" / "checkpoint-2").is_dir() and len(calls) == 3
    before = json.loads((tmp_path / "grpo" / "checkpoint-2" / grpo.SECONDS_FILE).read_text())["seconds"]
    calls.clear()
    model, tok = load_model("tiny-random", device="cpu")  # a fresh process would start from the base
    model, info = grpo.grpo_train(model, tok, qs, s, 0, tmp_path / "grpo", progress=False)
    assert info["resumed"] and info["steps"] == 4
    assert info["train_seconds"] > before > 0  # the first session's seconds count too
    assert len(calls) == 2  # only steps 3 and 4 were generated and rewarded again
    assert [st for st, _ in info["reward_curve"]] == [1, 2, 3, 4]


def test_rl_stage_builds_from_the_study_finetune_and_reuses_its_checkpoint(tmp_path):
    from genmodes.conditions.base import CellContext

    dss = _study()
    s = _rl_settings(rl_dataset=["syl_a"], finetune=FT(steps=1, batch_size=2, seq_len=64))
    dss = rl.design(dss, [s])
    ctx = CellContext(model_spec="tiny-random", dataset=dss["syl_b"], seed=0, workdir=tmp_path / "cell",
                      shared_dir=tmp_path / "shared", progress=False, device="cpu")
    ctx.datasets = dss
    built = rl.build(ctx, s)
    assert built.info.finetune.datasets == sorted(dss)
    assert built.info.rl.steps == 2 and built.info.rl_questions
    ctx2 = CellContext(model_spec="tiny-random", dataset=dss["rev_b"], seed=0, workdir=tmp_path / "cell2",
                       shared_dir=tmp_path / "shared", progress=False, device="cpu")
    ctx2.datasets = dss
    again = rl.build(ctx2, s)
    assert again.info.reused
    for (n, p), (_, p2) in zip(built.model.named_parameters(), again.model.named_parameters()):
        assert torch.equal(p.detach(), p2.detach()), n


def test_rl_method_settings_are_checked_where_they_are_given():
    from pydantic import ValidationError

    s = rl.Settings(rl_dataset="a", method="expert_iteration")
    assert s.expert_iteration is not None and s.expert_iteration.rounds >= 1
    assert rl.Settings(rl_dataset="a").expert_iteration is None
    for bad, match in (({"method": "expert_iteration", "steps": 5}, "'steps' is a GRPO setting"),
                       ({"method": "expert_iteration", "reward": "probability"}, "reward must be 'correct'"),
                       ({"expert_iteration": {"rounds": 2}}, "need method: expert_iteration"),
                       ({"method": "expert_iteration", "expert_iteration": {"roundz": 2}}, "roundz")):
        with pytest.raises(ValidationError, match=match):
            rl.Settings(rl_dataset="a", **bad)


def _semantic(part: int, seed: int):
    return make_dataset("semantic_structure", seed=seed, overrides={
        "subtrees": ["canine", "feline"], "n_documents": 1, "n_qa_items": 0, "holdout_mentions": 1,
        "n_holdout_categories": 3, "questions_per_split": 30, "probe_questions_per_split": 0,
        "vocabulary": {"part": part, "of": 2}})


def test_semantic_rl_questions_never_ask_about_an_evaluated_subject():
    # every inference of a hierarchy shares a premise with another one, so RL groups questions by the
    # entity they name: no evaluated question names a category an RL question names
    dss = rl.design({"sa": _semantic(0, 0), "sb": _semantic(1, 1)}, [rl.Settings(rl_dataset="sa", rl_fraction=0.5)])
    train, scored = dss["sa"].rl_train_questions, dss["sa"].questions
    vocab = rl.entity_words(dss["sa"])
    assert train and any(q.split.startswith("syllogism") for q in scored)
    named = set().union(*[rl.named_entities(q, vocab) for q in train])
    held_scored = [q for q in scored if not q.split.startswith("rephrase")]
    assert not named & set().union(*[rl.named_entities(q, vocab) for q in held_scored])
    # every recall question is scored, those about RL's subjects too: the recall gate needs them all,
    # and RL never trains on one
    source = _semantic(0, 0)
    assert sum(q.split.startswith("rephrase") for q in scored) == sum(q.split == "rephrase" for q in source.questions)
    assert any(rl.named_entities(q, vocab) & named for q in scored if q.split.startswith("rephrase"))
    assert not any(q.split.startswith("rephrase") for q in train)
    # about half the held-out questions train RL, the rest are scored
    held = [q for q in scored if not q.split.startswith("rephrase")]
    assert 0.25 < len(train) / (len(train) + len(held)) < 0.75
    assert not rl.entity_words(dss["sa"]) & rl.entity_words(dss["sb"])


def _cell(tmp_path, dss, name, built):
    from genmodes.conditions.base import CellContext

    return CellContext(model_spec="tiny-random", dataset=dss[name], seed=0, workdir=tmp_path / name,
                       shared_dir=tmp_path / "shared", progress=False, device="cpu", datasets=dss, dataset_name=name)


def test_thought_modes_fill_the_slot_as_their_control_needs(tmp_path, tiny, monkeypatch):
    from genmodes.conditions import thinking
    from genmodes.conditions.base import Built
    from genmodes.training import thoughts as th

    model, tok = tiny
    dss = {"sa": _semantic(0, 0), "sb": _semantic(1, 1)}
    for d in dss.values():
        d.questions = [q for q in d.questions if q.split in ("syllogism", "category_holdout")][:12]
    built = Built(model, tok)
    calls = []
    real = th.generate_thoughts
    monkeypatch.setattr(thinking, "generate_thoughts", lambda *a, **k: calls.append(k.get("prompts")) or real(*a, **k))
    gen = thinking.apply(_cell(tmp_path, dss, "sb", built), built, thinking.Settings(max_thought_tokens=4))
    shuf = thinking.apply(_cell(tmp_path, dss, "sb", built), built,
                          thinking.Settings(max_thought_tokens=4, thought="shuffled"))
    assert len(calls) == 1 and shuf.info.thinking.shared_thoughts is True  # generated once, shared
    own = {q: d["thought"] for q, d in gen.question_details.items()}
    for qid, d in shuf.question_details.items():
        assert d["thought_of"] != qid and d["thought"] == own[d["thought_of"]]
    empty = thinking.apply(_cell(tmp_path, dss, "sb", built), built, thinking.Settings(thought="empty"))
    assert all(d["thought"] == "" and d["thought_tokens"] == 0 for d in empty.question_details.values())
    oracle = thinking.apply(_cell(tmp_path, dss, "sb", built), built, thinking.Settings(thought="oracle"))
    assert oracle.info.thinking.retrieval_rate == 1.0 and len(calls) == 1
    q = dss["sb"].questions[0]
    assert oracle.context_for(q).startswith(th.think_prompt(q) + " " + th.oracle_thought(dss["sb"], q))
    # generate-and-verify: each option is recalled after the drill prompt about it (options in context)
    ver = thinking.apply(_cell(tmp_path, dss, "sb", built), built,
                         thinking.Settings(max_thought_tokens=3, thought="verify"))
    assert calls[-1] == [th.DRILL.format(topic=c.strip().rstrip(".")) for q in dss["sb"].questions
                         for c in q.choices]
    assert ver.info.thinking.options_in_context and not gen.info.thinking.options_in_context
    # a demonstration: two drills of the other dataset of the family, before every prompt
    demo = thinking.apply(_cell(tmp_path, dss, "sb", built), built,
                          thinking.Settings(max_thought_tokens=3, thought="empty", demonstration=2))
    assert demo.info.thinking.demonstration_from == "sa" and demo.prefix.count("Recall what you know about") == 2
    assert not rl.entity_words(dss["sb"]) & {w.lower() for w in re.findall(r"[A-Za-z]+", demo.prefix)}


def test_summary_carries_retrieval_rate_on_thinking_rows_only():
    from genmodes.experiments.records import ResultRow
    from genmodes.experiments.summary import columns, summarize

    def row(cond, ctx, details, i):
        return ResultRow(cell="c", model="m", dataset="d", family="f", split="s", subtype="t", condition=cond,
                         condition_kind=cond, model_stage="finetune_all", context_stage=ctx, seed=0,
                         question_id=f"q{i}", answer=0, chance=0.25, scores=[], chosen=0, chosen_norm=0, correct=True,
                         correct_norm=True, context_tokens=1, context="x", details=details)

    rows = [row("ft", "none", {}, i) for i in range(4)]
    rows += [row("think", "thinking", {"thought": "t", "retrieval": lab, "verifiable": True}, i)
             for i, lab in enumerate(["stated", "none", "stated", "partial"])]
    out = {r["condition"]: r for r in summarize(rows)}
    assert out["think"]["retrieval_rate"] == 0.5 and "retrieval_rate" not in out["ft"]
    assert columns(list(out.values()))[-1] == "retrieval_rate"


def test_augmented_a_trains_on_the_study_then_on_the_augmentations_of_a(tmp_path):
    from genmodes.conditions import finetune_all
    from genmodes.conditions.base import CellContext
    from genmodes.data.families import get_family

    dss = {"sa": _semantic(0, 0), "sb": _semantic(1, 1)}
    s = finetune_all.Settings(steps=1, batch_size=2, seq_len=64, augment=["sa"], augment_epochs=0.05)
    texts = finetune_all.augmented_texts(dss, s)
    aug = [d.text for d in get_family("semantic_structure").oracle_augmentations(dss["sa"])]
    assert texts[:len(aug)] == aug and texts[len(aug):] == finetune_all.study_texts(dss, s)
    assert s.plain().model_dump() == finetune_all.Settings(steps=1, batch_size=2, seq_len=64).model_dump()
    ctx = CellContext(model_spec="tiny-random", dataset=dss["sb"], seed=0, workdir=tmp_path / "c",
                      shared_dir=tmp_path / "shared", progress=False, device="cpu", datasets=dss, dataset_name="sb")
    built = finetune_all.build(ctx, s)
    plain = finetune_all.build(ctx, s.plain())
    assert plain.info.reused  # the augmented run continued from the study's fine-tune, which it saved
    assert built.info.augmentations == len(aug) and built.info.augment_loss_curve
    assert built.info.train_seconds > plain.info.train_seconds


def test_recall_splits_can_be_scored_after_an_empty_thought(tmp_path, tiny):
    from genmodes.conditions import thinking
    from genmodes.conditions.base import Built

    model, tok = tiny
    dss = {"sa": _semantic(0, 0), "sb": _semantic(1, 1)}
    dss["sb"].questions = [q for q in dss["sb"].questions if q.split in ("rephrase", "syllogism")][:16]
    built = Built(model, tok)
    out = thinking.apply(_cell(tmp_path, dss, "sb", built), built,
                         thinking.Settings(max_thought_tokens=3, temperature=1.0, recall_thoughts=False))
    for q in dss["sb"].questions:
        d = out.question_details[q.id]
        if q.split == "rephrase":
            assert d["no_thought"] and d["thought"] == "" and d["thought_tokens"] == 0
        else:
            assert "no_thought" not in d and d["thought_tokens"] > 0


def test_grpo_reward_is_the_frozen_answerers_verdict_when_given_one(tmp_path, monkeypatch):
    judges = []
    real = grpo.rewards
    monkeypatch.setattr(grpo, "rewards", lambda m, *a, **k: judges.append(m) or real(m, *a, **k))
    model, tok = load_model("tiny-random", device="cpu")
    answerer, _ = load_model("tiny-random", device="cpu", seed=1)
    before = {n: p.detach().clone() for n, p in answerer.named_parameters()}
    grpo.grpo_train(model, tok, _train_questions(), _rl_settings(), 0, tmp_path / "g", progress=False, answerer=answerer)
    assert judges and all(j is answerer for j in judges)
    assert all(torch.equal(p, before[n]) for n, p in answerer.named_parameters())


def test_chain_drills_train_one_practice_dataset_which_is_scored_on_recall_only():
    """``chain_drills`` gives the named dataset worked recall-then-infer drills and the others their
    ``recall_drills``; a dataset so drilled may be scored on its recall splits only (its inferences
    are trained), and only a study-wide fine-tune names datasets; off, the settings dump (the
    checkpoint key) is what it was without the setting."""
    from genmodes.conditions import finetune, finetune_all
    from genmodes.conditions.base import StageCheck
    from genmodes.errors import ConfigError

    dss = {"sa": _semantic(0, 0), "sp": _semantic(1, 1)}
    s = finetune_all.Settings(steps=1, batch_size=2, seq_len=64, recall_drills="answer", chain_drills=["sp"])
    texts = finetune_all.study_texts(dss, s)
    chain = [d.text for d in finetune.drills(dss["sp"], s, name="sp")]
    answer = [d.text for d in finetune.drills(dss["sa"], s, name="sa")]
    assert chain and answer and set(chain) | set(answer) <= set(texts)
    assert {d.meta["format"] for d in finetune.drills(dss["sp"], s, name="sp")} == {"chain"}
    assert {d.meta["format"] for d in finetune.drills(dss["sa"], s, name="sa")} == {"answer"}
    assert s.warm_start() == "chain" and rl.Settings(rl_dataset="sa", finetune={"chain_drills": ["sp"]}) \
        .finetune.warm_start() == "chain"

    def check(datasets):
        return StageCheck(where="conditions[0] (finetune)", model_specs=["tiny-random"], datasets=datasets,
                          load_model=lambda spec: None)

    with pytest.raises(ConfigError, match=r"chain_drills: dataset 'sp' is scored on .*syllogism"):
        finetune_all.validate(s, check(dss))
    recall = set(dss["sp"].meta["recall_splits"])
    only_recall = dataclasses.replace(dss["sp"], questions=[q for q in dss["sp"].questions if q.split in recall])
    finetune_all.validate(s, check({"sa": dss["sa"], "sp": only_recall}))
    finetune_all.validate(s, check({"sa": dss["sa"]}))  # a condition that does not score it
    with pytest.raises(ConfigError, match="only a study-wide fine-tune"):
        finetune.validate(finetune.Settings(chain_drills=["sp"]), check({"sa": dss["sa"]}))
    plain = finetune_all.Settings(steps=1, batch_size=2, seq_len=64, recall_drills="answer")
    assert "chain_drills" not in plain.model_dump() and "chain_drills" not in FT().model_dump()
    # with recall_drills_on_chain the practice dataset gets its recall drills beside the chains, and
    # the setting needs both kinds of drills
    both = finetune_all.Settings(steps=1, batch_size=2, seq_len=64, recall_drills="rehearse", chain_drills=["sp"],
                                 recall_drills_on_chain=True)
    assert {d.meta["format"] for d in finetune.drills(dss["sp"], both, name="sp")} == {"chain", "rehearse"}
    assert set(d.text for d in finetune.drills(dss["sp"], both, name="sp")) <= set(finetune_all.study_texts(dss, both))
    finetune_all.validate(both, check({"sa": dss["sa"], "sp": only_recall}))
    for bad in ({"recall_drills": "rehearse"}, {"chain_drills": ["sp"]}):
        with pytest.raises(ConfigError, match="recall_drills_on_chain needs chain_drills and recall_drills"):
            finetune_all.validate(finetune_all.Settings(recall_drills_on_chain=True, **bad), check({"sa": dss["sa"]}))
    # the study's fine-tune has one key whether a condition (finetune_all) or the rl stage names it
    for kw in ({}, {"recall_drills": "answer"}, {"chain_drills": ["sp"]},
               {"recall_drills": "rehearse", "chain_drills": ["sp"], "recall_drills_on_chain": True}):
        assert finetune_all.Settings(until_recall=0.9, **kw).key() == FT(until_recall=0.9, **kw).key()


def test_report_names_the_warm_start_of_each_thinker():
    """The thinking report says what taught each generating thinker its format: chain drills on the
    practice dataset, its rehearsals too where ``recall_drills_on_chain`` is set, and the recall drills
    elsewhere; a thinker with no fine-tune drills says so."""
    from types import SimpleNamespace

    from genmodes.conditions import finetune_all, thinking

    def cond(name, model, thought="generate"):
        ctx = thinking.Settings(thought=thought)
        return SimpleNamespace(name=name, stages=SimpleNamespace(is_baseline=False, context="thinking",
                                                                 context_settings=ctx, model_settings=model))

    both = finetune_all.Settings(recall_drills="rehearse", chain_drills=["sp"], recall_drills_on_chain=True)
    chain = finetune_all.Settings(recall_drills="answer", chain_drills=["sp"])
    view = SimpleNamespace(run=SimpleNamespace(config=SimpleNamespace(conditions=[
        cond("a", both), cond("b", chain), cond("c", finetune_all.Settings()), cond("d", both, thought="oracle")])))
    text = thinking.warm_start(view)
    assert "a: recall drills (chain and rehearse on sp, rehearse elsewhere)" in text
    assert "b: recall drills (chain on sp, answer elsewhere)" in text
    assert "c: none (the prompt alone)" in text and "d:" not in text
