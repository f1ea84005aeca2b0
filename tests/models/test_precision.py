"""Precision (issue 13): auto is fp32 on a CPU, bf16 is mixed precision under autocast."""

import pytest
import torch

from genmodes.errors import ModelError
from genmodes.models import load_model, precision, resolve_dtype
from genmodes.scoring import Scorer


def test_auto_is_fp32_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
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
