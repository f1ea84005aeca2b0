"""``rl`` model stage: RL from correctness feedback teaches the model to think before it answers [P3].

P3 (Chaudhry, Thiagarajan, Lampinen 2026, arXiv 2604.01430): fine-tune the knowledge of several
disjoint datasets into the model, then RL on questions of dataset A, rewarding a thought that makes
the model answer right; test on held-out questions of A (in distribution) and on dataset B (new
knowledge, no RL). Here:

- ``finetune_all`` (a model stage of its own, and the start of ``rl``): fine-tune on the documents of
  EVERY dataset in the study (``ctx.datasets``), one checkpoint shared by every cell of the study.
- ``rl``: GRPO (:mod:`genmodes.training.grpo`, TRL's ``GRPOTrainer``) from that checkpoint on the
  RL-training questions, rewarded by the one scorer's verdict after the thought; the reward and
  thought length of every step are in the cell's info (curves for the report), with the tokens
  generated in training.
- Transfer by design (:func:`apply_design`): RL-training questions are a seeded ``rl_fraction`` of the
  RL dataset's held-out questions, chosen as whole entity groups (questions that share an entity go
  together), and removed from what every condition is scored on; questions whose entities occur in
  another dataset of the study are never RL prompts. Split names say which is which:
  ``<split>/rl`` on an RL dataset, ``<split>/transfer`` elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any, Sequence

from pydantic import Field, field_validator

from genmodes.conditions.base import CellContext, Settings as _Base, Timer
from genmodes.conditions.finetune import Settings as FinetuneSettings, load_finished
from genmodes.conditions.finetune_all import finetune_all, study_context, study_datasets
from genmodes.data.types import Dataset, Question
from genmodes.errors import ConfigError
from genmodes.training.finetune import DONE_MARKER
from genmodes.training.grpo import GRPOSettings
from genmodes.training.thoughts import PROMPT_VERSION

RL_SUFFIX, TRANSFER_SUFFIX = "/rl", "/transfer"


# ------------------------------------------------------------------------------------------ settings

class Settings(_Base, GRPOSettings):
    """The GRPO run's settings (:class:`genmodes.training.grpo.GRPOSettings`), the knowledge fine-tune
    it starts from, and the study design: which questions RL trains on."""

    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings,
                                       description="the knowledge fine-tune on every dataset's documents")
    rl_dataset: list[str] = Field(..., min_length=1, description="dataset(s) whose questions RL trains on")
    rl_fraction: float = Field(0.5, gt=0, lt=1, description="share of the RL dataset's held-out entity groups "
                               "used for RL (the rest are evaluated)")
    split_seed: int = Field(0, description="seeds the choice of RL-training questions")

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


def _built(model: Any, tok: Any, info: dict[str, Any]) -> Any:
    from genmodes.conditions.base import Built

    return Built(model, tok, info)


# ------------------------------------------------------------------------------------------ RL

def rl_questions(ctx: CellContext, s: Settings) -> list[Question]:
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


def rl_checkpoint_dir(ctx: CellContext, s: Settings, questions: Sequence[Question]) -> Path:
    sctx = study_context(ctx)
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
    from genmodes.training.finetune import save_checkpoint
    from genmodes.training.grpo import grpo_train

    questions = rl_questions(ctx, settings)
    path = rl_checkpoint_dir(ctx, settings, questions)
    if (path / DONE_MARKER).exists():
        with Timer() as t:
            model, tok, info = load_finished(ctx, settings.finetune, path)
        return _built(model, tok, {**info, "reused": True, "load_seconds": round(t.seconds, 3)})
    model, tok, ft_info = finetune_all(ctx, settings.finetune)
    parse = statement_parsers(ctx, settings, questions) if settings.format_weight else None
    work = path.parent / (path.name + ".work")  # trainer checkpoints: kept until the final model is saved
    model, rl_info = grpo_train(model, tok, questions, settings, ctx.seed, work, progress=ctx.progress, parse=parse)
    info = {"finetune": {k: v for k, v in ft_info.items() if k != "loss_curve"},
            "finetune_loss_curve": ft_info.get("loss_curve"), "rl": rl_info,
            "train_seconds": round(float(ft_info.get("train_seconds", 0.0)) + rl_info["train_seconds"], 3),
            "rl_questions": [q.id for q in questions], "rl_datasets": list(settings.rl_dataset)}
    save_checkpoint(model, tok, info, path)
    shutil.rmtree(work, ignore_errors=True)
    return _built(model, tok, {**info, "checkpoint": str(path)})
