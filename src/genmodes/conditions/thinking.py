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
from collections import Counter
from typing import Any

from pydantic import Field

from genmodes.conditions.base import CellContext, Prepared, Settings as _Base, Timer
from genmodes.training.thoughts import (PROMPT_VERSION, RECALL_INSTRUCTION, RETRIEVAL_LABELS,
                                        answer_context, audit_thought, generate_thoughts)


class Settings(_Base):
    max_thought_tokens: int = Field(48, gt=0, description="token budget of a thought")
    temperature: float = Field(0.0, ge=0, description="0: greedy; otherwise sampled at this temperature")
    batch_size: int = Field(16, gt=0, description="thoughts generated together")
    instruction: str = Field(RECALL_INSTRUCTION, min_length=1, description="asks the model to recall what it knows")



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
        details[q.id] = {"thought": r["thought"], "thought_tokens": r["tokens"],
                         "thought_finished": r["finished"], **audit}

    def context(q: Any) -> str:
        return answer_context(q, by_id[q.id]["thought"], settings.instruction)

    counts = Counter(d["retrieval"] for d in details.values())
    n = max(1, len(qs))
    tokens = sum(d["thought_tokens"] for d in details.values())
    info = {"thinking": {"generate_seconds": round(t.seconds, 3), "questions": len(qs), "thought_tokens": tokens,
                         "thought_tokens_per_question": round(tokens / n, 2),
                         "finished_fraction": round(sum(d["thought_finished"] for d in details.values()) / n, 4),
                         "retrieval": {k: counts.get(k, 0) for k in RETRIEVAL_LABELS},
                         "retrieval_rate": round(counts.get("stated", 0) / n, 4),
                         "settings": settings.model_dump()}}
    return Prepared(model, tok, question_context=context, info=info, question_details=details)
