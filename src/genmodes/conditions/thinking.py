"""``thinking`` context stage: the model writes a thought before the choices are scored [P3].

P3 (arXiv 2604.01430) lets a model that learned knowledge in its parameters think before it answers,
so that it can bring that knowledge back into its context. Composed with any model stage: ``finetune
+ thinking`` is the prompted-thinking baseline, ``rl + thinking`` the RL-trained thinker. For each
question the model continues a prompt that asks it to recall what it knows (greedy or sampled, a
token budget, stopping at the first line break); the one scorer then scores the choices after
question + thought + answer cue (:mod:`genmodes.training.thoughts`). Each thought and its
implicit-retrieval audit go into that question's results row (its ``details``); the cell's info
has the test-time compute (tokens generated per question) and the retrieval rate.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from pydantic import Field

from genmodes.conditions.base import CellContext, ContextStageInfo, Info as _Record, Prepared, Settings as _Base
from genmodes.conditions.base import StageCheck, StageCost, Timer
from genmodes.training.thoughts import (PROMPT_VERSION, RECALL_INSTRUCTION, RETRIEVAL_LABELS,
                                        answer_context, audit_thought, generate_thoughts)

LABELS = ("stated", "partial", "false", "none")


class Settings(_Base):
    max_thought_tokens: int = Field(48, gt=0, description="token budget of a thought")
    temperature: float = Field(0.0, ge=0, description="0: greedy; otherwise sampled at this temperature")
    batch_size: int = Field(16, gt=0, description="thoughts generated together")
    instruction: str = Field(RECALL_INSTRUCTION, min_length=1, description="asks the model to recall what it knows")


class Thinking(_Record):
    """The cell's thoughts: test-time compute and the implicit-retrieval audit."""

    generate_seconds: float | None = None
    questions: int | None = None
    thought_tokens: int | None = None
    thought_tokens_per_question: float | None = None
    finished_fraction: float | None = None
    retrieval: dict[str, int] = Field(default_factory=dict)  # audit label -> thoughts
    retrieval_rate: float | None = None  # share of thoughts that state every premise the question needs
    settings: dict[str, Any] = Field(default_factory=dict)


class Info(ContextStageInfo):
    thinking: Thinking | None = None


class Details(_Record):
    """Per question, in its results row: the thought and its audit (:func:`audit_thought`)."""

    thought: str | None = None
    thought_tokens: int | None = None
    thought_finished: bool | None = None
    retrieval: str | None = None  # stated / partial / false / none
    verifiable: bool = True
    statements: int | None = None  # facts the thought states
    false: int | None = None  # of them, facts the world does not hold
    premises_stated: int | None = None
    premises: int | None = None


def validate(settings: Settings, check: StageCheck) -> None:
    """A thought fits the model's window."""
    check.check_window("max_thought_tokens", settings.max_thought_tokens)


def estimate(settings: Settings, cost: Any) -> StageCost:
    """A thought per question (decoding timed at the batch size), then its tokens before every choice."""
    qs = cost.dataset.questions
    batches = math.ceil(len(qs) / settings.batch_size)
    return StageCost(test_s=cost.generation(settings.batch_size, batches, settings.max_thought_tokens)
                     + sum(len(q.choices) for q in qs) * settings.max_thought_tokens * cost.score_rate)


def apply(ctx: CellContext, built: Any, settings: Settings) -> Prepared:
    model, tok = built.model, built.tokenizer
    qs = list(ctx.dataset.questions)
    # the thoughts are a cell's own work: kept in its folder, so a resumed cell does not regenerate them
    path = ctx.workdir / "thoughts.jsonl"
    key = {"settings": settings.model_dump(), "prompt_version": PROMPT_VERSION, "seed": ctx.seed,
           "questions": [q.id for q in qs]}
    cached = None
    if path.exists():
        lines = path.read_text(encoding="utf-8").splitlines()
        if lines and json.loads(lines[0]) == key and len(lines) == len(qs) + 1:
            cached = [json.loads(x) for x in lines[1:]]
    with Timer() as t:
        if cached is None:
            thoughts = generate_thoughts(model, tok, qs, max_tokens=settings.max_thought_tokens,
                                         temperature=settings.temperature, seed=ctx.seed,
                                         batch_size=settings.batch_size, instruction=settings.instruction,
                                         progress=ctx.progress, desc=f"thinking {ctx.dataset_name}")
            cached = [{"id": q.id, "thought": th.text, "tokens": th.tokens, "finished": th.finished}
                      for q, th in zip(qs, thoughts)]
            from genmodes.io import atomic_write

            atomic_write(path, "\n".join(json.dumps(x, ensure_ascii=False) for x in [key, *cached]) + "\n")
    by_id = {r["id"]: r for r in cached}
    knowledge = set(ctx.dataset.knowledge)
    details: dict[str, dict[str, Any]] = {}
    for q in qs:
        r = by_id[q.id]
        audit = audit_thought(ctx.dataset, q, r["thought"], knowledge=knowledge)
        details[q.id] = Details(thought=r["thought"], thought_tokens=r["tokens"], thought_finished=r["finished"],
                                **audit).model_dump()

    def context(q: Any) -> str:
        return answer_context(q, by_id[q.id]["thought"], settings.instruction)

    counts = Counter(d["retrieval"] for d in details.values())
    n = max(1, len(qs))
    tokens = sum(d["thought_tokens"] for d in details.values())
    info = Info(thinking=Thinking(
        generate_seconds=round(t.seconds, 3), questions=len(qs), thought_tokens=tokens,
        thought_tokens_per_question=round(tokens / n, 2),
        finished_fraction=round(sum(d["thought_finished"] for d in details.values()) / n, 4),
        retrieval={k: counts.get(k, 0) for k in RETRIEVAL_LABELS}, retrieval_rate=round(counts.get("stated", 0) / n, 4),
        settings=settings.model_dump()))
    return Prepared(model, tok, question_context=context, info=info, question_details=details)


# ------------------------------------------------------------------------------------------ report

def report_sections(view: Any, per_condition: int = 2) -> list[tuple]:
    """Example thoughts (right and wrong), the implicit-retrieval audit with accuracy split by it, and
    the test-time compute the thoughts add [P3: does thinking help by retrieving?]."""
    rows = [(r, view.details(r, Details)) for c, _ in view.cells for r in view.rows(c)]
    rows = [(r, d) for r, d in rows if isinstance(d.thought, str)]
    return _examples(view, rows, per_condition) + _audit(view, rows) + _compute(view)


def _examples(view: Any, rows: list[tuple[Any, Details]], per_condition: int) -> list[tuple]:
    if not rows:
        return []
    items = []
    for cond in view.condition_order:
        rs = [(r, d) for r, d in rows if r.condition == cond]
        for want in (True, False):
            for r, d in [(r, d) for r, d in rs if r.correct == want][:per_condition]:
                chosen = r.scores[r.chosen].choice if r.scores else "?"
                items.append(f"{cond} · {r.dataset} · {r.split} · {'correct' if want else 'wrong'} "
                             f"({d.retrieval or view.DASH}): `{r.context}` thought: "
                             f"“{d.thought or '(empty)'}” chose `{chosen.strip()}`")
    return [("h", 2, "Example thoughts"), ("list", items)]


def _audit(view: Any, rows: list[tuple[Any, Details]]) -> list[tuple]:
    rows = [(r, d) for r, d in rows if d.verifiable]
    if not rows:
        return []
    groups: dict[tuple[str, str, str], list[tuple[Any, Details]]] = {}
    for r, d in rows:
        groups.setdefault((r.condition, r.dataset, r.split), []).append((r, d))
    c_order = {c: i for i, c in enumerate(view.condition_order)}
    d_order = {d: i for i, d in enumerate(view.dataset_order)}
    body = []
    for key in sorted(groups, key=lambda k: (c_order.get(k[0], 99), d_order.get(k[1], 99), k[2])):
        rs = groups[key]
        n = len(rs)
        share = [sum(d.retrieval == lab for _, d in rs) / n for lab in LABELS]
        st = [r for r, d in rs if d.retrieval == "stated"]
        ns = [r for r, d in rs if d.retrieval != "stated"]

        acc = view.rows_accuracy
        body.append([*key, str(n), *map(view.pct, share), acc(st), acc(ns)])
    return [("h", 2, "Implicit retrieval: did the thought state the facts the question needs?"),
            ("p", "Each thought is read with the dataset family's statement parser: `stated` (every premise of the "
                  "question), `partial` (some), `false` (a fact the world does not hold), `none` (neither). "
                  "Accuracy is split by whether the thought stated the premises."),
            ("table", ["condition", "dataset", "split", "n", *LABELS, "accuracy, stated", "accuracy, not stated"],
             body)]


def _compute(view: Any) -> list[tuple]:
    body = [[c.dataset, c.condition, str(i.thinking.thought_tokens_per_question),
             view.DASH if i.thinking.generate_seconds is None else f"{i.thinking.generate_seconds:.0f}"]
            for c, i in view.cells if i.thinking is not None]
    if not body:
        return []
    return [("h", 2, "Thinking compute: test time"),
            ("p", "Thinking adds test-time compute: a thought generated before each question's choices are scored."),
            ("table", ["dataset", "condition", "thought tokens / question", "thinking seconds"], body)]
