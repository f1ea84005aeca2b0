"""``rl`` model stage: RL from correctness feedback teaches the model to think before it answers [P3].

P3 (Chaudhry, Thiagarajan, Lampinen 2026, arXiv 2604.01430): fine-tune the knowledge of several
disjoint datasets into the model, then RL on questions of dataset A, rewarding a thought that makes
the model answer right; test on held-out questions of A (in distribution) and on dataset B (new
knowledge, no RL). Here:

- ``finetune_all`` (a model stage of its own, and the start of ``rl``): fine-tune on the documents of
  EVERY dataset in the study (``ctx.datasets``), one checkpoint shared by every cell of the study.
- ``rl``: TRL's ``GRPOTrainer`` (group-relative policy optimisation) from that checkpoint. A prompt
  is :func:`genmodes.conditions.thoughts.think_prompt` of an RL-training question; a completion,
  cut by the thinking stage's stop rule, is the thought; its reward is
  :func:`genmodes.conditions.thoughts.rewards`, the one scorer's verdict after question + thought +
  answer cue (the definition of "correct" the evaluation uses), or its dense variant; the optional
  length and format terms are TRL reward functions of their own, so each is logged apart. The trainer
  checkpoints every ``save_every`` steps and a killed run resumes from its last checkpoint; the
  reward and thought length of every step are in the cell's info (curves for the report), with the
  tokens generated in training.
- Transfer by design (:func:`apply_design`): RL-training questions are a seeded ``rl_fraction`` of the
  RL dataset's held-out questions, chosen as whole entity groups (questions that share an entity go
  together), and removed from what every condition is scored on; questions whose entities occur in
  another dataset of the study are never RL prompts. Split names say which is which:
  ``<split>/rl`` on an RL dataset, ``<split>/transfer`` elsewhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import Field, field_validator

from genmodes.conditions.base import CellContext, Settings as _Base, Timer
from genmodes.conditions.finetune import DONE_MARKER, Settings as FinetuneSettings, _save, train_on_texts
from genmodes.data.types import Dataset, Question
from genmodes.errors import ConfigError, NumericError
from genmodes.conditions.thoughts import (PROMPT_VERSION, RECALL_INSTRUCTION, STOP, cut_thought, rewards,
                                          states_a_fact, think_prompt, thought_tokens)

RL_SUFFIX, TRANSFER_SUFFIX = "/rl", "/transfer"
SECONDS_FILE = "genmodes_seconds.json"  # training seconds up to a trainer checkpoint


# ------------------------------------------------------------------------------------------ settings

class Settings(_Base):
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings,
                                       description="the knowledge fine-tune on every dataset's documents")
    rl_dataset: list[str] = Field(..., min_length=1, description="dataset(s) whose questions RL trains on")
    rl_fraction: float = Field(0.5, gt=0, lt=1, description="share of the RL dataset's held-out entity groups "
                               "used for RL (the rest are evaluated)")
    split_seed: int = Field(0, description="seeds the choice of RL-training questions")
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

    @field_validator("rl_dataset", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


# ------------------------------------------------------------------------------------------ design

_WORD = re.compile(r"[A-Za-z]+")


def entity_words(ds: Dataset) -> set[str]:
    """The dataset's entity words (lower case): its nonsense vocabulary."""
    return {w.lower() for e in ds.meta.get("entities", []) for w in _WORD.findall(str(e))}


def question_entities(q: Question, vocab: set[str]) -> set[str]:
    """Entity words a question is about: in its premises and its context."""
    text = " ".join([q.context, *(f"{f.subject} {f.object}" for f in q.premises)])
    return {w.lower() for w in _WORD.findall(text) if w.lower() in vocab}


def _groups(qs: Sequence[Question], vocab: set[str]) -> list[list[Question]]:
    """Questions joined when they share an entity word (connected components), in first-seen order."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    ents = [sorted(question_entities(q, vocab)) or [f"#q:{q.id}"] for q in qs]
    for es in ents:
        for e in es[1:]:
            parent[find(e)] = find(es[0])
    out: dict[str, list[Question]] = {}
    for q, es in zip(qs, ents):
        out.setdefault(find(es[0]), []).append(q)
    return list(out.values())


def rl_split(ds: Dataset, fraction: float, split_seed: int,
             foreign: set[str] = frozenset()) -> tuple[list[Question], list[Question]]:
    """(RL-training questions, questions left to evaluate) of an RL dataset.

    Entity groups with a held-out question are drawn in a seeded order until ``fraction`` of them is
    taken; their held-out questions train RL and none of their questions is evaluated. A group with an
    entity in ``foreign`` (another dataset's vocabulary) is never drawn.
    """
    vocab = entity_words(ds)
    recall = set(ds.meta.get("recall_splits", []))
    groups = [g for g in _groups(ds.questions, vocab)]
    eligible = [g for g in groups if any(q.split not in recall for q in g)
                and not any(question_entities(q, vocab) & foreign for q in g)]
    eligible.sort(key=lambda g: hashlib.sha256(f"rl-{split_seed}-{g[0].id}".encode()).hexdigest())
    n = round(fraction * len([g for g in groups if any(q.split not in recall for q in g)]))
    taken = eligible[:n]
    taken_ids = {q.id for g in taken for q in g}
    train = [q for q in ds.questions if q.id in taken_ids and q.split not in recall]
    keep = [q for q in ds.questions if q.id not in taken_ids]
    return train, keep


def apply_design(datasets: dict[str, Dataset], rl: Sequence[Settings]) -> None:
    """Mark the study's RL and transfer datasets (in place), before any cell runs.

    RL datasets lose their RL-training questions (kept on ``ds.rl_train_questions``); every split of
    every dataset is renamed ``<split>/rl`` or ``<split>/transfer``. Nothing happens without an rl stage.
    """
    if not rl:
        return
    names = {tuple(s.rl_dataset) for s in rl}
    if len({tuple(s.rl_dataset) for s in rl}) > 1 or len({(s.rl_fraction, s.split_seed) for s in rl}) > 1:
        raise ConfigError("every rl condition of a study must name the same rl_dataset, rl_fraction and "
                          f"split_seed (got {sorted(names)}): the evaluated questions are the same for all conditions")
    s = rl[0]
    unknown = [n for n in s.rl_dataset if n not in datasets]
    if unknown:
        raise ConfigError(f"rl: rl_dataset {unknown} is not a dataset of this study (it has {list(datasets)})")
    for name, ds in datasets.items():
        if getattr(ds, "rl_role", None) is not None:
            continue  # already applied (a runner builds the datasets once)
        role = "rl" if name in s.rl_dataset else "transfer"
        suffix = RL_SUFFIX if role == "rl" else TRANSFER_SUFFIX
        if role == "rl":
            foreign = set().union(*[entity_words(d) for n, d in datasets.items() if n != name])
            train, keep = rl_split(ds, s.rl_fraction, s.split_seed, foreign)
            if not train:
                raise ConfigError(f"rl: dataset {name!r} leaves no RL-training question at rl_fraction "
                                  f"{s.rl_fraction}; raise it or add examples")
            if not keep:
                raise ConfigError(f"rl: dataset {name!r} leaves no question to evaluate at rl_fraction {s.rl_fraction}")
            ds.questions = keep
            ds.rl_train_questions = train  # type: ignore[attr-defined]
        for q in ds.questions:
            q.split = q.split + suffix
        ds.meta["recall_splits"] = [r + suffix for r in ds.meta.get("recall_splits", [])]
        ds.rl_role = role  # type: ignore[attr-defined]
        # the design changes what is scored: part of the dataset's identity (cell keys, manifest); the
        # documents are unchanged, so the study's fine-tune keys on the source hash
        ds.meta.setdefault("source_content_hash", ds.meta.get("content_hash"))
        design = {"role": role, "scored": [q.id for q in ds.questions],
                  "rl_train": [q.id for q in getattr(ds, "rl_train_questions", [])]}
        ds.meta["content_hash"] = hashlib.sha256(json.dumps(
            [ds.meta["source_content_hash"], design], sort_keys=True).encode()).hexdigest()
        # datasets of one family with different seeds draw from one word stream, so they can share
        # words unless given different ``vocabulary`` parts; RL never trains on such a word
        # (``foreign`` above), but the reader should know
        others = set().union(*[entity_words(d) for n, d in datasets.items() if n != name])
        ds.meta["rl_design"] = {"role": role, "entities_shared_with_other_datasets": len(entity_words(ds) & others),
                                "rl_train_questions": len(getattr(ds, "rl_train_questions", []))}


# ------------------------------------------------------------------------------------------ finetune_all

def study_datasets(ctx: CellContext) -> dict[str, Dataset]:
    return dict(ctx.datasets)


def _study_ctx(ctx: CellContext) -> CellContext:
    """``ctx`` with a dataset made of every study dataset's documents: artifacts keyed by the study,
    so every cell of it shares one fine-tuned checkpoint."""
    dss = study_datasets(ctx)
    key = json.dumps([[n, d.meta.get("source_content_hash") or d.meta.get("content_hash") or d.family, d.seed]
                      for n, d in sorted(dss.items())])
    docs = [doc for _, d in sorted(dss.items()) for doc in d.documents]
    combined = Dataset(family="study", config={"datasets": sorted(dss)}, seed=0, documents=docs, questions=[],
                       knowledge=[], meta={"content_hash": hashlib.sha256(key.encode()).hexdigest()})
    return dataclasses.replace(ctx, dataset=combined)


def finetune_all(ctx: CellContext, ft: FinetuneSettings) -> tuple[Any, Any, dict[str, Any]]:
    sctx = _study_ctx(ctx)
    docs = [d for d in sctx.dataset.documents if ft.kinds is None or d.kind in ft.kinds]
    if not docs:
        raise ConfigError(f"finetune_all: no documents of kinds {ft.kinds} in the study's datasets")
    model, tok, info = train_on_texts(sctx, ft, [d.text for d in docs], tag="finetune_all")
    return model, tok, {**info, "documents": len(docs), "datasets": sorted(study_datasets(ctx))}


def _built(model: Any, tok: Any, info: dict[str, Any]) -> Any:
    from genmodes.conditions.base import Built

    return Built(model, tok, info)


# ------------------------------------------------------------------------------------------ GRPO

def stop_token_ids(tok: Any) -> list[int]:
    """End-of-text and every token whose text has a line break: the stop rule, as token ids."""
    ids = [tok.eos_token_id]
    for i in range(len(tok)):
        if STOP in tok.decode([i]) and i not in ids:
            ids.append(i)
    return ids


def _rl_questions(ctx: CellContext, s: Settings) -> list[Question]:
    dss = study_datasets(ctx)
    out = []
    for name in s.rl_dataset:
        if name not in dss:
            raise ConfigError(f"rl: rl_dataset {name!r} is not a dataset of this study (it has {list(dss)})")
        qs = getattr(dss[name], "rl_train_questions", None)
        if qs is None:  # the design was not applied (a stage used outside the runner): compute it here
            foreign = set().union(*[entity_words(d) for n, d in dss.items() if n != name])
            qs, _ = rl_split(dss[name], s.rl_fraction, s.split_seed, foreign)
        out.extend(qs)
    if not out:
        raise ConfigError("rl: no RL-training questions")
    return out


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


def grpo_train(model: Any, tok: Any, questions: Sequence[Question], s: Settings, seed: int, out_dir: Path,
               progress: bool = True, parse: Any = None, callbacks: Sequence[Any] = ()) -> tuple[Any, dict[str, Any]]:
    """GRPO on ``questions`` in place, checkpointing in ``out_dir`` and resuming from its last checkpoint.

    ``parse`` (for ``format_weight``): a statement parser, or a mapping from question id to the parser
    of that question's family (a reversal question's thought should state a reversal fact, not earn
    the bonus with a syllogism)."""
    import datasets as hfds
    import torch
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    by_id = {q.id: q for q in questions}
    rows = [{"prompt": think_prompt(q, s.instruction), "qid": q.id} for q in questions]
    train_ds = hfds.Dataset.from_list(rows)
    device = next(model.parameters()).device
    batch = s.prompts_per_step * s.group_size
    args = GRPOConfig(
        output_dir=str(out_dir), max_steps=s.steps, per_device_train_batch_size=batch,
        gradient_accumulation_steps=1, num_generations=s.group_size, max_completion_length=s.max_thought_tokens,
        learning_rate=s.lr, beta=s.beta, temperature=s.temperature, logging_steps=1, save_strategy="steps",
        save_steps=s.save_every, save_total_limit=1, report_to=[], seed=seed, data_seed=seed,
        use_cpu=device.type == "cpu", bf16=False, fp16=False, dataloader_num_workers=0,
        disable_tqdm=not progress, lr_scheduler_type="constant", warmup_steps=0, top_k=0,
        remove_unused_columns=False)
    model.generation_config.eos_token_id = stop_token_ids(tok)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    holder: dict[str, Any] = {}

    def reward_fn(prompts: list[str], completions: list[str], qid: list[str], **_: Any) -> list[float]:
        qs = [by_id[i] for i in qid]
        return rewards(holder["trainer"].model, tok, qs, [cut_thought(c) for c in completions], kind=s.reward,
                       instruction=s.instruction)

    reward_fn.__name__ = f"scorer_{s.reward}"
    # the optional terms are reward functions of their own, weighted by TRL: the total is the one
    # :func:`rewards` gives with the same weights, and TRL logs each term apart
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
    args.reward_weights = weights

    class _Finite(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not (float(loss) == float(loss) and abs(float(loss)) != float("inf")):
                raise NumericError(f"rl: GRPO loss is {loss} at step {state.global_step} (lower 'lr'?)")

    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=train_ds,
                          processing_class=tok, callbacks=[_Finite(), *callbacks])
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
    t0 = time.perf_counter()

    class _Seconds(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            ck = out_dir / f"checkpoint-{state.global_step}"
            if ck.is_dir():
                (ck / SECONDS_FILE).write_text(json.dumps({"seconds": earlier + time.perf_counter() - t0}))

    trainer.add_callback(_Seconds())
    with torch.random.fork_rng(devices=[]), Timer() as t:
        torch.manual_seed(seed)
        trainer.train(resume_from_checkpoint=True if resume else None)
    model = trainer.model
    model.eval()
    info = {"train_seconds": round(earlier + t.seconds, 3), "steps": trainer.state.global_step, "resumed": resume,
            "questions": len(questions), "prompt_version": PROMPT_VERSION,
            **_curves(trainer.state.log_history, batch, [f.__name__ for f in funcs])}
    return model, info


def rl_checkpoint_dir(ctx: CellContext, s: Settings, questions: Sequence[Question]) -> Path:
    sctx = _study_ctx(ctx)
    return sctx.artifact_dir("rl", settings=s.model_dump(), questions=[q.id for q in questions],
                             prompt_version=PROMPT_VERSION)


def statement_parsers(ctx: CellContext, s: Settings, questions: Sequence[Question]) -> dict[str, Any]:
    """Question id -> the statement parser of its RL dataset's family (``None`` where it has none)."""
    from genmodes.data.families import get_family

    dss = study_datasets(ctx)
    out: dict[str, Any] = {}
    for name in s.rl_dataset:
        parser = get_family(dss[name].family).parse_statements
        ids = {q.id for q in getattr(dss[name], "rl_train_questions", None) or dss[name].questions}
        out.update({q.id: parser for q in questions if q.id in ids and q.id not in out})
    return out


def build(ctx: CellContext, settings: Settings) -> Any:
    from genmodes.conditions.finetune import _load

    questions = _rl_questions(ctx, settings)
    path = rl_checkpoint_dir(ctx, settings, questions)
    if (path / DONE_MARKER).exists():
        with Timer() as t:
            model, tok, info = _load(ctx, settings.finetune, path)
        return _built(model, tok, {**info, "reused": True, "load_seconds": round(t.seconds, 3)})
    model, tok, ft_info = finetune_all(ctx, settings.finetune)
    parse = statement_parsers(ctx, settings, questions) if settings.format_weight else None
    work = path.parent / (path.name + ".work")  # trainer checkpoints: kept until the final model is saved
    model, rl_info = grpo_train(model, tok, questions, settings, ctx.seed, work, progress=ctx.progress, parse=parse)
    info = {"finetune": {k: v for k, v in ft_info.items() if k != "loss_curve"},
            "finetune_loss_curve": ft_info.get("loss_curve"), "rl": rl_info,
            "train_seconds": round(float(ft_info.get("train_seconds", 0.0)) + rl_info["train_seconds"], 3),
            "rl_questions": [q.id for q in questions], "rl_datasets": list(settings.rl_dataset)}
    _save(model, tok, info, path)
    shutil.rmtree(work, ignore_errors=True)
    return _built(model, tok, {**info, "checkpoint": str(path)})
