"""Expert iteration (STaR / ReST-EM): what it keeps is exactly the scorer's right answers, it trains on
the thought alone, a frozen answerer stays frozen, and a round's record says what it sampled."""

from __future__ import annotations

import pytest
import torch

from genmodes.data.families import make_dataset
from genmodes.models import load_model
from genmodes.training import expert_iteration as ei
from genmodes.training.thoughts import Verdict, think_prompt


def _questions(n=3):
    return make_dataset("simple_syllogisms", seed=0, overrides={"n_examples": 4}).questions[:n]


def test_select_keeps_distinct_non_empty_thoughts_after_a_right_answer():
    qs = _questions(2)
    thoughts = ["a", "a", "", "b", "c", "d", "e", "f"]
    judged = [Verdict(True, 0.5), Verdict(True, 0.5), Verdict(True, 0.9), Verdict(False, 0.1),
              Verdict(False, 0.2), Verdict(True, 0.3), Verdict(True, 0.7), Verdict(False, 0.6)]
    kept = ei.select(qs, thoughts, judged, samples=4, keep="correct")
    assert [(q.id, t) for q, t in kept] == [(qs[0].id, "a"), (qs[1].id, "d"), (qs[1].id, "e")]
    best = ei.select(qs, thoughts, judged, samples=4, keep="best")
    assert [(q.id, t) for q, t in best] == [(qs[0].id, "a"), (qs[1].id, "e")]


def test_rounds_train_on_the_kept_thoughts_only_and_leave_a_frozen_answerer_as_it_was(monkeypatch):
    model, tok = load_model("tiny-random", device="cpu")
    answerer, _ = load_model("tiny-random", device="cpu")
    frozen = {n: p.detach().clone() for n, p in answerer.named_parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    judged_by, trained_on = [], []
    real_verdicts = ei.verdicts

    def spy(judge, *a, **k):
        judged_by.append(judge)
        out = real_verdicts(judge, *a, **k)
        # the first sample of every question is "right", the others wrong: what is kept is known
        return [Verdict(i % 2 == 0, v.p_right) for i, v in enumerate(out)]

    from genmodes.training import finetune

    real_train = finetune.train

    def train_spy(m, t, texts, settings, seed, examples=None, **k):
        trained_on.append(list(examples))
        return real_train(m, t, texts, settings, seed, examples=examples, **k)

    monkeypatch.setattr(ei, "verdicts", spy)
    monkeypatch.setattr(finetune, "train", train_spy)
    qs = _questions(3)
    s = ei.ExpertIterationSettings(rounds=2, samples=2, epochs=1, batch_size=2, seq_len=64, lr=1e-3)
    model, info = ei.expert_iteration(model, tok, qs, s, seed=0, max_tokens=5, temperature=1.0,
                                      instruction="Recall.", lead="\nRecall:", answerer=answerer,
                                      audit=lambda q, t: "none", progress=False)
    assert judged_by and all(j is answerer for j in judged_by)
    assert all(torch.equal(p, frozen[n]) for n, p in answerer.named_parameters())
    assert not all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert [r["round"] for r in info["rounds"]] == [1, 2]
    for r, examples in zip(info["rounds"], trained_on):
        assert r["sampled"] == 6 and r["reward"] == pytest.approx(0.5)
        # one thought per question kept (the first sample), after its own prompt
        assert len(examples) == r["kept"] <= 3
        assert all(ctx == think_prompt(q, "Recall.", "\nRecall:") for (ctx, _), q in zip(examples, qs))
        assert r["retrieval_rate"] == 0.0 and r["steps"] >= 1
    assert info["reward_curve"] == [(1, 0.5), (2, 0.5)] and info["tokens_generated"] >= 0


def test_the_fine_tune_puts_its_loss_on_the_thought_alone():
    from genmodes.training.finetune import encode_examples

    _, tok = load_model("tiny-random", device="cpu")
    q = _questions(1)[0]
    prompt, thought = think_prompt(q), " All glon are yomp."
    (ids, labels), = encode_examples(tok, [(prompt, thought)])
    labelled = [i for i, lab in zip(ids, labels) if lab != -100]
    assert labelled[-1] == tok.eos_token_id  # a kept thought ends: the stop rule learned
    assert tok.decode(labelled, skip_special_tokens=True).strip() == thought.strip()


def test_sampling_is_required():
    from genmodes.errors import ConfigError

    model, tok = load_model("tiny-random", device="cpu")
    with pytest.raises(ConfigError, match="temperature"):
        ei.expert_iteration(model, tok, _questions(1), ei.ExpertIterationSettings(rounds=1), seed=0, max_tokens=4,
                            temperature=0.0, instruction="x", lead=":", progress=False)
