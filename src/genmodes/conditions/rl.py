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

import dataclasses
import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import Field, field_validator

from genmodes.conditions.base import (Built, CellContext, Info as _Record, ModelStageInfo, Settings as _Base, StageCheck,
                                      StageCost, Timer, settings_key)
from genmodes.conditions.finetune import Settings as FinetuneSettings, load_finished
from genmodes.conditions.finetune_all import Info as FinetuneAllInfo, finetune_all, study_context, study_datasets
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


class GRPOInfo(_Record):
    """A GRPO run (:func:`genmodes.training.grpo.grpo_train`): its curves and what it cost."""

    train_seconds: float | None = None
    steps: int | None = None
    resumed: bool | None = None
    questions: int | None = None
    prompt_version: int | None = None
    reward_curve: list[tuple[int, float]] = Field(default_factory=list)
    thought_length_curve: list[tuple[int, float]] = Field(default_factory=list)
    tokens_generated: int | None = None
    reward_terms_curves: dict[str, list[tuple[int, float]]] | None = None  # each term apart (unweighted)


RECALL_GATE = True  # its latent results count only where it knows the facts (genmodes.experiments.gates)


class Info(ModelStageInfo):
    """The study's knowledge fine-tune, then GRPO (``train_seconds``: both)."""

    finetune: FinetuneAllInfo | None = None  # its loss curve apart, in finetune_loss_curve
    finetune_loss_curve: list[tuple[int, float]] | None = None
    rl: GRPOInfo | None = None
    rl_questions: list[str] | None = None
    rl_datasets: list[str] | None = None
    load_seconds: float | None = None

    def checkpoints(self) -> list[str]:
        return super().checkpoints() + (self.finetune.checkpoints() if self.finetune is not None else [])


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
    # drawn by the group's first held-out question: scoring a recall split too (the gate) draws the same
    eligible.sort(key=lambda g: hashlib.sha256(
        f"rl-{split_seed}-{next(q for q in g if q.split not in recall).id}".encode()).hexdigest())
    n = round(fraction * len([g for g in groups if any(q.split not in recall for q in g)]))
    taken = eligible[:n]
    taken_ids = {q.id for g in taken for q in g}
    train = [q for q in ds.questions if q.id in taken_ids and q.split not in recall]
    keep = [q for q in ds.questions if q.id not in taken_ids]
    return train, keep


@dataclass
class StudyDataset(Dataset):
    """A dataset of a study with an rl stage, as the study scores it (:func:`design`): its role, and
    on an RL dataset the questions RL trains on (removed from those scored)."""

    role: Literal["rl", "transfer"] = "transfer"
    rl_train_questions: list[Question] = field(default_factory=list)


def design(datasets: dict[str, Dataset], rl: Sequence[Settings]) -> dict[str, Dataset]:
    """The study's RL and transfer datasets (new ones; the input is left as it was), before any cell runs.

    RL datasets lose their RL-training questions (kept in ``rl_train_questions``); every split of
    every dataset is renamed ``<split>/rl`` or ``<split>/transfer``."""
    names = {tuple(s.rl_dataset) for s in rl}
    if len({tuple(s.rl_dataset) for s in rl}) > 1 or len({(s.rl_fraction, s.split_seed) for s in rl}) > 1:
        raise ConfigError("every rl condition of a study must name the same rl_dataset, rl_fraction and "
                          f"split_seed (got {sorted(names)}): the evaluated questions are the same for all conditions")
    s = rl[0]
    unknown = [n for n in s.rl_dataset if n not in datasets]
    if unknown:
        raise ConfigError(f"rl: rl_dataset {unknown} is not a dataset of this study (it has {list(datasets)})")
    return {name: _designed(name, ds, datasets, s) for name, ds in datasets.items()}


def _designed(name: str, ds: Dataset, datasets: dict[str, Dataset], s: Settings) -> StudyDataset:
    role: Literal["rl", "transfer"] = "rl" if name in s.rl_dataset else "transfer"
    suffix = RL_SUFFIX if role == "rl" else TRANSFER_SUFFIX
    others = set().union(*[entity_words(d) for n, d in datasets.items() if n != name])
    train: list[Question] = []
    keep = list(ds.questions)
    if role == "rl":
        train, keep = rl_split(ds, s.rl_fraction, s.split_seed, others)
        if not train:
            raise ConfigError(f"rl: dataset {name!r} leaves no RL-training question at rl_fraction "
                              f"{s.rl_fraction}; raise it or add examples")
        if not keep:
            raise ConfigError(f"rl: dataset {name!r} leaves no question to evaluate at rl_fraction {s.rl_fraction}")
    meta = dict(ds.meta)
    meta["recall_splits"] = [r + suffix for r in ds.meta.get("recall_splits", [])]
    # the design changes what is scored: part of the dataset's identity (cell keys, manifest); the
    # documents are unchanged, so the study's fine-tune keys on the source hash
    meta.setdefault("source_content_hash", ds.meta.get("content_hash"))
    scored = [dataclasses.replace(q, split=q.split + suffix) for q in keep]
    key = {"role": role, "scored": [q.id for q in scored], "rl_train": [q.id for q in train]}
    meta["content_hash"] = hashlib.sha256(json.dumps([meta["source_content_hash"], key], sort_keys=True)
                                          .encode()).hexdigest()
    # datasets of one family with different seeds draw from one word stream, so they can share
    # words unless given different ``vocabulary`` parts; RL never trains on such a word
    # (``foreign`` in rl_split), but the reader should know
    meta["rl_design"] = {"role": role, "entities_shared_with_other_datasets": len(entity_words(ds) & others),
                         "rl_train_questions": len(train)}
    return StudyDataset(family=ds.family, config=ds.config, seed=ds.seed, documents=ds.documents, questions=scored,
                        knowledge=ds.knowledge, meta=meta, role=role, rl_train_questions=train)


# ------------------------------------------------------------------------------------------ RL

def rl_questions(ctx: CellContext, s: Settings) -> list[Question]:
    dss = study_datasets(ctx)
    out = []
    for name in s.rl_dataset:
        if name not in dss:
            raise ConfigError(f"rl: rl_dataset {name!r} is not a dataset of this study (it has {list(dss)})")
        ds = dss[name]
        if isinstance(ds, StudyDataset):
            qs = ds.rl_train_questions
        else:  # the design was not applied (a stage used outside a study): compute it here
            foreign = set().union(*[entity_words(d) for n, d in dss.items() if n != name])
            qs, _ = rl_split(ds, s.rl_fraction, s.split_seed, foreign)
        out.extend(qs)
    if not out:
        raise ConfigError("rl: no RL-training questions")
    return out


def rl_checkpoint_dir(ctx: CellContext, s: Settings, questions: Sequence[Question]) -> Path:
    sctx = study_context(ctx)
    return sctx.artifact_dir("rl", settings=settings_key(s), questions=[q.id for q in questions],
                             prompt_version=PROMPT_VERSION)


def statement_parsers(ctx: CellContext, s: Settings, questions: Sequence[Question]) -> dict[str, Any]:
    """Question id -> the statement parser of its RL dataset's family (``None`` where it has none)."""
    from genmodes.data.families import get_family

    dss = study_datasets(ctx)
    out: dict[str, Any] = {}
    for name in s.rl_dataset:
        parser = get_family(dss[name].family).parse_statements
        ds = dss[name]
        ids = {q.id for q in (ds.rl_train_questions if isinstance(ds, StudyDataset) else None) or ds.questions}
        out.update({q.id: parser for q in questions if q.id in ids and q.id not in out})
    return out


def build(ctx: CellContext, settings: Settings) -> Built:
    from genmodes.training.finetune import save_checkpoint
    from genmodes.training.grpo import grpo_train

    questions = rl_questions(ctx, settings)
    path = rl_checkpoint_dir(ctx, settings, questions)
    if (path / DONE_MARKER).exists():
        with Timer() as t:
            model, tok, saved = load_finished(ctx, settings.finetune, path)
        return Built(model, tok, Info.read(saved).model_copy(update={
            "reused": True, "load_seconds": round(t.seconds, 3), "checkpoint": str(path)}))
    model, tok, ft_info = finetune_all(ctx, settings.finetune)
    parse = statement_parsers(ctx, settings, questions) if settings.format_weight else None
    work = path.parent / (path.name + ".work")  # trainer checkpoints: kept until the final model is saved
    model, rl_info = grpo_train(model, tok, questions, settings, ctx.seed, work, progress=ctx.progress, parse=parse)
    info = Info(finetune=ft_info.model_copy(update={"loss_curve": None}), finetune_loss_curve=ft_info.loss_curve,
                rl=GRPOInfo(**rl_info),
                train_seconds=round(float(ft_info.train_seconds or 0.0) + rl_info["train_seconds"], 3),
                rl_questions=[q.id for q in questions], rl_datasets=list(settings.rl_dataset))
    save_checkpoint(model, tok, info.model_dump(mode="json", exclude_none=True), path)
    shutil.rmtree(work, ignore_errors=True)
    return Built(model, tok, info.model_copy(update={"checkpoint": str(path)}))


def validate(settings: Settings, check: StageCheck) -> None:
    """The knowledge fine-tune's checks, and a thought that fits the model's window."""
    from genmodes.conditions.finetune import validate as validate_finetune

    validate_finetune(settings.finetune, dataclasses.replace(check, where=f"{check.where}: finetune"))
    check.check_window("max_thought_tokens", settings.max_thought_tokens)


def estimate(settings: Settings, cost: Any) -> StageCost:
    """The study's knowledge fine-tune (shared with finetune_all), then GRPO once per seed."""
    from genmodes.conditions.finetune_all import study_texts

    out = cost.finetune("finetune_all", settings.finetune, study_texts(cost.datasets, settings.finetune),
                        study_wide=True)
    if not cost.first(["rl", settings.model_dump(mode="json")], study_wide=True):
        out.note = "shares an RL model built by an earlier cell"
        return out
    out.train_s += cost.load_s + settings.steps * cost.grpo_step(settings)
    out.note = "GRPO" + (" (its fine-tuned start shared)" if out.note else "")
    return out


# ------------------------------------------------------------------------------------------ report

def report_sections(view: Any) -> list[tuple]:
    """The reward and thought length over RL steps (did RL learn anything: the mean reward over the last
    fifth of the steps against the first fifth), and the train-time compute RL adds."""
    from genmodes.training.grpo import fifths

    seen, runs = set(), []
    for cell, info in view.cells:  # one per distinct RL training (cells share a checkpoint)
        rl = info.rl
        if rl is None or not rl.reward_curve:
            continue
        key = (cell.condition, cell.seed, str(rl.reward_curve)[:200])
        if key not in seen:
            seen.add(key)
            runs.append((f"{cell.condition} seed {cell.seed}", rl))
    if not runs:
        return []
    out: list[tuple] = [("h", 2, "RL: reward and thought length over steps")]
    for title, ylabel, stem, curve in (("RL reward (mean over the step's thoughts)", "reward", "rl_reward",
                                        lambda r: r.reward_curve),
                                       ("thought length", "tokens per thought", "rl_thought_length",
                                        lambda r: r.thought_length_curve)):
        path = view.figures.loss_curves(title, [(n, curve(r)) for n, r in runs], view.figure_path(stem),
                                        xlabel="RL step", ylabel=ylabel, markers=True)
        out.append(("img", path, title.split(" (")[0]))
    body = []
    for n, r in runs:
        first, last = fifths(r.reward_curve)
        body.append([n, str(r.steps if r.steps is not None else view.DASH),
                     str(r.questions if r.questions is not None else view.DASH),
                     view.DASH if first is None else f"{first:.3f}", view.DASH if last is None else f"{last:.3f}",
                     view.DASH if first is None else ("yes" if last > first else "no")])
    out.append(("p", "RL learned something when the mean reward over the last fifth of the steps is above that "
                     "of the first fifth."))
    out.append(("table", ["condition", "steps", "RL questions", "reward, first fifth", "reward, last fifth",
                          "learned"], body))
    compute = [[c.dataset, c.condition, str(i.rl.steps), str(i.rl.tokens_generated),
                view.DASH if i.rl.train_seconds is None else f"{i.rl.train_seconds:.0f}"]
               for c, i in view.cells if i.rl is not None]
    out += [("h", 2, "RL compute: train time"),
            ("p", "RL adds train-time compute: thoughts generated and scored in training, once for the study."),
            ("table", ["dataset", "condition", "RL steps", "RL tokens generated", "RL seconds"], compute)]
    from genmodes.conditions.finetune import stopping_rule_section

    return out + stopping_rule_section(view, lambda info: info.finetune)
