"""The tiled LM-head loss equals cross-entropy over the full logits, in value and in every gradient."""

from __future__ import annotations

import copy

import pytest
import torch

from genmodes.models import tiny_random
from genmodes.models.lm_loss import IGNORE, _parts, loss_sum


def _full(model, ids, pos, labels):
    logits = model(input_ids=ids, position_ids=pos, use_cache=False).logits
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                             ignore_index=IGNORE, reduction="sum")


def _batch(vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (3, 17), generator=g)
    pos = torch.cat([torch.arange(9), torch.arange(8)]).repeat(3, 1)  # two packed examples per row
    labels = ids.clone()
    labels[:, :4] = IGNORE  # a context part with no loss
    labels[2, 9] = IGNORE  # an example's first token
    return ids, pos, labels


def _grads(model, fn, batch):
    model.zero_grad(set_to_none=True)
    loss = fn(model, *batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _compare(model, batch, chunk):
    ref_loss, ref = _grads(model, _full, batch)
    loss, got = _grads(model, lambda m, *b: loss_sum(m, *b, chunk=chunk), batch)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    assert got.keys() == ref.keys() and ref
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("chunk", [1, 5, 1024])
def test_full_finetune_loss_and_gradients_match_full_logits(chunk):
    model, _ = tiny_random(seed=0)
    assert _parts(model) is not None  # the tiled path is the one under test
    _compare(model, _batch(model.config.vocab_size), chunk)


def test_lora_head_frozen_matches_full_logits():
    from peft import LoraConfig, get_peft_model

    model, _ = tiny_random(seed=1)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.02)  # B starts at zero: make the adapters matter
    assert _parts(model) is not None
    _compare(model, _batch(model.config.vocab_size), 4)


def test_soft_capped_head_matches_full_logits():
    from transformers import Gemma3TextConfig, Gemma3ForCausalLM

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                           final_logit_softcapping=3.0, sliding_window=8)
    model = Gemma3ForCausalLM(cfg).float()
    assert _parts(model) is not None
    _compare(model, _batch(cfg.vocab_size), 7)


def test_all_positions_unlabelled_gives_zero_loss_and_zero_gradients():
    model, _ = tiny_random(seed=0)
    ids, pos, labels = _batch(model.config.vocab_size)
    labels[:] = IGNORE
    loss, grads = _grads(model, loss_sum, (ids, pos, labels))
    assert float(loss) == 0.0
    assert all(float(g.abs().max()) == 0.0 for g in grads.values())


def test_head_with_bias_falls_back_to_full_logits():
    model, _ = tiny_random(seed=0)
    model = copy.deepcopy(model)
    head = model.get_output_embeddings()
    head.bias = torch.nn.Parameter(torch.randn(head.weight.shape[0]))
    assert _parts(model) is None
    batch = _batch(model.config.vocab_size)
    torch.testing.assert_close(loss_sum(model, *batch), _full(model, *batch))
