"""Context stage ``in_context``: the whole training set in context before every question [P1, ICL
condition]. After model stage ``pretrained`` it is P1's in-context condition; after ``finetune`` the
model gets the documents both in its parameters and in its context.

The documents are concatenated with separators after an instruction to use them. When they exceed
the context budget, a seeded random subsample that fits is kept (the paper subsampled its largest
datasets 8x; performance degrades with context length) and the kept fraction is recorded. The
documents form the scorer's shared prefix, so they are encoded once per cell, not once per question.

The budget is measured on the rendered block as the scorer encodes it (separators and the joins
between documents tokenize differently from documents counted one by one), and by default leaves
room for the dataset's longest question + choice, so every scored row fits the model's window. A
``budget_tokens`` above that (a sweep run on models of different windows) is clipped to it, with one
line on stderr and ``budget_clipped`` in the cell's info.
Questions none of whose supporting documents made it into the block are counted: they cannot be
answered from context, and the report gives accuracy without them beside the overall figure.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from pydantic import Field

from genmodes.conditions.base import (DEFAULT_INSTRUCTION, DOC_SEPARATOR, END_OF_DOCUMENTS, Built, CellContext,
                                      ContextStageInfo, Prepared, Settings as _Base, StageCost, render_documents)
from genmodes.data.types import Document, Question
from genmodes.errors import ConfigError

# its cells test the use of documents in context: the calibration ladder gates them (genmodes.experiments.gates)
READS_DOCUMENTS = True


class Settings(_Base):
    # Token budget of the document block; None = the model's context length minus `reserve`.
    budget_tokens: int | None = Field(default=None, gt=0)
    # Tokens left after the block for a question and one choice; None = the dataset's longest.
    reserve: int | None = Field(default=None, ge=0, description="tokens left for the question and a choice")
    # Keep only this fraction of documents (e.g. 0.125 for the paper's 8x) before fitting the budget.
    fraction: float | None = Field(default=None, gt=0, le=1)
    instruction: str = DEFAULT_INSTRUCTION
    kinds: list[str] | None = None  # document kinds to include (default: all)
    # Put this many of each scored question's supporting documents (a seeded choice) in the block
    # first, then fill the budget with other documents: the context grows with distractors while every
    # question stays answerable, so a budget sweep measures length, not coverage. None: all at random.
    support_per_question: int | None = Field(default=None, gt=0)


class Info(ContextStageInfo):
    documents: int | None = None  # training documents of the kinds in context
    documents_in_context: int | None = None
    kept_fraction: float | None = None
    prefix_tokens: int | None = None
    budget_tokens: int | None = None  # as used (clipped to the window)
    budget_tokens_requested: int | None = None
    budget_clipped: bool | None = None
    window_tokens: int | None = None
    longest_question_choice_tokens: int | None = None
    # questions whose support is listed but none of it is in the block; None: no question lists any
    questions_without_support: int | None = None
    questions_without_support_ids: list[str] = Field(default_factory=list)

    def compute_columns(self) -> dict[str, float | None]:
        return {"kept fraction": self.kept_fraction}

    def drilldown_note(self) -> str | None:
        if self.documents_in_context is None:
            return None
        return (f"shared context: {self.documents_in_context} of {self.documents if self.documents is not None else '?'} "
                "training documents before every question")


def estimate(settings: Settings, cost: Any) -> StageCost:
    """The document block the cell will place (chosen here as :func:`apply` chooses it) as the
    scorer's shared prefix: encoded once, then read by every packed row of questions, each token of
    which attends to the whole block."""
    block = choose_block(cost.tokenizer, cost.dataset.documents, cost.dataset.questions, cost.window, settings,
                         cost.seed)
    return StageCost(score_s=cost.scoring(prefix=block.prefix))


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
                     fraction: float | None = None, instruction: str = DEFAULT_INSTRUCTION,
                     required: Sequence[int] = ()) -> list[Document]:
    """The documents to place in context: all of them if they fit, else a seeded random subset that
    does, in their original order. The rendered block is at most ``budget`` tokens. ``required``
    (indices into ``docs``) are always kept (the rest fill what they leave); raises
    :class:`ConfigError` if they alone exceed the budget."""
    must = list(dict.fromkeys(required))
    if must and block_tokens(tokenizer, [docs[i] for i in sorted(must)], instruction) > budget:
        raise ConfigError(f"in_context: the {len(must)} supporting documents of the scored questions take "
                          f"{block_tokens(tokenizer, [docs[i] for i in sorted(must)], instruction)} tokens, more "
                          f"than the budget of {budget}; raise budget_tokens, or lower max_per_split or "
                          "support_per_question")
    order = list(range(len(docs)))
    random.Random(f"in_context-{seed}").shuffle(order)
    if fraction is not None:
        order = order[: max(1, round(len(docs) * fraction))] if docs else []
    if must:
        taken = set(must)
        order = must + [i for i in order if i not in taken]
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
    for j, (i, ids) in enumerate(zip(order, costs)):
        if used + len(ids) > budget and j >= len(must):
            continue
        used += len(ids)
        keep.append(i)
    while len(keep) > len(must) and block_tokens(tokenizer, [docs[i] for i in sorted(keep)], instruction) > budget:
        keep.pop()
    return [docs[i] for i in sorted(keep)]


@dataclass
class Block:
    """The documents an in-context cell places before every question, and how they were chosen."""

    documents: int  # of the kinds in context
    kept: list[Document]
    prefix: str
    tokens: int
    budget: int
    clipped: bool
    longest: int  # the dataset's longest question + choice, as scored after the block


def choose_block(tok: Any, documents: Sequence[Document], questions: Sequence[Question], window: int,
                 settings: Settings, seed: int) -> Block:
    """The block for a model of ``window`` tokens: the documents of ``settings.kinds`` that fit the
    budget (a seeded subset where they do not; each question's supporting documents first with
    ``support_per_question``). :class:`ConfigError` where nothing fits."""
    docs = [d for d in documents if settings.kinds is None or d.kind in settings.kinds]
    longest = longest_row(tok, questions)
    reserve = longest if settings.reserve is None else settings.reserve
    budget = settings.budget_tokens or window - reserve
    clipped = settings.budget_tokens is not None and budget > window - reserve
    if clipped:
        budget = window - reserve
    if budget <= 0:
        raise ConfigError(f"in_context: the longest question + choice ({reserve} tokens) leaves no room for "
                          f"documents in the model's {window}-token window")
    required: list[int] = []
    if settings.support_per_question:
        index = {d.id: i for i, d in enumerate(docs)}
        rng = random.Random(f"in_context-support-{seed}")
        for q in questions:
            have = [index[s] for s in q.support if s in index]
            # questions about one person share their documents: count those already placed
            placed = set(required)
            more = settings.support_per_question - sum(i in placed for i in have)
            free = [i for i in have if i not in placed]
            required += rng.sample(free, max(0, min(more, len(free))))
    kept = select_documents(docs, tok, budget, seed, settings.fraction, settings.instruction, required)
    n_tokens = block_tokens(tok, kept, settings.instruction) if kept else 0
    if n_tokens + longest > window:
        raise ConfigError(f"in_context: the document block ({n_tokens} tokens) plus the dataset's longest "
                          f"question + choice ({longest} tokens) exceed the model's {window}-token window by "
                          f"{n_tokens + longest - window} tokens; lower budget_tokens or raise reserve")
    return Block(len(docs), kept, render_documents(kept, settings.instruction), n_tokens, budget, clipped, longest)


def apply(ctx: CellContext, built: Built, settings: Settings) -> Prepared:
    model, tok = built.model, built.tokenizer
    window = model_context_length(model)
    block = choose_block(tok, ctx.dataset.documents, ctx.dataset.questions, window, settings, ctx.seed)
    if block.clipped:
        # A budget sweep runs one config on models of different windows (SmolLM2 8k, Gemma 3 32k):
        # past a model's window its cell is the window's cell, said once here and recorded in info.
        print(f"genmodes: in_context: budget_tokens {settings.budget_tokens} does not fit {ctx.model_spec}'s "
              f"{window}-token window with {block.longest if settings.reserve is None else settings.reserve} "
              f"tokens for the question; clipped to {block.budget}", file=sys.stderr, flush=True)
    kept_ids = {d.id for d in block.kept}
    with_support = [q for q in ctx.dataset.questions if q.support]
    no_support = [q.id for q in with_support if not kept_ids.intersection(q.support)]
    return Prepared(model, tok, prefix=block.prefix, info=Info(
        documents=block.documents, documents_in_context=len(block.kept),
        kept_fraction=len(block.kept) / block.documents if block.documents else 1.0,
        prefix_tokens=block.tokens, budget_tokens=block.budget, budget_tokens_requested=settings.budget_tokens,
        budget_clipped=block.clipped, window_tokens=window, longest_question_choice_tokens=block.longest,
        questions_without_support=len(no_support) if with_support else None,
        questions_without_support_ids=no_support))


# ------------------------------------------------------------------------------------------ report

def report_sections(view: Any) -> list[tuple]:
    return _support_section(view) + _length_curve(view)


def _support_section(view: Any) -> list[tuple]:
    """Per cell: documents kept, questions left without support, accuracy with and without them."""
    body = []
    for cell, info in view.cells:
        rows = view.rows(cell)
        gone = set(info.questions_without_support_ids)
        kept = [r for r in rows if r.question_id not in gone]
        acc = view.rows_accuracy
        n_gone = info.questions_without_support
        body.append(view.label(cell) + [f"{info.documents_in_context} of {info.documents}",
                                        view.DASH if n_gone is None else str(n_gone),
                                        acc(rows), acc(kept) if n_gone is not None else view.DASH])
    if not body:
        return []
    return [("h", 2, "In context: documents kept and questions left without support"),
            ("p", "When the documents exceed the model's window, a seeded subset is kept. A question none of whose "
                  "supporting documents was kept cannot be answered from context; accuracy on the questions whose "
                  "support was in context excludes those. Accuracies with their 95% interval over questions "
                  "(see Statistics)."),
            ("table", ["dataset", "condition", "seed", "documents kept", "questions without support",
                       "accuracy", "accuracy, support in context"], body)]


def length_points(view: Any) -> dict[str, list[dict[str, Any]]]:
    """Per dataset with a sweep (two or more in_context conditions for some model): one point per
    (model, condition), seeds pooled, sorted by model then context length [P1: in-context learning
    degrades with context length, so the largest datasets were subsampled 8x]."""
    by_key: dict[tuple[str, str, str], list[Any]] = {}
    for cell, info in view.cells:
        by_key.setdefault((cell.dataset, cell.model, cell.condition), []).append((cell, info))
    out: dict[str, list[dict[str, Any]]] = {}
    for (ds, model, cond), cs in by_key.items():
        rows = [r for cell, _ in cs for r in view.rows(cell)]
        if not rows:
            continue
        first = cs[0][1]
        out.setdefault(ds, []).append({
            "model": model, "condition": cond, "tokens": sum(r.context_tokens for r in rows) / len(rows),
            "splits": {s["split"]: s for s in view.summarize(rows)},
            "requested": first.budget_tokens_requested, "budget": first.budget_tokens,
            "clipped": any(i.budget_clipped for _, i in cs), "window": first.window_tokens,
            "documents": first.documents_in_context, "of": first.documents,
            "without_support": first.questions_without_support, "chance": [r.chance for r in rows]})
    sweeps = {}
    for ds, pts in out.items():
        per_model: dict[str, int] = {}
        for p in pts:
            per_model[p["model"]] = per_model.get(p["model"], 0) + 1
        if max(per_model.values()) >= 2:
            sweeps[ds] = sorted(pts, key=lambda p: (list(per_model).index(p["model"]), p["tokens"]))
    return sweeps


def _length_curve(view: Any) -> list[tuple]:
    """A budget sweep's table and figure: x the context scored per question, y the accuracy, one line per
    model and split, chance dashed."""
    sweeps = length_points(view)
    if not sweeps:
        return []
    dash = view.DASH
    out: list[tuple] = [
        ("h", 2, "In-context accuracy against context length"),
        ("p", "Each in_context condition of a dataset is one point per model: x is the context actually scored "
              "per question (document block plus question, mean of the rows' context_tokens), y the accuracy, "
              "one line per model and split, with its 95% interval over questions (see Statistics); chance "
              "dashed. Budgets above a model's window are clipped to it "
              "(marked 'clipped'). With support_per_question, every question's supporting document is in the "
              "block and the rest is distractors, so the curve measures length, not coverage.")]
    for ds, pts in sweeps.items():
        splits = list(dict.fromkeys(s for p in pts for s in p["splits"]))
        headers = (["model", "condition", "budget requested", "budget used", "documents in context",
                    "context tokens / question"] + [f"{s}" for s in splits] + ["questions without support"])
        body = []
        for p in pts:
            used = dash if p["budget"] is None else f"{p['budget']:,}" + (" (clipped)" if p["clipped"] else "")
            body.append([p["model"] or dash, p["condition"],
                         dash if p["requested"] is None else f"{p['requested']:,}", used,
                         dash if p["documents"] is None else f"{p['documents']} of {p['of']}",
                         f"{p['tokens']:,.0f}"]
                        + [view.accuracy(p["splits"][s]) if s in p["splits"] else dash for s in splits]
                        + [dash if p["without_support"] is None else str(p["without_support"])])
        out += [("h", 3, ds), ("table", headers, body)]
        lines = []
        for m in dict.fromkeys(p["model"] for p in pts):
            for s in splits:
                line = [(p["tokens"], p["splits"][s]["accuracy"], p["splits"][s]["ci_low"], p["splits"][s]["ci_high"])
                        for p in pts if p["model"] == m and s in p["splits"]]
                if line:
                    lines.append((f"{m} · {s}" if m else s, line))
        chances = [x for p in pts for x in p["chance"]]
        path = view.figures.context_curve(f"{ds}: in-context accuracy vs context length", lines,
                                          sum(chances) / len(chances) if chances else None,
                                          view.figure_path(f"context_{ds}"))
        out.append(("img", path, f"in-context accuracy against context length on {ds}"))
    return out
