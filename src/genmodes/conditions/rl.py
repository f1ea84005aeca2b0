"""``rl`` model stage: RL from correctness feedback teaches the model to think before it answers [P3].

P3 (Chaudhry, Thiagarajan, Lampinen 2026, arXiv 2604.01430): fine-tune the knowledge of several
disjoint datasets into the model, then RL on questions of dataset A, rewarding a thought that makes
the model answer right; test on held-out questions of A (in distribution) and on dataset B (new
knowledge, no RL). Here:

- ``finetune_all`` (a model stage of its own, and the start of ``rl``): fine-tune on the documents of
  EVERY dataset in the study (``ctx.datasets``), one checkpoint shared by every cell of the study.
- ``rl``: from that checkpoint, on the RL-training questions, one of two methods, both rewarded by
  the one scorer's verdict after the thought (the definition of "correct" the evaluation uses):
  ``grpo`` (:mod:`genmodes.training.grpo`, TRL's ``GRPOTrainer``) or ``expert_iteration``
  (:mod:`genmodes.training.expert_iteration`: STaR / ReST-EM, sample thoughts, keep those after which
  the answer is right, fine-tune on them, a few rounds). ``answerer: frozen`` gives the verdict with
  a frozen copy of the fine-tuned model, so a rising reward means better thoughts, not an answerer
  that drifted. The reward and thought length of every step (GRPO) or round (expert iteration) are
  in the cell's info (curves for the report), with the tokens generated in training.
- Transfer by design (:func:`design`): RL-training questions are a seeded ``rl_fraction`` of the
  RL dataset's held-out questions, chosen as whole entity groups (questions about the same entity go
  together: the entities a question names, or where it names none, as a reversal asks from a
  description, those of its premises), and removed from what every condition is scored on;
  questions whose entities occur in another dataset of the study are never RL prompts. Split names
  say which is which: ``<split>/rl`` on an RL dataset, ``<split>/transfer`` elsewhere.

The format warm start is the knowledge fine-tune's ``recall_drills`` ("Recall what you know about X:"
and X's trained facts, :func:`genmodes.training.thoughts.recall_drills`): it teaches the form of a
recollection without saying which facts a question needs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import Field, field_validator, model_validator

from genmodes.conditions.base import (Built, CellContext, Info as _Record, ModelStageInfo, Settings as _Base, StageCheck,
                                      StageCost, Timer, settings_key)
from genmodes.conditions.finetune import Settings as FinetuneSettings, load_finished
from genmodes.conditions.finetune_all import Info as FinetuneAllInfo, finetune_all, study_context, study_datasets
from genmodes.data.types import Dataset, Question
from genmodes.errors import ConfigError
from genmodes.training.finetune import DONE_MARKER
from genmodes.training.expert_iteration import ExpertIterationSettings
from genmodes.training.grpo import GRPOSettings
from genmodes.training.thoughts import PROMPT_VERSION

RL_SUFFIX, TRANSFER_SUFFIX = "/rl", "/transfer"


# ------------------------------------------------------------------------------------------ settings

GRPO_ONLY = ("steps", "group_size", "prompts_per_step", "lr", "beta", "length_weight", "format_weight", "save_every")


class Settings(_Base, GRPOSettings):
    """The RL method and its settings (GRPO's flat, :class:`genmodes.training.grpo.GRPOSettings`; expert
    iteration's under ``expert_iteration``; the thought's budget, sampling temperature and prompt
    shared), the knowledge fine-tune it starts from, and the study design: which questions RL trains on."""

    method: Literal["grpo", "expert_iteration"] = Field("grpo", description="grpo (TRL) or expert_iteration "
                                                        "(STaR / ReST-EM: keep the right sampled thoughts, fine-tune)")
    expert_iteration: ExpertIterationSettings | None = Field(None, description="expert iteration's settings "
                                                             "(method expert_iteration)")
    answerer: Literal["policy", "frozen"] = Field("policy", description="whose verdict is the reward: the model "
                                                  "being trained, or a frozen copy of the fine-tuned model")
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

    @model_validator(mode="before")
    @classmethod
    def _method_settings(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("method") == "expert_iteration":
            given = [k for k in GRPO_ONLY if k in data]
            if given:
                raise ValueError(f"{given[0]!r} is a GRPO setting; with method expert_iteration give its settings "
                                 "under 'expert_iteration'")
            if data.get("reward", "correct") != "correct":
                raise ValueError("expert iteration keeps the thoughts after which the answer is right: reward must "
                                 "be 'correct'")
            return {**data, "expert_iteration": data.get("expert_iteration") or {}}
        if data.get("expert_iteration") is not None:
            raise ValueError("'expert_iteration' settings need method: expert_iteration")
        return data


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


class ExpertIterationInfo(_Record):
    """An expert-iteration run (:func:`genmodes.training.expert_iteration.expert_iteration`): a record
    per round (sampled, kept, reward, thought length, implicit retrieval, the fine-tune's loss)."""

    train_seconds: float | None = None
    questions: int | None = None
    tokens_generated: int | None = None
    reward_curve: list[tuple[int, float]] = Field(default_factory=list)  # (round, accuracy after a sampled thought)
    thought_length_curve: list[tuple[int, float]] = Field(default_factory=list)
    rounds: list[dict[str, Any]] = Field(default_factory=list)
    answerer: str | None = None


RECALL_GATE = True  # its latent results count only where it knows the facts (genmodes.experiments.gates)


class Info(ModelStageInfo):
    """The study's knowledge fine-tune, then RL (``train_seconds``: both)."""

    finetune: FinetuneAllInfo | None = None  # its loss curve apart, in finetune_loss_curve
    finetune_loss_curve: list[tuple[int, float]] | None = None
    rl: GRPOInfo | None = None
    expert_iteration: ExpertIterationInfo | None = None
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


def named_entities(q: Question, vocab: set[str]) -> set[str]:
    """Entity words the question names; where it names none (a reversal asks from a description),
    those of its premises. Not the premises of every question: in a hierarchy every inference shares
    a premise with another (all animals' facts meet at "animal"), so grouping by premises would join
    the whole dataset into one group."""
    named = {w.lower() for w in _WORD.findall(q.context) if w.lower() in vocab}
    return named or question_entities(q, vocab)


def _groups(qs: Sequence[Question], vocab: set[str]) -> list[list[Question]]:
    """Questions joined when they name an entity word in common (connected components of
    :func:`named_entities`), in first-seen order."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    ents = [sorted(named_entities(q, vocab)) or [f"#q:{q.id}"] for q in qs]
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
    taken; their held-out questions train RL and none of their held-out questions is evaluated. Their
    recall questions (trained facts asked in a new phrasing) are evaluated: RL never trains on one, and
    the recall gate needs every one of them (a dataset's recall split is otherwise halved). A group
    with an entity in ``foreign`` (another dataset's vocabulary) is never drawn.
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
    keep = [q for q in ds.questions if q.id not in taken_ids or q.split in recall]
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


def starts_from(settings: Settings) -> tuple[str, Any]:
    """The model stage RL starts from: the study's knowledge fine-tune (its reports pair the RL model
    with that start, e.g. the thinker against the same knowledge answering directly)."""
    return "finetune_all", settings.finetune


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

    questions = rl_questions(ctx, settings)
    path = rl_checkpoint_dir(ctx, settings, questions)
    if (path / DONE_MARKER).exists():
        with Timer() as t:
            model, tok, saved = load_finished(ctx, settings.finetune, path)
        return Built(model, tok, Info.read(saved).model_copy(update={
            "reused": True, "load_seconds": round(t.seconds, 3), "checkpoint": str(path)}))
    model, tok, ft_info = finetune_all(ctx, settings.finetune)
    answerer = frozen_copy(model) if settings.answerer == "frozen" else None
    work = path.parent / (path.name + ".work")  # trainer checkpoints: kept until the final model is saved
    if settings.method == "grpo":
        model, record = _grpo(ctx, settings, questions, model, tok, answerer, work)
    else:
        model, record = _expert_iteration(ctx, settings, questions, model, tok, answerer)
    info = Info(finetune=ft_info.model_copy(update={"loss_curve": None}), finetune_loss_curve=ft_info.loss_curve,
                train_seconds=round(float(ft_info.train_seconds or 0.0) + float(record.train_seconds or 0.0), 3),
                rl_questions=[q.id for q in questions], rl_datasets=list(settings.rl_dataset),
                **{"rl" if settings.method == "grpo" else "expert_iteration": record})
    save_checkpoint(model, tok, info.model_dump(mode="json", exclude_none=True), path)
    shutil.rmtree(work, ignore_errors=True)
    return Built(model, tok, info.model_copy(update={"checkpoint": str(path)}))


def frozen_copy(model: Any) -> Any:
    """A copy of ``model`` that no optimizer sees: the reward's answerer."""
    import copy

    frozen = copy.deepcopy(model)
    frozen.eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


def _grpo(ctx: CellContext, settings: Settings, questions: list[Question], model: Any, tok: Any, answerer: Any,
          work: Path) -> tuple[Any, GRPOInfo]:
    from genmodes.training.grpo import grpo_train

    parse = statement_parsers(ctx, settings, questions) if settings.format_weight else None
    model, rl_info = grpo_train(model, tok, questions, settings, ctx.seed, work, progress=ctx.progress, parse=parse,
                                answerer=answerer)
    return model, GRPOInfo(**rl_info)


def question_datasets(ctx: CellContext, settings: Settings) -> dict[str, Dataset]:
    """RL-training question id -> its RL dataset."""
    dss = study_datasets(ctx)
    out: dict[str, Dataset] = {}
    for name in settings.rl_dataset:
        ds = dss[name]
        for q in (ds.rl_train_questions if isinstance(ds, StudyDataset) else ds.questions):
            out.setdefault(q.id, ds)
    return out


def _expert_iteration(ctx: CellContext, settings: Settings, questions: list[Question], model: Any, tok: Any,
                      answerer: Any) -> tuple[Any, ExpertIterationInfo]:
    from genmodes.training.expert_iteration import expert_iteration
    from genmodes.training.thoughts import audit_thought

    ds_of = question_datasets(ctx, settings)
    knowledge = {id(ds): set(ds.knowledge) for ds in ds_of.values()}

    def audit(q: Question, thought: str) -> str:
        ds = ds_of[q.id]
        return audit_thought(ds, q, thought, knowledge=knowledge[id(ds)])["retrieval"]

    assert settings.expert_iteration is not None  # filled in by the settings' validator
    model, record = expert_iteration(model, tok, questions, settings.expert_iteration, seed=ctx.seed,
                                     max_tokens=settings.max_thought_tokens, temperature=settings.temperature,
                                     instruction=settings.instruction, lead=settings.lead, answerer=answerer,
                                     audit=audit, progress=ctx.progress)
    return model, ExpertIterationInfo(**record, answerer=settings.answerer)


def validate(settings: Settings, check: StageCheck) -> None:
    """The knowledge fine-tune's checks, and a thought that fits the model's window."""
    from genmodes.conditions.finetune import check_chain_drills, validate as validate_finetune

    where = dataclasses.replace(check, where=f"{check.where}: finetune")
    validate_finetune(settings.finetune.model_copy(update={"chain_drills": None, "recall_drills_on_chain": False}), where)
    check_chain_drills(settings.finetune, where, study=True)
    check.check_window("max_thought_tokens", settings.max_thought_tokens)


def estimate(settings: Settings, cost: Any) -> StageCost:
    """The study's knowledge fine-tune (shared with finetune_all), then GRPO or expert iteration once per
    seed."""
    from genmodes.conditions.finetune_all import study_texts

    out = cost.finetune("finetune_all", settings.finetune, study_texts(cost.datasets, settings.finetune),
                        study_wide=True)
    if not cost.first(["rl", settings.model_dump(mode="json")], study_wide=True):
        out.note = "shares an RL model built by an earlier cell"
        return out
    # the fine-tune's own note: shared (built by an earlier cell) or its stopping rule's (trained here)
    shared = " (its fine-tuned start shared)" if out.train_s == 0 else ""
    start = f"; its fine-tune {out.note}" if out.note and not shared else ""
    if settings.method == "grpo":
        out.train_s += cost.load_s + settings.steps * cost.grpo_step(settings)
        out.note = "GRPO" + shared + start
        return out
    seconds, assumed = _expert_iteration_seconds(settings, cost)
    out.train_s += cost.load_s + seconds
    out.note = f"expert iteration{shared}: {assumed}{start}"
    return out


def _expert_iteration_seconds(settings: Settings, cost: Any) -> tuple[float, str]:
    """Each round samples ``samples`` thoughts per RL question in batches of ``generation_batch``,
    scores every one with the answerer, and fine-tunes on the kept ones, each costed at the round's
    shapes: a sampling batch timed on the configured model with the RL questions' prompts at the
    round's temperature, to the thought budget (a batch decodes until its longest row ends, and among
    a batch of sampled thoughts one usually reaches the budget); the verdicts as the scorer runs them
    on every (question, thought); the fine-tune on the kept share at chance (1 / the number of
    choices: RL questions are the ones the fine-tuned model cannot answer yet; an estimate, not a
    bound) at a timed step of its shape. The thoughts scored and trained on are taken at their
    expected length (:func:`genmodes.training.thoughts.expected_thought_tokens`: the warm start's
    drills, where the fine-tune has them), not at the budget. Returns (seconds, what it assumed)."""
    from genmodes.training.finetune import FinetuneSettings, encode_examples, plan_rows
    from genmodes.training.thoughts import answer_context, expected_thought_tokens, think_prompt

    ei = settings.expert_iteration or ExpertIterationSettings()
    warm = settings.finetune.warm_start()
    qs: list[Question] = []
    thought: dict[str, str] = {}  # RL question id -> a stand-in of its dataset's expected thought
    lengths = []
    for name in settings.rl_dataset:
        d = cost.datasets[name]
        tokens = expected_thought_tokens(d, cost.tokenizer, settings.max_thought_tokens, warm)
        lengths.append(tokens)
        qs += d.rl_train_questions if isinstance(d, StudyDataset) else []
        thought.update({q.id: cost.stand_in(tokens) for q in qs if q.id not in thought})
    repeated = [q for q in qs for _ in range(ei.samples)]
    prompts = [think_prompt(q, settings.instruction, settings.lead) for q in repeated]
    gen = math.ceil(len(repeated) / ei.generation_batch) * cost.generation_batch(
        prompts, ei.generation_batch, settings.max_thought_tokens, settings.temperature)
    score = cost.scoring([answer_context(q, thought[q.id], settings.instruction, lead=settings.lead)
                          for q in repeated], questions=repeated)
    kept = round(ei.samples * sum(1 / max(1, len(q.choices)) for q in qs))
    examples = [(think_prompt(q, settings.instruction, settings.lead), " " + thought[q.id]) for q in qs]
    encoded = encode_examples(cost.tokenizer, examples)
    example_tokens = round(sum(len(ids) for ids, _ in encoded) / max(1, len(encoded)))
    ft = FinetuneSettings(lr=ei.lr, epochs=ei.epochs, batch_size=ei.batch_size, seq_len=ei.seq_len)
    steps = plan_rows([([0] * example_tokens, [])] * kept, ft)[1] if kept else 0
    tune = steps * cost.finetune_step(ft, examples=examples)
    mean = sum(lengths) / max(1, len(lengths))
    return ei.rounds * (gen + score + tune), (
        f"{ei.rounds} x ({len(repeated)} thoughts sampled to {settings.max_thought_tokens} tokens ~{gen:.0f} s, "
        f"scored at ~{mean:.0f} tokens ~{score:.0f} s, ~{kept} kept (chance): {steps} fine-tune steps ~{tune:.0f} s)")


# ------------------------------------------------------------------------------------------ report

def report_sections(view: Any) -> list[tuple]:
    """GRPO: the reward and thought length over RL steps (did RL learn anything: the mean reward over the
    last fifth of the steps against the first fifth). Expert iteration: a row per round (what it
    sampled, kept, and how often the sampled thoughts stated the premises). Then the train-time compute
    RL adds."""
    from genmodes.conditions.finetune import stopping_rule_section

    return (_grpo_sections(view) + _expert_iteration_sections(view) + _compute_section(view)
            + stopping_rule_section(view))


def stopping_rule_run(info: Info) -> Any:
    """The knowledge fine-tune RL started from, where it trained under a stopping rule."""
    ft = info.finetune
    return ft if ft is not None and ft.until_recall is not None else None


@dataclass
class _RLModel:
    """One RL training of the run and the conditions whose cells score its model."""

    conditions: list[str]
    seed: int
    record: Any

    @property
    def name(self) -> str:
        """For a figure's legend: the first condition (the table names them all) and the seed."""
        return f"{self.conditions[0]} seed {self.seed}"


def _distinct(view: Any, part: str) -> list[_RLModel]:
    """One entry per distinct RL training of ``part`` (its checkpoint, per seed): every cell of every
    condition that scores the model shares it, and each is named once."""
    models: dict[tuple, _RLModel] = {}
    for cell, info in view.cells:
        rec = getattr(info, part)
        if rec is None or not rec.reward_curve:
            continue
        key = (cell.seed, info.checkpoint or f"{cell.condition} {str(rec.reward_curve)[:200]}")
        m = models.setdefault(key, _RLModel([], cell.seed, rec))
        if cell.condition not in m.conditions:
            m.conditions.append(cell.condition)
    order = {c: i for i, c in enumerate(view.condition_order)}
    for m in models.values():
        m.conditions.sort(key=lambda c: order.get(c, len(order)))
    return list(models.values())


def _grpo_sections(view: Any) -> list[tuple]:
    from genmodes.training.grpo import fifths

    runs = _distinct(view, "rl")
    if not runs:
        return []
    out: list[tuple] = [("h", 2, "RL: reward and thought length over steps")]
    for title, ylabel, stem, curve in (("RL reward (mean over the step's thoughts)", "reward", "rl_reward",
                                        lambda r: r.reward_curve),
                                       ("thought length", "tokens per thought", "rl_thought_length",
                                        lambda r: r.thought_length_curve)):
        path = view.figures.loss_curves(title, [(m.name, curve(m.record)) for m in runs], view.figure_path(stem),
                                        xlabel="RL step", ylabel=ylabel, markers=True)
        out.append(("img", path, title.split(" (")[0]))
    body = []
    for m in runs:
        r = m.record
        first, last = fifths(r.reward_curve)
        body.append([", ".join(m.conditions), str(m.seed), str(r.steps if r.steps is not None else view.DASH),
                     str(r.questions if r.questions is not None else view.DASH),
                     view.DASH if first is None else f"{first:.3f}", view.DASH if last is None else f"{last:.3f}",
                     view.DASH if first is None else ("yes" if last > first else "no")])
    out.append(("p", "RL learned something when the mean reward over the last fifth of the steps is above that "
                     "of the first fifth."))
    out.append(("table", ["RL model (the conditions scoring it)", "seed", "steps", "RL questions",
                          "reward, first fifth", "reward, last fifth", "learned"], body))
    return out


def _expert_iteration_sections(view: Any) -> list[tuple]:
    runs = _distinct(view, "expert_iteration")
    if not runs:
        return []

    def pct(x: Any) -> str:
        return view.DASH if x is None else view.pct(x)

    out: list[tuple] = [("h", 2, "RL by expert iteration: sampled, kept and retrieved, per round")]
    for title, ylabel, stem, curve in (
            ("RL reward per round (accuracy after a sampled thought)", "reward", "rl_reward",
             lambda r: r.reward_curve),
            ("thoughts stating every premise, per round", "share of sampled thoughts", "rl_retrieval",
             lambda r: [(x["round"], x.get("retrieval_rate") or 0.0) for x in r.rounds])):
        path = view.figures.loss_curves(title, [(m.name, curve(m.record)) for m in runs], view.figure_path(stem),
                                        xlabel="round", ylabel=ylabel, markers=True)
        out.append(("img", path, title.split(" (")[0]))
    body = []
    for m in runs:
        for x in m.record.rounds:
            loss = x.get("loss_curve") or []
            body.append([", ".join(m.conditions), str(m.seed), str(x["round"]), str(x["sampled"]), pct(x["reward"]), f"{x['p_right']:.3f}",
                         f"{x['kept']} ({x['questions_kept']} q)", f"{x['thought_tokens']:.1f}",
                         pct(x.get("retrieval_rate")), pct(x.get("kept_retrieval_rate")),
                         pct(x.get("reward_stated")), pct(x.get("reward_not_stated")),
                         view.DASH if not loss else f"{loss[0][1]:.3f} -> {loss[-1][1]:.3f}"])
    out.append(("p", "Each round samples thoughts for every RL question, keeps those after which the answerer "
                     f"({runs[0].record.answerer or 'policy'}) picks the right option, and fine-tunes on them (loss on "
                     "the thought only). Reward: accuracy after a sampled thought; retrieved: sampled thoughts "
                     "stating every premise the question needs."))
    out.append(("table", ["RL model (the conditions scoring it)", "seed", "round", "sampled", "reward", "p(right)", "kept", "tokens / thought",
                          "retrieved (sampled)", "retrieved (kept)", "reward, stated", "reward, not stated",
                          "fine-tune loss"], body))
    return out


def _compute_section(view: Any) -> list[tuple]:
    compute = []
    for m in _distinct(view, "rl") + _distinct(view, "expert_iteration"):
        rec = m.record
        steps = rec.steps if isinstance(rec, GRPOInfo) else len(rec.rounds)
        compute.append([", ".join(m.conditions), str(m.seed), str(steps), str(rec.tokens_generated),
                        view.DASH if rec.train_seconds is None else f"{rec.train_seconds:.0f}"])
    if not compute:
        return []
    return [("h", 2, "RL compute: train time"),
            ("p", "RL adds train-time compute: thoughts generated and scored in training, once per RL model and "
                  "seed for the whole study (steps: GRPO steps or expert-iteration rounds)."),
            ("table", ["RL model (the conditions scoring it)", "seed", "RL steps", "RL tokens generated",
                       "RL seconds"], compute)]
