"""Training to the gate: ``until_recall`` scores the recall split at the end of every epoch and stops
at the first epoch where it is reached, or at ``max_epochs``; deterministic; part of the checkpoint key."""

from __future__ import annotations

import pytest
import torch

from genmodes.conditions import resolve
from genmodes.conditions.base import CellContext
from genmodes.conditions.finetune import Settings, build, checkpoint_dir
from genmodes.data.families import make_dataset
from genmodes.errors import ConfigError
from genmodes.models import load_model
from genmodes.training.finetune import (FinetuneSettings, encode_examples, epoch_ends, examples_from_texts, plan_rows,
                                        train)
from genmodes.training.recall import RecallProbe, RecallScore, recall_questions

FAST = dict(batch_size=2, seq_len=64, lr=1e-3)


def tiny():
    return load_model("tiny-random", device="cpu")


def dataset():
    return make_dataset("simple_reversals", 0, {"n_facts": 3, "articles_per_fact": 2})


class Scripted(RecallProbe):
    """A probe whose recall follows a script (one value per check), counting the checks."""

    def __init__(self, values, questions):
        super().__init__(questions)
        self.values, self.calls = list(values), 0

    def score(self, model, tokenizer):
        v = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return RecallScore({"": v}, v, len(self.questions))


def texts(ds):
    return [d.text for d in ds.documents]


def test_settings_of_the_rule():
    s = Settings(until_recall=0.9)
    assert s.max_epochs == 30 and s.epochs is None and s.steps is None and s.planned_epochs == 30
    assert Settings(until_recall=0.9, max_epochs=4).planned_epochs == 4
    for bad, word in (({"until_recall": 0.9, "epochs": 3}, "max_epochs"), ({"until_recall": 0.9, "steps": 3}, "steps"),
                      ({"max_epochs": 3}, "until_recall"), ({"until_recall": 1.5}, "until_recall")):
        with pytest.raises(ConfigError, match=word):
            resolve("finetune", bad)


def test_an_unset_rule_leaves_keys_as_they_were(tmp_path):
    """Runs made before the rule existed keep their cell and checkpoint keys (they resume)."""
    plain = resolve("finetune", {"epochs": 3}).key()["model"]
    assert "until_recall" not in plain and "max_epochs" not in plain
    ruled = resolve("finetune", {"until_recall": 0.9, "max_epochs": 3}).key()["model"]
    assert ruled["until_recall"] == 0.9 and ruled["max_epochs"] == 3
    ctx = CellContext(model_spec="tiny-random", dataset=dataset(), seed=0, workdir=tmp_path)
    a = checkpoint_dir(ctx, Settings(until_recall=0.9, max_epochs=3), ["x"], recall=ctx.recall_probe())
    b = checkpoint_dir(ctx, Settings(until_recall=0.8, max_epochs=3), ["x"], recall=ctx.recall_probe())
    fewer = ctx.recall_probe()
    fewer.questions = fewer.questions[:1]
    fewer.groups = fewer.groups[:1]
    c = checkpoint_dir(ctx, Settings(until_recall=0.9, max_epochs=3), ["x"], recall=fewer)
    assert len({a, b, c, checkpoint_dir(ctx, Settings(epochs=3), ["x"])}) == 4


def test_epoch_ends_cover_the_packed_data():
    _, tok = tiny()
    enc = encode_examples(tok, examples_from_texts(texts(dataset())))
    s = FinetuneSettings(until_recall=0.9, max_epochs=4, **FAST)
    ends = epoch_ends(enc, s)
    _, n_steps = plan_rows(enc, s)
    assert sorted(ends.values()) == [1, 2, 3, 4] and max(ends) == n_steps
    tokens = sum(len(i) for i, _ in enc)
    for step, epoch in ends.items():  # the first step whose rows hold that many passes over the data
        assert step * s.batch_size * s.seq_len >= epoch * tokens > (step - 1) * s.batch_size * s.seq_len
    assert epoch_ends(enc, FinetuneSettings(steps=3, **FAST)) == {}


def test_stops_at_the_first_epoch_that_reaches_the_rule():
    ds = dataset()
    probe = Scripted([0.2, 0.5, 0.95, 1.0], recall_questions(ds))
    s = FinetuneSettings(until_recall=0.9, max_epochs=6, **FAST)
    _, info = train(*tiny(), texts(ds), s, 0, progress=False, recall=probe)
    assert probe.calls == 3
    assert info["epochs_trained"] == 3 and info["recall_reached"] is True
    assert [e for e, _ in info["recall_curve"]] == [1, 2, 3] and info["recall_curve"][-1][1] == 0.95
    enc = encode_examples(tiny()[1], examples_from_texts(texts(ds)))
    third = next(step for step, e in epoch_ends(enc, s).items() if e == 3)
    assert info["steps"] == len(info["loss_curve"]) == third
    assert info["epochs"] == pytest.approx(3, abs=0.5)


def test_runs_to_max_epochs_when_never_reached():
    ds = dataset()
    probe = Scripted([0.1], recall_questions(ds))
    s = FinetuneSettings(until_recall=0.9, max_epochs=3, **FAST)
    _, info = train(*tiny(), texts(ds), s, 0, progress=False, recall=probe)
    assert probe.calls == 3 and info["epochs_trained"] == 3 and info["recall_reached"] is False
    assert info["steps"] == plan_rows(encode_examples(tiny()[1], examples_from_texts(texts(ds))), s)[1]


def test_same_seed_same_stop_and_weights():
    """The real probe (the one scorer): the same seed and data stop at the same epoch with the same
    curve and weights."""
    ds = dataset()
    s = FinetuneSettings(until_recall=1.0, max_epochs=2, **FAST)
    runs = [train(*tiny(), texts(ds), s, 0, progress=False, recall=RecallProbe.of({"d": ds})) for _ in range(2)]
    (m1, i1), (m2, i2) = runs
    assert i1["recall_curve"] == i2["recall_curve"] and i1["loss_curve"] == i2["loss_curve"]
    assert i1["epochs_trained"] == i2["epochs_trained"]
    w1, w2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_the_probe_scores_in_eval_mode_and_restores_the_mode():
    model, tok = tiny()
    probe = RecallProbe.of({"d": dataset()})
    model.train()
    first = probe.score(model, tok)
    assert model.training
    model.eval()
    assert probe.score(model, tok) == first and not model.training
    assert first.questions == len(dataset().split("forward")) and set(first.by_group) == {"d"}


def test_no_recall_split_is_a_config_error():
    with pytest.raises(ConfigError, match="until_recall.*recall split"):
        train(*tiny(), ["A text."], FinetuneSettings(until_recall=0.9, max_epochs=2, **FAST), 0, progress=False,
              recall=RecallProbe([]))


def test_the_stage_reports_the_rule_and_its_gate(tmp_path):
    ctx = CellContext(model_spec="tiny-random", dataset=dataset(), seed=0, workdir=tmp_path, device="cpu",
                      progress=False)
    built = build(ctx, Settings(until_recall=1.0, max_epochs=2, **FAST))
    info = built.info
    assert info.until_recall == 1.0 and info.max_epochs == 2 and info.epochs_trained == 2
    assert info.recall_reached is False and len(info.recall_curve) == 2
    assert info.recall_splits == ["forward"] and info.recall_questions == len(ctx.dataset.split("forward"))
    assert info.recall_accuracy == info.recall_curve[-1][1]
    # the final recall is the one scorer's on the built model
    direct = ctx.recall_probe().score(built.model, built.tokenizer)
    assert direct.accuracy == pytest.approx(info.recall_accuracy, abs=1e-6)
    again = build(ctx, Settings(until_recall=1.0, max_epochs=2, **FAST))
    assert again.info.reused is True and again.info.recall_curve == info.recall_curve


def test_the_schedule_spans_max_epochs():
    """The rule's run is the max_epochs run stopped early: its learning rate decays over max_epochs, so
    a longer allowance trains the same epochs at a higher rate."""
    ds = dataset()
    runs = []
    for max_epochs in (3, 7):
        probe = Scripted([0.1, 0.95], recall_questions(ds))
        runs.append(train(*tiny(), texts(ds), FinetuneSettings(until_recall=0.9, max_epochs=max_epochs, **FAST), 0,
                          progress=False, recall=probe)[1])
    short, long = runs
    assert short["epochs_trained"] == long["epochs_trained"] == 2 and short["steps"] == long["steps"]
    assert short["warmup_steps"] < long["warmup_steps"]  # 5% of the planned steps
    assert short["loss_curve"] != long["loss_curve"]


def test_the_rule_on_a_per_split_training_curve():
    """The from-scratch loop's integration point: every recall split scored and at the threshold."""
    from genmodes.training.recall import curve_reached

    assert curve_reached({"trained": 0.95, "heldout": 0.1}, ["trained"], 0.9)
    assert not curve_reached({"trained": 0.85, "heldout": 1.0}, ["trained"], 0.9)
    assert not curve_reached({"heldout": 1.0}, ["trained"], 0.9)  # not scored: not reached
    assert not curve_reached({"a": 0.95}, ["a", "b"], 0.9)
    assert not curve_reached({}, [], 0.9)


class TwoDatasets(RecallProbe):
    """A probe over two datasets whose recall follows a script, one (a, b) pair per check."""

    def __init__(self, values, questions):
        super().__init__(questions)
        self.values, self.calls = list(values), 0

    def score(self, model, tokenizer):
        a, b = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return RecallScore({"a": a, "b": b}, (a + b) / 2, len(self.questions))


def test_each_datasets_recall_is_kept_per_epoch_and_shown_as_it_trains(capsys):
    """Training to the gate waits for the weakest dataset: the info keeps every dataset's recall after
    each epoch (which one held training back), and a run that shows progress prints each check."""
    ds = dataset()
    probe = TwoDatasets([(0.95, 0.5), (0.85, 0.92), (0.95, 0.9)], recall_questions(ds))
    s = FinetuneSettings(until_recall=0.9, max_epochs=5, **FAST)
    _, info = train(*tiny(), texts(ds), s, 0, progress=True, recall=probe)
    assert info["epochs_trained"] == 3 and info["recall_reached"] is True
    assert info["recall_by_dataset_curve"] == [(1, {"a": 0.95, "b": 0.5}), (2, {"a": 0.85, "b": 0.92}),
                                               (3, {"a": 0.95, "b": 0.9})]
    err = capsys.readouterr().err
    assert "epoch 1: recall 72.5% (a 95.0%, b 50.0%), gate 90%" in err
    assert "epoch 3: recall 92.5% (a 95.0%, b 90.0%)" in err
    # one dataset: its curve is recall_curve itself
    _, one = train(*tiny(), texts(ds), s, 0, progress=False, recall=Scripted([0.95], recall_questions(ds)))
    assert "recall_by_dataset_curve" not in one and one["recall_curve"] == [(1, 0.95)]
