"""Expert iteration: RL from correctness by rejection sampling and fine-tuning [P3; STaR, ReST-EM].

STaR (Zelikman et al. 2022, "STaR: Bootstrapping reasoning with reasoning") and ReST-EM (Singh et al.
2023, "Beyond human data: scaling self-training for problem-solving with language models") train a
model on its own sampled rationales that led to a right answer: sample k thoughts per question, keep
the thoughts after which the answer is right, fine-tune on them, repeat for a few rounds. It is the
expectation-maximisation view of RL with a 0/1 reward (ReST-EM), and on a CPU it is cheap and stable
where GRPO's groups of 0/1 rewards mostly carry no signal: a round costs one batched generation, one
scoring pass and a short fine-tune.

"Right" is the one scorer's verdict (:func:`genmodes.training.thoughts.verdicts`), as at test time:
the question's choices scored after question + thought + answer cue. The verdict is given by
``answerer``: the policy itself, or a frozen copy of the model RL started from, so that a rising
reward means better thoughts, not an answerer that learned to guess (measured with GRPO on the
policy's own weights: the empty thought rose as much as the thought did). The fine-tune trains on the
thought tokens only (the prompt is context), each kept thought ending with end-of-text (the stop rule
of a thought).

Every round records what it sampled (the mean reward: accuracy after a sampled thought), what it kept,
the sampled thoughts' length and, where ``audit`` is given, their implicit-retrieval rate (the share
stating every premise the question needs): the curves say whether the kept thoughts were the ones
that retrieve.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from genmodes.data.types import Question
from genmodes.errors import ConfigError
from genmodes.timing import Timer
from genmodes.training.thoughts import Verdict, generate_thoughts, think_prompt, verdicts

Keep = Literal["correct", "best"]


class ExpertIterationSettings(BaseModel):
    """A run of expert iteration (every field changes the trained weights)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rounds: int = Field(2, gt=0, le=100, description="sample, filter, fine-tune: this many times")
    samples: int = Field(4, gt=0, le=256, description="thoughts sampled per question and round")
    keep: Keep = Field("correct", description="correct: every distinct thought after which the answer is right "
                       "(ReST-EM); best: per question, the right one with the highest probability of the answer")
    lr: float = Field(1e-4, gt=0, description="learning rate of each round's fine-tune")
    epochs: float = Field(2.0, gt=0, le=100, description="epochs of each round's fine-tune over the kept thoughts")
    batch_size: int = Field(8, gt=0, description="packed sequences per optimizer step")
    seq_len: int = Field(256, ge=8, description="packed sequence length in tokens")
    generation_batch: int = Field(16, gt=0, description="thoughts generated together")


def round_seed(seed: int, r: int) -> int:
    return int(hashlib.sha256(f"expert-iteration-{seed}-{r}".encode()).hexdigest()[:12], 16)


def select(questions: Sequence[Question], thoughts: Sequence[str], judged: Sequence[Verdict],
           samples: int, keep: Keep) -> list[tuple[Question, str]]:
    """The (question, thought) pairs a round fine-tunes on: ``thoughts`` and ``judged`` hold
    ``samples`` entries per question, question-major. An empty thought is never kept (nothing to
    learn from it); a thought kept twice for one question is kept once."""
    out: list[tuple[Question, str]] = []
    for i, q in enumerate(questions):
        rows = [(thoughts[i * samples + k], judged[i * samples + k]) for k in range(samples)]
        right = [(t, v) for t, v in rows if v.correct and t.strip()]
        if keep == "best" and right:
            right = [max(right, key=lambda tv: tv[1].p_right)]
        seen: set[str] = set()
        for t, _ in right:
            if t not in seen:
                seen.add(t)
                out.append((q, t))
    return out


def expert_iteration(model: Any, tok: Any, questions: Sequence[Question], s: ExpertIterationSettings, *,
                     seed: int, max_tokens: int, temperature: float, instruction: str, lead: str, prefix: str = "",
                     answerer: Any = None, audit: Callable[[Question, str], str] | None = None,
                     progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """``s.rounds`` rounds on ``questions``; the model is fine-tuned in place. ``answerer``: the model
    whose verdict is the reward (None: the policy). ``audit(question, thought)`` -> a retrieval label
    ("stated" when the thought states every premise). Returns (model, info with a record per round)."""
    from genmodes.training.finetune import FinetuneSettings, train

    if temperature <= 0:
        raise ConfigError("rl: expert iteration samples its thoughts: temperature must be above 0")
    qs = list(questions)
    rounds: list[dict[str, Any]] = []
    tokens_generated = 0
    with Timer() as total:
        for r in range(s.rounds):
            with Timer() as t:
                thoughts = generate_thoughts(model, tok, qs, max_tokens=max_tokens, temperature=temperature,
                                             seed=round_seed(seed, r), batch_size=s.generation_batch,
                                             instruction=instruction, lead=lead, prefix=prefix, samples=s.samples,
                                             progress=progress, desc=f"expert iteration round {r + 1}: sampling")
                texts = [th.text for th in thoughts]
                repeated = [q for q in qs for _ in range(s.samples)]
                judged = verdicts(answerer if answerer is not None else model, tok, repeated, texts,
                                  instruction=instruction, lead=lead, prefix=prefix)
                kept = select(qs, texts, judged, s.samples, s.keep)
                rec = _round_record(r, repeated, thoughts, judged, kept, audit)
                if kept:
                    ft = FinetuneSettings(lr=s.lr, epochs=s.epochs, batch_size=s.batch_size, seq_len=s.seq_len,
                                          warmup_steps=0)
                    examples = [(prefix + think_prompt(q, instruction, lead), " " + th) for q, th in kept]
                    model, info = train(model, tok, [], ft, round_seed(seed, r) % (2 ** 31), progress=progress,
                                        desc=f"expert iteration round {r + 1}: fine-tuning", examples=examples)
                    rec["loss_curve"] = info["loss_curve"]
                    rec["steps"] = info["steps"]
            tokens_generated += sum(th.tokens for th in thoughts)
            rec["seconds"] = round(t.seconds, 3)
            rounds.append(rec)
    model.eval()
    return model, {"train_seconds": round(total.seconds, 3), "rounds": rounds, "questions": len(qs),
                   "tokens_generated": tokens_generated,
                   "reward_curve": [(x["round"], x["reward"]) for x in rounds],
                   "thought_length_curve": [(x["round"], x["thought_tokens"]) for x in rounds]}


def _round_record(r: int, repeated: list[Question], thoughts: Sequence[Any], judged: Sequence[Verdict],
                  kept: list[tuple[Question, str]], audit: Callable[[Question, str], str] | None) -> dict[str, Any]:
    n = max(1, len(repeated))
    rec: dict[str, Any] = {
        "round": r + 1, "sampled": len(repeated), "reward": round(sum(v.correct for v in judged) / n, 5),
        "p_right": round(sum(v.p_right for v in judged) / n, 5), "kept": len(kept),
        "questions_kept": len({q.id for q, _ in kept}),
        "thought_tokens": round(sum(th.tokens for th in thoughts) / n, 3)}
    if audit is not None:
        labels = [audit(q, th.text) for q, th in zip(repeated, thoughts)]
        rec["retrieval_rate"] = round(sum(lab == "stated" for lab in labels) / n, 5)
        kept_labels = [audit(q, t) for q, t in kept]
        rec["kept_retrieval_rate"] = round(sum(lab == "stated" for lab in kept_labels) / max(1, len(kept)), 5)
        stated = [v.correct for v, lab in zip(judged, labels) if lab == "stated"]
        rest = [v.correct for v, lab in zip(judged, labels) if lab != "stated"]
        rec["reward_stated"] = round(sum(stated) / len(stated), 5) if stated else None
        rec["reward_not_stated"] = round(sum(rest) / len(rest), 5) if rest else None
    return rec
