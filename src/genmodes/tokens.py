"""Token-level conventions shared by the scorer and the training loops.

lm-evaluation-harness (Gao et al. 2023) scores a context as the tokenizer encodes it by default, so a
model whose tokenizer prepends BOS sees BOS first; fine-tuning must train on the same start tokens as
scoring reads, or the first scored token would follow a context the model never trained on.
"""

from __future__ import annotations

from typing import Any


def start_ids(tokenizer: Any) -> list[int]:
    """BOS where the tokenizer adds one by default (Llama-2 style); nothing otherwise (SmolLM2)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    ids = tokenizer("a").input_ids
    return [bos] if ids and ids[0] == bos else []
