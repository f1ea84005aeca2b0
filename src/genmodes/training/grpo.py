"""GRPO: RL from correctness feedback teaches a model to think before it answers [P3].

TRL's ``GRPOTrainer`` (group-relative policy optimisation) on questions: a prompt is
:func:`genmodes.training.thoughts.think_prompt` of a question; a completion, cut by the thinking
stop rule, is the thought; its reward is :func:`genmodes.training.thoughts.rewards`, the one
scorer's verdict after question + thought + answer cue (the definition of "correct" the evaluation
uses), or its dense variant; the optional length and format terms are TRL reward functions of their
own, so each is logged apart. The trainer checkpoints every ``save_every`` steps and a killed run
resumes from its last checkpoint; the reward and thought length of every step come back as curves,
with the tokens generated in training. The ``rl`` model stage (:mod:`genmodes.conditions.rl`) runs
it from the study's knowledge fine-tune.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from genmodes.data.types import Question
from genmodes.errors import ConfigError, NumericError
from genmodes.timing import Timer
from genmodes.training.thoughts import (PROMPT_VERSION, RECALL_INSTRUCTION, STOP, THOUGHT_LEAD, cut_thought,
                                        rewards, states_a_fact, think_prompt, thought_tokens)

SECONDS_FILE = "genmodes_seconds.json"  # training seconds up to a trainer checkpoint


class GRPOSettings(BaseModel):
    """A GRPO run's settings (every field changes the trained weights)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(40, gt=0, description="GRPO optimizer steps")
    group_size: int = Field(4, ge=2, description="thoughts sampled per prompt (GRPO's group)")
    prompts_per_step: int = Field(2, gt=0, description="questions per optimizer step")
    lr: float = Field(1e-5, gt=0)
    beta: float = Field(0.0, ge=0, description="KL coefficient to the fine-tuned model (0: no reference model)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of thoughts in training")
    max_thought_tokens: int = Field(32, gt=0)
    reward: Literal["correct", "probability"] = Field("correct", description="1 when the scorer picks the right "
                                                      "option, or the right option's probability among the choices")
    length_weight: float = Field(0.0, ge=0, description="reward minus this x thought tokens / max_thought_tokens")
    format_weight: float = Field(0.0, ge=0, description="reward plus this when the thought states a parsable fact")
    save_every: int = Field(10, gt=0, description="checkpoint every this many steps (resume after a kill)")
    instruction: str = Field(RECALL_INSTRUCTION, min_length=1, description="the recall prompt (keep it equal to "
                             "the thinking stage's)")
    lead: str = Field(THOUGHT_LEAD, description="text between the instruction and the thought (keep it equal to "
                      "the thinking stage's)")


def stop_token_ids(tok: Any) -> list[int]:
    """End-of-text and every token whose text has a line break: the stop rule, as token ids."""
    ids = [tok.eos_token_id]
    for i in range(len(tok)):
        if STOP in tok.decode([i]) and i not in ids:
            ids.append(i)
    return ids


def _curves(log_history: list[dict[str, Any]], batch: int, terms: Sequence[str] = ()) -> dict[str, Any]:
    steps = [h for h in log_history if "reward" in h and "step" in h]
    reward = [(h["step"], round(float(h["reward"]), 5)) for h in steps]
    length = [(h["step"], round(float(h.get("completions/mean_length", 0.0)), 3)) for h in steps]
    tokens = int(round(sum(float(h.get("completions/mean_length", 0.0)) * batch for h in steps)))
    out = {"reward_curve": reward, "thought_length_curve": length, "tokens_generated": tokens}
    if len(terms) > 1:  # the reward's terms apart (unweighted), so a rise can be traced to the scorer or a term
        out["reward_terms_curves"] = {n: [(h["step"], round(float(h.get(f"rewards/{n}/mean", float("nan"))), 5))
                                          for h in steps] for n in terms}
    return out


def grpo_train(model: Any, tok: Any, questions: Sequence[Question], s: GRPOSettings, seed: int, out_dir: Path,
               progress: bool = True, parse: Any = None, callbacks: Sequence[Any] = (), answerer: Any = None,
               prefix: str = "") -> tuple[Any, dict[str, Any]]:
    """GRPO on ``questions`` in place, checkpointing in ``out_dir`` and resuming from its last checkpoint.

    ``parse`` (for ``format_weight``): a statement parser, or a mapping from question id to the parser
    of that question's family (a reversal question's thought should state a reversal fact, not earn
    the bonus with a syllogism). ``answerer``: the model whose verdict is the reward (None: the policy
    being trained). ``prefix``: a demonstration before every prompt."""
    import datasets as hfds
    import torch
    from trl import GRPOTrainer

    rows = [{"prompt": prefix + think_prompt(q, s.instruction, s.lead), "qid": q.id} for q in questions]
    train_ds = hfds.Dataset.from_list(rows)
    args = _config(s, seed, out_dir, next(model.parameters()).device, progress)
    model.generation_config.eos_token_id = stop_token_ids(tok)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    holder: dict[str, Any] = {}
    judge = (lambda: answerer) if answerer is not None else (lambda: holder["trainer"].model)
    funcs, args.reward_weights = _reward_functions(tok, questions, s, parse, judge, prefix)
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=train_ds,
                          processing_class=tok, callbacks=[_finite_loss(), *callbacks])
    holder["trainer"] = trainer
    if not progress:  # quiet means quiet: without it TRL prints every step's log dict (the curves keep them)
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    checkpoints = sorted(out_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    resume = bool(checkpoints)
    # seconds of the sessions before the checkpoint resumed from (a killed session's time after its
    # last checkpoint is recomputed, and counted, by the session that resumes)
    mark = checkpoints[-1] / SECONDS_FILE if checkpoints else None
    earlier = float(json.loads(mark.read_text())["seconds"]) if mark is not None and mark.exists() else 0.0
    trainer.add_callback(_seconds_at_checkpoints(out_dir, earlier, time.perf_counter()))
    with torch.random.fork_rng(devices=[]), Timer() as t:
        torch.manual_seed(seed)
        trainer.train(resume_from_checkpoint=True if resume else None)
    model = trainer.model
    model.eval()
    info = {"train_seconds": round(earlier + t.seconds, 3), "steps": trainer.state.global_step, "resumed": resume,
            "questions": len(questions), "prompt_version": PROMPT_VERSION,
            **_curves(trainer.state.log_history, args.per_device_train_batch_size, [f.__name__ for f in funcs])}
    return model, info


def _config(s: GRPOSettings, seed: int, out_dir: Path, device: Any, progress: bool) -> Any:
    """TRL's GRPOConfig of ``s``: a group of thoughts per prompt, a constant learning rate, a checkpoint
    every ``save_every`` steps (only the last kept), fp32."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(out_dir), max_steps=s.steps, per_device_train_batch_size=s.prompts_per_step * s.group_size,
        gradient_accumulation_steps=1, num_generations=s.group_size, max_completion_length=s.max_thought_tokens,
        learning_rate=s.lr, beta=s.beta, temperature=s.temperature, logging_steps=1, save_strategy="steps",
        save_steps=s.save_every, save_total_limit=1, report_to=[], seed=seed, data_seed=seed,
        use_cpu=device.type == "cpu", bf16=False, fp16=False, dataloader_num_workers=0,
        disable_tqdm=not progress, lr_scheduler_type="constant", warmup_steps=0, top_k=0,
        remove_unused_columns=False)


def _reward_functions(tok: Any, questions: Sequence[Question], s: GRPOSettings, parse: Any,
                      policy: Any, prefix: str = "") -> tuple[list[Any], list[float]]:
    """The scorer's reward (after the thought, with ``policy()``, the model being trained) and the
    optional terms, each a TRL reward function of its own, weighted by TRL: the total is the one
    :func:`rewards` gives with the same weights, and TRL logs each term apart."""
    by_id = {q.id: q for q in questions}

    def reward_fn(prompts: list[str], completions: list[str], qid: list[str], **_: Any) -> list[float]:
        qs = [by_id[i] for i in qid]
        return rewards(policy(), tok, qs, [cut_thought(c) for c in completions], kind=s.reward,
                       instruction=s.instruction, lead=s.lead, prefix=prefix)

    reward_fn.__name__ = f"scorer_{s.reward}"
    funcs, weights = [reward_fn], [1.0]
    if s.length_weight:
        def thought_length(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
            return [-min(1.0, thought_tokens(tok, c) / s.max_thought_tokens) for c in completions]

        funcs.append(thought_length)
        weights.append(s.length_weight)
    if s.format_weight:
        parse_of = (lambda i: parse.get(i)) if isinstance(parse, dict) else (lambda i: parse)
        if any(parse_of(q.id) is None for q in questions):
            raise ConfigError("rl: format_weight needs the RL dataset's family to have a statement parser")

        def states_fact(prompts: list[str], completions: list[str], qid: list[str], **_: Any) -> list[float]:
            return [float(states_a_fact(parse_of(i), c)) for i, c in zip(qid, completions)]

        funcs.append(states_fact)
        weights.append(s.format_weight)
    return funcs, weights


def _finite_loss() -> Any:
    """A callback that stops training at a non-finite loss."""
    from transformers import TrainerCallback

    class _Finite(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not (float(loss) == float(loss) and abs(float(loss)) != float("inf")):
                raise NumericError(f"rl: GRPO loss is {loss} at step {state.global_step} (lower 'lr'?)")

    return _Finite()


def _seconds_at_checkpoints(out_dir: Path, earlier: float, t0: float) -> Any:
    """A callback that writes the training seconds so far into every checkpoint (a resumed session
    counts the ones before it)."""
    from transformers import TrainerCallback

    class _Seconds(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            ck = out_dir / f"checkpoint-{state.global_step}"
            if ck.is_dir():
                (ck / SECONDS_FILE).write_text(json.dumps({"seconds": earlier + time.perf_counter() - t0}))

    return _Seconds()


def fifths(curve: Sequence[Sequence[float]]) -> tuple[float | None, float | None]:
    """Mean value over the first and the last fifth of the steps (at least one step each): did RL learn?"""
    vals = [float(p[1]) for p in curve if len(p) >= 2 and p[1] is not None]
    if not vals:
        return None, None
    k = max(1, len(vals) // 5)
    return sum(vals[:k]) / k, sum(vals[-k:]) / k
