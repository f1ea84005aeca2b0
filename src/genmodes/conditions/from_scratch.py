"""Model stage ``scratch``: a small transformer trained from scratch on the dataset [P2, latent learning].

P2's from-scratch track: a decoder-only model trained only on the dataset's own sequences recalls
what it was trained on and uses facts placed in its context, yet fails latent tests from its
parameters (held-out reversals: ~0%; codebook mappings defined but never used); an oracle episodic
memory (the support training sequences plus distractors, in context) recovers them, but only when
training held episodes that pair related information in one sequence.

The stage trains (or reuses) the model; what it sees before each question is the context stage's:

- ``none`` (parametric): each question alone. The dataset's ``*_in_context`` splits already put the
  forward fact / the codebook definition in the question, so the same cell also gives the
  in-context result.
- ``retrieval`` with ``method: oracle``: P2's oracle episodic memory, the question's support
  documents plus ``k`` distractors (:mod:`genmodes.conditions.retrieval`; its ``max_support``,
  ``distractor_kinds``, ``distractors: options`` and ``separator`` options come from here). The
  short form ``kind: from_scratch, settings: {context: oracle, ...}`` maps onto it in P2's plain
  format: no instruction, documents joined by a newline (the word-level tokenizer drops whitespace,
  so the retrieved documents read as one episode: the format that in-context episodes teach in
  training), distractors of the support's kinds. The distractors come from the documents the model
  trained on (:attr:`Built.documents`).

``include_episodes: false`` is P2's ablation: the in-context episodes are left out of training
(relations: ``episode`` documents are dropped; codebook: the definition is cut from encoding
sequences that carry one, the encoding kept). P2 finds retrieval then no longer helps.

The settings key the trained model in ``ctx.artifact_dir("scratch", ...)``, so the parametric and
the oracle cells of one config train once. A file lock makes a second cell wait for the first.
The config's model must be ``scratch`` (``OWN_MODEL``: checked before anything runs).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field

from genmodes.conditions.base import Built, CellContext, ModelStageInfo, Settings as _Base, StageCost, write_json_atomic
from genmodes.data.types import Dataset, Document
from genmodes.errors import ConfigError
from genmodes.training import scratch

DONE = "done.json"
MODEL_DIR = "model"
OWN_MODEL = "scratch"  # the config's model spec: this stage builds the model itself


# The short form ``kind: from_scratch`` with ``context: oracle``: these of its settings go to the
# oracle retrieval, which gets P2's plain format unless they say otherwise.
ORACLE_OPTIONS = ("k", "max_support", "distractor_kinds", "distractors", "separator")
ORACLE_FORMAT = {"method": "oracle", "instruction": "", "separator": "\n", "distractor_kinds": "support"}


class Settings(_Base, scratch.TrainConfig):
    include_episodes: bool = Field(True, description="train on the in-context episodes (False: P2's ablation)")

    def training_key(self) -> dict[str, Any]:
        return {**self.train_fields(), "include_episodes": self.include_episodes,
                "format": scratch.FORMAT_VERSION}


RECALL_GATE = True  # its latent results count only where it knows the facts (genmodes.experiments.gates)


class Info(ModelStageInfo):
    """The trained model (``train_seconds``: training only, not the curve evaluations)."""

    steps: int | None = None
    final_loss: float | None = None  # mean loss over the last eval_every steps
    resumed_from: int | None = None
    parameters: int | None = None
    vocab_size: int | None = None
    training_documents: int | None = None
    epochs: float | None = None
    device: str | None = None
    artifact: str | None = None  # the model's folder, relative to the run folder
    curves_file: str | None = None  # learning curves (loss, accuracy per split), relative to the run folder
    steps_to_90: dict[str, int | None] | None = None  # per split: the first curve step at >= 90% (None: never)


def report_sections(view: Any) -> list[tuple]:
    """The learning curves of every trained model (loss and accuracy per split over steps)."""
    out: list[tuple] = []
    notes = []
    for cell, info in view.cells:
        if not info.curves_file:
            continue
        rows, problem = view.read_curves(info.curves_file)
        if problem:
            notes.append(f"{cell.cell}: {problem}.")
        elif rows:
            path = view.figures.training_curves(f"{cell.dataset} / {cell.condition} seed {cell.seed}", rows,
                                                view.figure_path(f"curves_{cell.cell}"))
            out.append(("img", path, f"training curves of {cell.cell}"))
    if notes:
        out.append(("list", notes))
    return [("h", 2, "Learning curves of the models trained from scratch")] + out if out else []


def estimate(settings: Settings, cost: Any) -> StageCost:
    """Training steps (timed on the model this cell would build: its dataset's tokenizer, its size) plus
    the learning-curve evaluations every ``eval_every`` steps; the cell scores with that model."""
    ds = cost.dataset
    tok = cost.memo(("scratch tokenizer", cost.dataset_name), lambda: scratch.build_tokenizer(dataset_vocabulary(ds)))
    key = f"scratch {cost.dataset_name} " + json.dumps(settings.training_key(), sort_keys=True, default=str)
    step_s, model = cost.memo(("scratch steps", key), lambda: _time_steps(settings, tok, ds, cost, key))
    cost.use_model(tok, model)
    if not cost.first(["scratch", settings.training_key()]):
        return StageCost(note="shares a model built by an earlier cell")
    splits = {q.split for q in ds.questions}
    per_q = cost.scoring() / max(1, len(ds.questions))
    per_eval = min(settings.eval_questions * len(splits), len(ds.questions)) * per_q
    train_s = settings.steps * step_s + settings.steps // settings.eval_every * per_eval
    if settings.until_ready is None:
        return StageCost(train_s=train_s)
    # the stopping rule ends training at a curve point: at most `steps`, at the least the first point
    first = min(settings.eval_every, settings.steps) * step_s + per_eval
    return StageCost(train_s=train_s, stoppable_s=max(0.0, train_s - first),
                     note=f"at most: {settings.steps} steps, stops at the first curve point (every "
                          f"{settings.eval_every}) where recall and the ladder reach {settings.until_ready:g}")


def _time_steps(settings: Settings, tok: Any, ds: Dataset, cost: Any, key: str) -> tuple[float, Any]:
    """One training step's seconds (twelve steps minus two, fresh models: the difference cancels building
    the model and packing the first epoch, and ten steps keep the load's noise below a one-step
    difference's) and the model timed."""
    import tempfile

    cost.say(f"from-scratch training steps ({cost.dataset_name}, {cost.condition})")
    docs = training_documents(ds, settings.include_episodes)
    texts, roles = [d.text for d in docs], _document_roles(ds, docs)
    times, model = [], None
    runs = (2, 12)
    for n in runs:
        model = scratch.build_model(settings, tok, seed=0).to(cost.device)
        quiet = settings.model_copy(update={"steps": n, "warmup_steps": 0, "eval_every": 10 ** 9,
                                            "checkpoint_every": 10 ** 9, "curriculum_steps": 0})
        with tempfile.TemporaryDirectory() as tmp:
            times.append(cost.timed(lambda: scratch.train(model, tok, texts, Path(tmp), quiet, seed=0, progress=False,
                                                          **roles)))
    step_s = (times[1] - times[0]) / (runs[1] - runs[0]) if times[1] > times[0] else times[1] / runs[1]
    # training packs every epoch anew (shuffled, practice rebound), which the difference above cancels:
    # one epoch's packing, spread over its steps
    quiet = settings.model_copy(update={"curriculum_steps": 0})
    packer, _ = scratch._packers(tok, texts, quiet, 0, **roles)
    rows = []
    pack_s = cost.timed(lambda: rows.extend(packer.epoch_rows(0)))
    step_s += pack_s / max(1.0, len(rows) / settings.batch_size)
    cost.record_step(key, step_s)
    return step_s, model.eval()


def is_episode(doc: Document) -> bool:
    return doc.kind == "episode" or (doc.kind == "sequence" and bool(doc.meta.get("with_definition")))


def training_documents(ds: Dataset, include_episodes: bool = True) -> list[Document]:
    """The documents the model trains on. Without episodes: relation episodes dropped, codebook
    sequences stripped of their definition line."""
    if include_episodes:
        return list(ds.documents)
    out = []
    for d in ds.documents:
        if d.meta.get("fresh"):  # a fresh episode without its definition is a random mapping: noise
            continue
        if not is_episode(d):
            out.append(d)
        elif d.kind == "sequence":  # keep the encoding, drop the definition before it
            text = d.text.splitlines()[-1]
            meta = {**d.meta, "with_definition": False}
            if d.meta.get("targets") is not None:  # word positions: shifted past the dropped definition
                cut = len(d.text.split()) - len(text.split())
                meta["targets"] = [t - cut for t in d.meta["targets"] if t >= cut]
            out.append(Document(id=d.id, text=text, kind=d.kind, facts=d.facts, meta=meta))
    return out


def dataset_vocabulary(ds: Dataset) -> list[str]:
    """The dataset's declared vocabulary plus every word of its documents, questions and choices."""
    texts = [d.text for d in ds.documents] + [q.context for q in ds.questions]
    texts += [c for q in ds.questions for c in q.choices]
    return sorted(set(ds.meta.get("vocabulary", [])) | set(scratch.vocabulary_of(texts)))


def _device(ctx: CellContext) -> str:
    if ctx.device:
        return ctx.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _artifact_root(ctx: CellContext) -> Path:
    return ctx.shared_dir if ctx.shared_dir is not None else ctx.workdir / "shared"


def ensure_trained(ctx: CellContext, settings: Settings, callback: Any = None) -> tuple[Any, Any, Info]:
    """Train the model of ``settings`` (or load it if trained, or resume an interrupted run)."""
    from transformers.utils import logging as hf_logging

    if ctx.model_spec not in ("scratch", "", None):
        raise ConfigError(f"model stage 'scratch' builds its own model: set the config's model to 'scratch' "
                          f"(got {ctx.model_spec!r})")
    art = ctx.artifact_dir("scratch", train=settings.training_key())
    art.mkdir(parents=True, exist_ok=True)
    hf_logging.disable_progress_bar()  # a tiny model saves and loads in milliseconds
    try:
        return _ensure_trained(ctx, settings, art, callback)
    finally:
        hf_logging.enable_progress_bar()


def _ensure_trained(ctx: CellContext, settings: Settings, art: Path, callback: Any) -> tuple[Any, Any, Info]:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    from genmodes.scoring import accuracy_by_split

    device = _device(ctx)
    with open(art / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second cell with the same settings waits, then reuses
        done = art / DONE
        if done.exists():
            info = json.loads(done.read_text())
            tok = PreTrainedTokenizerFast.from_pretrained(str(art / MODEL_DIR))
            model = LlamaForCausalLM.from_pretrained(str(art / MODEL_DIR), dtype="float32").to(device).eval()
            return model, tok, Info.read(info).model_copy(update={"reused": True})
        docs = training_documents(ctx.dataset, settings.include_episodes)
        tok = scratch.build_tokenizer(dataset_vocabulary(ctx.dataset))
        model = scratch.build_model(settings, tok, seed=ctx.seed).to(device)
        res = scratch.train(model, tok, [d.text for d in docs], art, settings, seed=ctx.seed,
                            eval_questions=ctx.dataset.questions, evaluate=accuracy_by_split,
                            progress=ctx.progress, callback=callback, ready=_ready(ctx.dataset, settings),
                            **_document_roles(ctx.dataset, docs))
        tmp = art / f".{MODEL_DIR}.tmp"
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        _replace_dir(tmp, art / MODEL_DIR)
        n_params = sum(p.numel() for p in model.parameters())
        info = {"train_seconds": res.train_seconds, "steps": res.steps, "final_loss": res.final_loss,
                "resumed_from": res.resumed_from, "parameters": n_params, "vocab_size": len(tok),
                "training_documents": len(docs), "epochs": res.epochs,
                "device": device, "artifact": os.path.relpath(art, _artifact_root(ctx).parent),
                "curves_file": os.path.relpath(res.curves_file, _artifact_root(ctx).parent),
                "steps_to_90": steps_to(scratch.read_curves(res.curves_file), 0.9),
                **({"trained_without_practice": True} if not settings.include_episodes else {})}
        write_json_atomic(done, info)
        (art / scratch.CHECKPOINT).unlink(missing_ok=True)  # the final model replaces it
        return model, tok, Info(**info, reused=False)


def _ready(ds: Dataset, settings: Settings) -> Any:
    """The stopping rule of ``until_ready`` (None without it): the model knows the facts (every recall
    split at the threshold) and, if it trained on practice, reads its context (every calibration rung at
    its own threshold). A model trained without practice is not held to the ladder: P2's ablation is the
    same knowledge without the practice."""
    if settings.until_ready is None:
        return None
    recall = list(ds.meta.get("recall_splits") or [])
    ladder = dict(ds.meta.get("calibration_splits") or {}) if settings.include_episodes else {}
    if not recall and not ladder:
        raise ConfigError(f"bad setting 'until_ready': dataset family {ds.family!r} declares no recall or calibration splits")
    need = {**{s: settings.until_ready for s in recall}, **ladder}
    return lambda acc: all(acc.get(s, 0.0) >= t for s, t in need.items())


def _document_roles(ds: Dataset, docs: list[Document]) -> dict[str, Any]:
    """What training needs to know of each document beyond its text: whether it is a practice episode
    (new entities every epoch with ``fresh_bindings``), whether the curriculum starts on it (practice
    over entities training binds nothing to: practice over the relations' own entities waits, so the
    lookup forms on entities whose embeddings serve nothing else), the words its context determines
    (``loss: targets``), and the dataset's pools of rebindable entities."""
    fresh = [bool(d.meta.get("fresh")) for d in docs]
    own = ("story", "relation_entities", "real_words")
    early = [f and not any(d.meta.get(k) for k in own) for f, d in zip(fresh, docs)]
    late = ({"late_targets": [d.meta.get("late_targets", d.meta.get("targets")) for d in docs]}
            if any("late_targets" in d.meta for d in docs) else {})  # after the curriculum, where they differ
    return {"early": early, "fresh": fresh, "targets": [d.meta.get("targets") for d in docs],
            "pools": ds.meta.get("rebind_pools") or [], **late}


def steps_to(curve: list[dict[str, Any]], level: float) -> dict[str, int | None]:
    """Per split of the learning curve, the first step whose sampled accuracy reaches ``level``
    (None: never)."""
    out: dict[str, int | None] = {}
    for row in curve:
        for split, acc in (row.get("accuracy") or {}).items():
            if out.get(split) is None:
                out[split] = row["step"] if acc >= level else None
    return out


def _replace_dir(src: Path, dst: Path) -> None:
    from genmodes.io import replace_dir

    replace_dir(src, dst)


def build(ctx: CellContext, settings: Settings) -> Built:
    model, tok, info = ensure_trained(ctx, settings)
    return Built(model, tok, info=info, documents=training_documents(ctx.dataset, settings.include_episodes))
