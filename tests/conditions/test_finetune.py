"""The finetune condition: settings, sentence splitting, packing, the training loop, checkpoint reuse."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from genmodes.conditions import resolve
from genmodes.conditions.base import CellContext
from genmodes.conditions.finetune import Settings, build
from genmodes.training.finetune import (IGNORE, _collate, _loss_sum, _wrap_lora, encode_examples,
                                        examples_from_documents, examples_from_texts, pack, packed_rows,
                                        plan_rows, train)
from genmodes.data.families import make_dataset
from genmodes.data.types import Document
from genmodes.errors import ConfigError
from genmodes.models import load_model
from genmodes.scoring import Scorer

FACTS = ["Did you know that femp are brighter than glon.", "It turns out that trina are louder than frobi.",
         "Field notes confirm that peem are shorter than plisa.", "Observers agree that zoost are older than gank."]
FAST = dict(batch_size=4, seq_len=64)


def tiny():
    return load_model("tiny-random", device="cpu")


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def ctx_for(tmp_path, seed: int = 0) -> CellContext:
    ds = make_dataset("simple_reversals", 0, {"n_facts": 3, "articles_per_fact": 2})
    return CellContext(model_spec="tiny-random", dataset=ds, seed=seed, workdir=tmp_path, device="cpu",
                       progress=False)


# ------------------------------------------------------------------------------------------ settings

def test_settings_defaults_follow_method():
    full, lora = Settings(), Settings(method="lora")
    assert full.epochs is not None and full.steps is None
    assert full.lora_r is None and full.lr == 3e-4
    assert lora.lora_r == 16 and lora.lora_alpha == 32 and lora.lr == 1e-3
    assert Settings(steps=5).epochs is None


@pytest.mark.parametrize("bad, key", [
    ({"steps": 10, "epochs": 2}, "epochs"),
    ({"lora_r": 8}, "lora_r"),
    ({"method": "full", "target_modules": ["q_proj"]}, "target_modules"),
    ({"lr": -1e-4}, "lr"),
    ({"steps": 0}, "steps"),
    ({"sentence_split": "sometimes"}, "sentence_split"),
    ({"kinds": []}, "kinds"),
    ({"lerning_rate": 1e-4}, "lerning_rate"),
])
def test_bad_settings_name_the_key(bad, key):
    with pytest.raises(ValidationError) as e:
        Settings(**bad)
    assert key in str(e.value)
    with pytest.raises(ConfigError, match=key):
        resolve("finetune", bad)


def test_lora_settings_accepted_with_lora():
    s = Settings(method="lora", lora_r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["q_proj"], steps=3)
    assert (s.lora_r, s.target_modules, s.steps) == (4, ["q_proj"], 3)


# ------------------------------------------------------------------------------------------ examples

def test_sentence_split_modes():
    docs = [Document("d0", "Trina\nThe trina can thabi. Every trina is rure!  Is it a frobi?"),
            Document("d1", "One fact.")]
    assert examples_from_documents(docs, "none") == [("", docs[0].text), ("", "One fact.")]
    assert examples_from_documents(docs, "independent") == [
        ("", "Trina"), ("", "The trina can thabi."), ("", "Every trina is rure!"), ("", "Is it a frobi?"),
        ("", "One fact.")]
    cum = examples_from_documents(docs, "cumulative")
    assert cum == [("", "Trina"), ("Trina", "\nThe trina can thabi."),
                   ("Trina\nThe trina can thabi.", " Every trina is rure!"),
                   ("Trina\nThe trina can thabi. Every trina is rure!", "  Is it a frobi?"), ("", "One fact.")]
    for c, t in cum[:4]:  # context + target is always the document up to that sentence
        assert docs[0].text.startswith(c + t)


def test_encode_labels_only_document_tokens():
    _, tok = tiny()
    eos = tok.eos_token_id
    (ids, labels), = encode_examples(tok, [("", "abc.")])
    assert ids == tok("abc.", add_special_tokens=False).input_ids + [eos]
    assert labels == [IGNORE] + ids[1:]  # nothing in the example predicts its first token
    (ids, labels), = encode_examples(tok, [("Ab.", " cd.")])
    kept = [x for x in labels if x != IGNORE]
    assert tok.decode(kept[:-1]) == " cd." and kept[-1] == eos  # cumulative: loss on the new sentence only


def test_packing_has_no_padding_and_keeps_every_label():
    _, tok = tiny()
    examples = examples_from_texts(FACTS * 3, "independent")
    enc = encode_examples(tok, examples)
    rows = list(pack(enc, 40, tok.pad_token_id))
    assert all(r.length == 40 for r in rows[:-1]) and 0 < rows[-1].length <= 40
    assert all(len(r.input_ids) == len(r.labels) == len(r.position_ids) == 40 for r in rows)
    # The rows are the examples back to back; labels equal, except a row's first token (no predictor).
    flat_ids = [x for r in rows for x in r.input_ids[:r.length]]
    flat_labels = [x for r in rows for x in r.labels[:r.length]]
    assert flat_ids == [x for ids, _ in enc for x in ids]
    want = [x for _, lab in enc for x in lab]
    starts = {sum(r.length for r in rows[:i]) for i in range(len(rows))}
    assert all(flat_labels[i] == (IGNORE if i in starts else want[i]) for i in range(len(want)))
    # Labels are document tokens wherever set; padding carries none.
    for r in rows:
        assert all(lab == tok_id for lab, tok_id in zip(r.labels, r.input_ids) if lab != IGNORE)
        assert all(lab == IGNORE for lab in r.labels[r.length:])


def test_epochs_cover_the_data_that_many_times():
    _, tok = tiny()
    enc = encode_examples(tok, examples_from_texts(FACTS, "none"))
    per_epoch = sum(len(i) for i, _ in enc)
    s = Settings(epochs=3, batch_size=2, seq_len=32)
    rows = packed_rows(enc, s, seed=0, pad_id=tok.pad_token_id)
    assert sum(r.length for r in rows) == 3 * per_epoch
    assert plan_rows(enc, s) == (len(rows), -(-len(rows) // 2))
    # Each epoch is a different seeded order of the same examples.
    flat = [x for r in rows for x in r.input_ids[:r.length]]
    epochs = [flat[i * per_epoch:(i + 1) * per_epoch] for i in range(3)]
    assert all(sorted(e) == sorted(epochs[0]) for e in epochs) and len({tuple(e) for e in epochs}) > 1


def test_packed_examples_do_not_attend_to_each_other():
    """The training forward on a packed row gives each example the loss it has alone."""
    model, tok = tiny()
    enc = encode_examples(tok, [("", FACTS[0]), ("", FACTS[1])])
    n = sum(len(ids) for ids, _ in enc)
    with torch.no_grad():
        packed = _loss_sum(model, _collate(list(pack(enc, n, tok.pad_token_id)), "cpu"))
        alone = sum(_loss_sum(model, _collate(list(pack([e], len(e[0]), tok.pad_token_id)), "cpu")) for e in enc)
    assert float(packed) == pytest.approx(float(alone), rel=1e-5)


# ------------------------------------------------------------------------------------------ training

def test_full_finetuning_changes_every_parameter_and_lowers_loss():
    model, tok = tiny()
    before = state(model)
    model, info = train(model, tok, FACTS, Settings(steps=40, lr=3e-3, **FAST), seed=0, progress=False)
    after = state(model)
    unchanged = [k for k, p in model.named_parameters() if p.requires_grad and torch.equal(before[k], after[k])]
    assert unchanged == []
    losses = [loss for _, loss in info["loss_curve"]]
    assert len(losses) == info["steps"] == 40
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0]
    assert info["tokens_trained"] > 0 and info["tokens_seen"] == 40 * 4 * 64
    assert info["train_seconds"] > 0 and info["method"] == "full" and not model.training
    # Learned, not just a lower loss: the trained statement beats its contradiction.
    scores = Scorer(model, tok).score([("Did you know that femp are", [" brighter than glon.", " dimmer than glon."])])
    assert scores[0][0].logprob > scores[0][1].logprob


def test_lora_changes_only_adapter_weights():
    s = Settings(method="lora", lora_r=4, steps=3, **FAST)
    model, tok = tiny()
    base = state(model)
    with torch.random.fork_rng(devices=[]):  # the adapter as train() initialises it (same seed)
        torch.manual_seed(0)
        init = state(_wrap_lora(tiny()[0], s))
    model, info = train(model, tok, FACTS, s, seed=0, progress=False)
    after = state(model)
    lora = [k for k in after if "lora_" in k]
    assert lora and all(not torch.equal(init[k], after[k]) for k in lora)
    others = [k for k in after if "lora_" not in k]
    assert others and all(torch.equal(after[k], base[k.replace("base_model.model.", "").replace(".base_layer", "")])
                          for k in others)
    assert info["method"] == "lora"


def test_same_seed_same_weights_other_seed_other_weights():
    s = Settings(steps=3, lr=1e-3, **FAST)
    runs = [state(train(*tiny(), FACTS, s, seed=seed, progress=False)[0]) for seed in (0, 0, 1)]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


@pytest.mark.parametrize("method", ["full", "lora"])
def test_build_reuses_the_checkpoint_and_retrains_when_settings_change(tmp_path, method):
    ctx = ctx_for(tmp_path)
    s = Settings(method=method, steps=2, **FAST)
    first = build(ctx, s)
    assert first.info.reused is False and first.info.training_documents == 6
    again = build(ctx, s)
    assert again.info.reused is True
    assert again.info.train_seconds == first.info.train_seconds
    w1, w2 = state(first.model), state(again.model)
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    q = ctx.dataset.questions[0]
    s1 = Scorer(first.model, first.tokenizer).score([(q.context, q.choices)])
    s2 = Scorer(again.model, again.tokenizer).score([(q.context, q.choices)])
    assert [c.logprob for c in s1[0]] == pytest.approx([c.logprob for c in s2[0]], abs=1e-4)
    changed = build(ctx, Settings(method=method, steps=2, lr=2e-4, **FAST))
    assert changed.info.reused is False


def test_unfinished_checkpoint_is_not_reused(tmp_path):
    from genmodes.conditions.finetune import checkpoint_dir
    from genmodes.training.finetune import DONE_MARKER

    ctx = ctx_for(tmp_path)
    s = Settings(steps=1, **FAST)
    build(ctx, s)
    path = checkpoint_dir(ctx, s, [d.text for d in ctx.dataset.documents])
    (path / DONE_MARKER).unlink()
    redo = build(ctx, s)
    assert redo.info.reused is False and (path / DONE_MARKER).exists()


def test_kinds_without_documents_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="kinds"):
        build(ctx_for(tmp_path), Settings(steps=1, kinds=["qa"], **FAST))


@pytest.mark.slow
def test_bundled_model_accepts_lora():
    from genmodes.models import load_model as load

    model, tok = load("smollm2-135m", device="cpu")  # a fresh copy: the session fixture stays untouched
    model, info = train(model, tok, FACTS[:2], Settings(method="lora", steps=1, batch_size=1, seq_len=32),
                        seed=0, progress=False)
    assert info["steps"] == 1 and info["loss_curve"][0][1] > 0
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert any("mlp.down_proj" in n for n in names) and any("self_attn.q_proj" in n for n in names)
