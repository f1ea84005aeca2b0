"""Context stage ``in_context``: the whole training set in context before every question [P1, ICL
condition]. After model stage ``pretrained`` it is P1's in-context condition; after ``finetune`` the
model gets the documents both in its parameters and in its context.

The documents are concatenated with separators after an instruction to use them. When they exceed
the context budget, a seeded random subsample that fits is kept (the paper subsampled its largest
datasets 8x; performance degrades with context length) and the kept fraction is recorded. The
documents form the scorer's shared prefix, so they are encoded once per cell, not once per question.

The budget is measured on the rendered block as the scorer encodes it (separators and the joins
between documents tokenize differently from documents counted one by one), and by default leaves
room for the dataset's longest question + choice, so every scored row fits the model's window.
Questions none of whose supporting documents made it into the block are counted: they cannot be
answered from context, and the report gives accuracy without them beside the overall figure.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

from pydantic import Field

from genmodes.conditions.base import (DEFAULT_INSTRUCTION, DOC_SEPARATOR, END_OF_DOCUMENTS, Built, CellContext,
                                      Prepared, Settings as _Base, render_documents)
from genmodes.data.types import Document, Question
from genmodes.errors import ConfigError


class Settings(_Base):
    # Token budget of the document block; None = the model's context length minus `reserve`.
    budget_tokens: int | None = Field(default=None, gt=0)
    # Tokens left after the block for a question and one choice; None = the dataset's longest.
    reserve: int | None = Field(default=None, ge=0, description="tokens left for the question and a choice")
    # Keep only this fraction of documents (e.g. 0.125 for the paper's 8x) before fitting the budget.
    fraction: float | None = Field(default=None, gt=0, le=1)
    instruction: str = DEFAULT_INSTRUCTION
    kinds: list[str] | None = None  # document kinds to include (default: all)


def model_context_length(model: Any) -> int:
    n = getattr(model.config, "max_position_embeddings", None) or 2048
    return int(min(n, 32768))


def block_tokens(tokenizer: Any, docs: Sequence[Document], instruction: str = DEFAULT_INSTRUCTION) -> int:
    """Tokens of the rendered block as the scorer encodes it (start token included)."""
    from genmodes.scoring import encode_prefix

    return len(encode_prefix(tokenizer, render_documents(docs, instruction)))


def longest_row(tokenizer: Any, questions: Sequence[Question], lead: str = END_OF_DOCUMENTS) -> int:
    """The most tokens a question's context and one of its choices take after the prefix, as scored
    (``lead``: the block's trailing whitespace, which the scorer puts before each question)."""
    from genmodes.scoring import encode_pair

    longest = 0
    for q in questions:
        for c in q.choices:
            ctx, cont = encode_pair(tokenizer, lead + q.context, c)
            longest = max(longest, len(ctx) + len(cont))
    return longest


def select_documents(docs: list[Document], tokenizer: Any, budget: int, seed: int,
                     fraction: float | None = None, instruction: str = DEFAULT_INSTRUCTION) -> list[Document]:
    """The documents to place in context: all of them if they fit, else a seeded random subset that
    does, in their original order. The rendered block is at most ``budget`` tokens."""
    order = list(range(len(docs)))
    random.Random(f"in_context-{seed}").shuffle(order)
    if fraction is not None:
        order = order[: max(1, round(len(docs) * fraction))] if docs else []
    if not order:
        return []
    if block_tokens(tokenizer, [docs[i] for i in sorted(order)], instruction) <= budget:
        return [docs[i] for i in sorted(order)]
    # Estimate each document's cost with the separator before it, as it sits in the block (a byte-level
    # BPE splits "\n\nThe" into three tokens where "\n\n" and "The" alone count two), fill greedily,
    # then measure the block itself and drop the last additions until it fits.
    costs = tokenizer([DOC_SEPARATOR + docs[i].text.strip() for i in order], add_special_tokens=False).input_ids
    used = block_tokens(tokenizer, [], instruction) + len(
        tokenizer(instruction, add_special_tokens=False).input_ids) + len(
        tokenizer(END_OF_DOCUMENTS, add_special_tokens=False).input_ids)
    keep: list[int] = []
    for i, ids in zip(order, costs):
        if used + len(ids) > budget:
            continue
        used += len(ids)
        keep.append(i)
    while keep and block_tokens(tokenizer, [docs[i] for i in sorted(keep)], instruction) > budget:
        keep.pop()
    return [docs[i] for i in sorted(keep)]


def apply(ctx: CellContext, built: Built, settings: Settings) -> Prepared:
    model, tok = built.model, built.tokenizer
    docs = [d for d in ctx.dataset.documents if settings.kinds is None or d.kind in settings.kinds]
    window = model_context_length(model)
    longest = longest_row(tok, ctx.dataset.questions)
    reserve = longest if settings.reserve is None else settings.reserve
    budget = settings.budget_tokens or window - reserve
    if budget <= 0:
        raise ConfigError(f"in_context: the longest question + choice ({reserve} tokens) leaves no room for "
                          f"documents in the model's {window}-token window")
    kept = select_documents(docs, tok, budget, ctx.seed, settings.fraction, settings.instruction)
    prefix = render_documents(kept, settings.instruction)
    n_tokens = block_tokens(tok, kept, settings.instruction) if kept else 0
    if n_tokens + longest > window:
        raise ConfigError(f"in_context: the document block ({n_tokens} tokens) plus the dataset's longest "
                          f"question + choice ({longest} tokens) exceed the model's {window}-token window by "
                          f"{n_tokens + longest - window} tokens; lower budget_tokens or raise reserve")
    kept_ids = {d.id for d in kept}
    with_support = [q for q in ctx.dataset.questions if q.support]
    no_support = [q.id for q in with_support if not kept_ids.intersection(q.support)]
    return Prepared(model, tok, prefix=prefix, info={
        "documents": len(docs), "documents_in_context": len(kept),
        "kept_fraction": len(kept) / len(docs) if docs else 1.0, "prefix_tokens": n_tokens,
        "budget_tokens": budget, "window_tokens": window, "longest_question_choice_tokens": longest,
        # Questions whose support is listed but none of it is in the block; None: no question lists any.
        "questions_without_support": len(no_support) if with_support else None,
        "questions_without_support_ids": no_support})
