"""``from_scratch``: a small transformer trained from scratch on the dataset [P2, latent learning].

P2's from-scratch track: a decoder-only model trained only on the dataset's own sequences recalls
what it was trained on and uses facts placed in its context, yet fails latent tests from its
parameters (held-out reversals: ~0%; codebook mappings defined but never used); an oracle episodic
memory (the support training sequences plus distractors, in context) recovers them, but only when
training held episodes that pair related information in one sequence.

One module, three ways to score the same trained model (settings ``context``):

- ``none`` (parametric): each question alone. The dataset's ``*_in_context`` splits already put the
  forward fact / the codebook definition in the question, so the same cell also gives the
  in-context result.
- ``oracle``: the question's support training documents (the first ``max_support``; all by default)
  plus ``k`` distractor training documents (of the support's kinds unless ``distractor_kinds`` says
  otherwise), shuffled with a seed per question, joined by ``separator``, then the question.
  ``distractors: options`` makes the first distractors one document about each wrong option (the
  rest random, ``k`` in all or more if the options need it): with random distractors the answer is
  often the only option in the context, and copying it would pass for using the context. The
  word-level tokenizer drops whitespace, so the retrieved documents read as one episode: the format
  that in-context episodes teach in training.

``include_episodes: false`` is P2's ablation: the in-context episodes are left out of training
(relations: ``episode`` documents are dropped; codebook: the definition is cut from encoding
sequences that carry one, the encoding kept). P2 finds retrieval then no longer helps.

Training settings (everything but ``context``, ``k``, ``max_support``, ``distractor_kinds``,
``separator``) key the trained model in ``ctx.artifact_dir("scratch", ...)``, so the parametric and
the oracle cells of one config train once. A file lock makes a second cell wait for the first.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from genmodes.conditions.base import CellContext, Prepared, Settings as _Base, write_json_atomic
from genmodes.data.types import Dataset, Document, Question
from genmodes.errors import ConfigError
from genmodes.models import scratch
from genmodes.scoring import accuracy_by_split

DONE = "done.json"
MODEL_DIR = "model"


class Settings(_Base, scratch.TrainConfig):
    include_episodes: bool = Field(True, description="train on the in-context episodes (False: P2's ablation)")
    context: Literal["none", "oracle"] = "none"
    k: int = Field(4, ge=0, description="distractor documents in an oracle context")
    max_support: int | None = Field(None, ge=1, description="support documents in an oracle context (None: all)")
    distractor_kinds: list[str] | None = Field(None, description="kinds distractors come from (None: the support's)")
    distractors: Literal["random", "options"] = Field(
        "random", description="options: one distractor mentions each wrong option (so copying an option seen "
                              "in the context is chance), the rest random")
    separator: str = Field("\n", description="between documents of an oracle context")

    def training_key(self) -> dict[str, Any]:
        return {**self.train_fields(), "include_episodes": self.include_episodes,
                "format": scratch.FORMAT_VERSION}


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
            out.append(Document(id=d.id, text=d.text.splitlines()[-1], kind=d.kind,
                                facts=d.facts, meta={**d.meta, "with_definition": False}))
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


def ensure_trained(ctx: CellContext, settings: Settings, callback: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """Train the model of ``settings`` (or load it if trained, or resume an interrupted run)."""
    from transformers.utils import logging as hf_logging

    if ctx.model_spec not in ("scratch", "", None):
        raise ConfigError(f"from_scratch builds its own model: set the config's model to 'scratch' "
                          f"(got {ctx.model_spec!r})")
    art = ctx.artifact_dir("scratch", train=settings.training_key())
    art.mkdir(parents=True, exist_ok=True)
    hf_logging.disable_progress_bar()  # a tiny model saves and loads in milliseconds
    try:
        return _ensure_trained(ctx, settings, art, callback)
    finally:
        hf_logging.enable_progress_bar()


def _ensure_trained(ctx: CellContext, settings: Settings, art: Path, callback: Any) -> tuple[Any, Any, dict[str, Any]]:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    device = _device(ctx)
    with open(art / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second cell with the same settings waits, then reuses
        done = art / DONE
        if done.exists():
            info = json.loads(done.read_text())
            tok = PreTrainedTokenizerFast.from_pretrained(str(art / MODEL_DIR))
            model = LlamaForCausalLM.from_pretrained(str(art / MODEL_DIR), dtype="float32").to(device).eval()
            return model, tok, {**info, "reused": True}
        docs = training_documents(ctx.dataset, settings.include_episodes)
        tok = scratch.build_tokenizer(dataset_vocabulary(ctx.dataset))
        model = scratch.build_model(settings, tok, seed=ctx.seed).to(device)
        res = scratch.train(model, tok, [d.text for d in docs], art, settings, seed=ctx.seed,
                            eval_questions=ctx.dataset.questions, evaluate=accuracy_by_split,
                            progress=ctx.progress, callback=callback)
        tmp = art / f".{MODEL_DIR}.tmp"
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        _replace_dir(tmp, art / MODEL_DIR)
        n_params = sum(p.numel() for p in model.parameters())
        info = {"train_seconds": res.train_seconds, "steps": res.steps, "final_loss": res.final_loss,
                "resumed_from": res.resumed_from, "parameters": n_params, "vocab_size": len(tok),
                "training_documents": len(docs), "epochs": res.epochs,
                "device": device, "artifact": os.path.relpath(art, _artifact_root(ctx).parent),
                "curves_file": os.path.relpath(res.curves_file, _artifact_root(ctx).parent)}
        write_json_atomic(done, info)
        (art / scratch.CHECKPOINT).unlink(missing_ok=True)  # the final model replaces it
        return model, tok, {**info, "reused": False}


def _replace_dir(src: Path, dst: Path) -> None:
    from genmodes.io import replace_dir

    replace_dir(src, dst)


def oracle_documents(q: Question, ds: Dataset, train_docs: list[Document], settings: Settings,
                     seed: int) -> list[Document]:
    """The support documents of ``q`` (the first ``max_support``) and ``k`` distractor training
    documents, shuffled with a seed of (seed, question id)."""
    by_id = {d.id: d for d in ds.documents}
    support = [by_id[s] for s in q.support if s in by_id][: settings.max_support]
    if not support:
        raise ConfigError(f"question {q.id} has no support document in the dataset: no oracle context")
    sid = set(q.support)  # other copies of a support document are no distractors
    kinds = set(settings.distractor_kinds) if settings.distractor_kinds else {d.kind for d in support}
    pool = [d for d in train_docs if d.kind in kinds and d.id not in sid]
    if len(pool) < settings.k:
        raise ConfigError(f"only {len(pool)} training documents of kinds {sorted(kinds)} for k={settings.k} distractors")
    rng = random.Random(f"oracle-{seed}-{q.id}")
    chosen = list(support)
    if settings.distractors == "options":
        in_context = {w for d in chosen for w in d.text.split()}
        for i, c in enumerate(q.choices):
            word = c.strip()
            if i == q.answer or word in in_context:
                continue
            about = [d for d in pool if word in d.text.split() and d not in chosen]
            if about:
                chosen.append(rng.choice(about))
                in_context |= set(chosen[-1].text.split())
    rest = [d for d in pool if d not in chosen]
    chosen += rng.sample(rest, max(0, settings.k - (len(chosen) - len(support))))
    rng.shuffle(chosen)
    return chosen


def prepare(ctx: CellContext, settings: Settings) -> Prepared:
    model, tok, info = ensure_trained(ctx, settings)
    info = {**info, "context": settings.context}
    if settings.context == "none":
        return Prepared(model, tok, question_context=lambda q: q.context, info=info)

    ds = ctx.dataset
    train_docs = training_documents(ds, settings.include_episodes)
    cache: dict[str, str] = {}

    def question_context(q: Question) -> str:
        if q.id not in cache:
            docs = oracle_documents(q, ds, train_docs, settings, ctx.seed)
            cache[q.id] = settings.separator.join(d.text.strip() for d in docs) + settings.separator + q.context
        return cache[q.id]

    lengths = [len(tok(question_context(q)).input_ids) for q in ds.questions]
    info.update({"k": settings.k, "max_support": settings.max_support,
                 "oracle_context_tokens_max": max(lengths, default=0),
                 "oracle_context_tokens_mean": sum(lengths) / max(1, len(lengths)),
                 "oracle_contexts_longer_than_seq_len": sum(n > settings.seq_len for n in lengths)})
    return Prepared(model, tok, question_context=question_context, info=info)
