"""Precision (issue 13): auto is fp32 on a CPU, bf16 is mixed precision under autocast."""

import pytest
import torch

from genmodes.errors import ModelError
from genmodes.models import load_model, precision, resolve_dtype
from genmodes.scoring import Scorer


def test_auto_is_fp32_and_bf16_is_opt_in():
    assert resolve_dtype("auto", None) == "fp32"
    assert resolve_dtype(None, "cpu") == "fp32"
    assert resolve_dtype("bf16", "cpu") == "bf16"


def test_unknown_dtype_is_one_clear_error():
    with pytest.raises(ModelError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8", "cpu")


def test_bf16_changes_products_not_weights_and_stays_close():
    model, tok = load_model("tiny-random", device="cpu")
    req = [("Alice is the mother of", [" Bob", " Carol", " Dan"])] * 2
    fp32 = Scorer(model, tok).score(req, progress=False)
    with precision("bf16", "cpu"):
        bf16 = Scorer(model, tok).score(req, progress=False)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    diffs = [abs(a.logprob - b.logprob) for s, r in zip(fp32, bf16) for a, b in zip(s, r)]
    assert max(diffs) > 0  # the products really ran in bf16
    assert max(diffs) < 0.5  # and stayed close to fp32 on a tiny model


def test_training_under_bf16_learns_as_fp32_does():
    """A cell trains inside one autocast region: a cached bf16 copy of the weights would freeze the
    forward pass at step 0 (the loss barely moved before cache_enabled=False)."""
    from genmodes.training import finetune as ft
    from genmodes.data.families import make_dataset

    torch.set_num_threads(1)
    ds = make_dataset("simple_reversals", 0, {"n_facts": 6, "articles_per_fact": 2})
    texts = [d.text for d in ds.documents]
    final = {}
    for dtype in ("fp32", "bf16"):
        model, tok = load_model("tiny-random", device="cpu")
        with precision(dtype, "cpu"):
            _, info = ft.train(model, tok, texts, ft.FinetuneSettings(steps=20, lr=3e-3, batch_size=4, seq_len=128),
                               seed=0, progress=False)
        curve = [loss for _, loss in info["loss_curve"]]
        final[dtype] = curve[-1]
        assert curve[-1] < curve[0] - 1.0, (dtype, curve)
    assert abs(final["bf16"] - final["fp32"]) < 0.1 * final["fp32"]
