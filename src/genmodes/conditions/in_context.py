"""``in_context``: the whole training set in context before every question [P1, ICL condition].

The documents are concatenated with separators after an instruction to use them. When they exceed
the context budget, a seeded random subsample that fits is kept (the paper subsampled its largest
datasets 8x; performance degrades with context length) and the kept fraction is recorded. The
documents form the scorer's shared prefix, so they are encoded once per cell, not once per question.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import Field

from genmodes.conditions.base import (DEFAULT_INSTRUCTION, CellContext, Prepared, Settings as _Base,
                                      render_documents)
from genmodes.data.types import Document


class Settings(_Base):
    # Token budget of the document block; None = the model's context length minus `reserve`.
    budget_tokens: int | None = Field(default=None, gt=0)
    reserve: int = Field(default=256, ge=0, description="tokens left for the question and choices")
    # Keep only this fraction of documents (e.g. 0.125 for the paper's 8x) before fitting the budget.
    fraction: float | None = Field(default=None, gt=0, le=1)
    instruction: str = DEFAULT_INSTRUCTION
    kinds: list[str] | None = None  # document kinds to include (default: all)


def model_context_length(model: Any) -> int:
    n = getattr(model.config, "max_position_embeddings", None) or 2048
    return int(min(n, 32768))


def select_documents(docs: list[Document], tokenizer: Any, budget: int, seed: int,
                     fraction: float | None = None, instruction: str = DEFAULT_INSTRUCTION) -> list[Document]:
    """The documents to place in context: all of them if they fit, else a seeded random subset that
    does, in their original order."""
    order = list(range(len(docs)))
    random.Random(f"in_context-{seed}").shuffle(order)
    if fraction is not None:
        order = order[: max(1, round(len(docs) * fraction))] if docs else []
    lengths = tokenizer([docs[i].text.strip() for i in order], add_special_tokens=False).input_ids if order else []
    sep = len(tokenizer("\n\n", add_special_tokens=False).input_ids)
    used = len(tokenizer(instruction, add_special_tokens=False).input_ids) + sep
    keep = []
    for i, ids in zip(order, lengths):
        if used + len(ids) + sep > budget:
            continue
        used += len(ids) + sep
        keep.append(i)
    return [docs[i] for i in sorted(keep)]


def prepare(ctx: CellContext, settings: Settings) -> Prepared:
    model, tok = ctx.load_model()
    docs = [d for d in ctx.dataset.documents if settings.kinds is None or d.kind in settings.kinds]
    budget = settings.budget_tokens or max(1, model_context_length(model) - settings.reserve)
    kept = select_documents(docs, tok, budget, ctx.seed, settings.fraction, settings.instruction)
    prefix = render_documents(kept, settings.instruction)
    n_tokens = len(tok(prefix, add_special_tokens=False).input_ids) if prefix else 0
    return Prepared(model, tok, prefix=prefix, info={
        "train_seconds": 0.0, "documents": len(docs), "documents_in_context": len(kept),
        "kept_fraction": len(kept) / len(docs) if docs else 1.0, "prefix_tokens": n_tokens,
        "budget_tokens": budget})
