"""``finetune_all`` model stage: fine-tune on the documents of every dataset in the study [P3].

P3 (arXiv 2604.01430) fine-tunes the knowledge of several disjoint datasets into one model before
RL, so the model that RL starts from (and the prompted-thinking baseline) knows every dataset, the
transfer ones included. Settings are ``finetune``'s; one checkpoint serves every cell of the study
(:func:`finetune_all`, also the start of the ``rl`` stage).

``augment: [datasets]`` is P3's contrast to RL thinking, augmented fine-tuning on A only: from the
study's fine-tune (the checkpoint of the same settings without ``augment``, shared), training goes on
for ``augment_epochs`` over the listed datasets' oracle augmentations (every true consequence their
documents do not state, written from the ground truth: the upper bound of augmentation, P1) mixed
with the study's texts (so the other datasets' facts are rehearsed, not forgotten).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from pydantic import Field, model_serializer

from genmodes.conditions.base import Built, CellContext, StageCheck, StageCost
from genmodes.conditions.finetune import Info as _FTInfo, Settings as _FT, drills, train_on_texts, without_unset_drills
from genmodes.conditions.finetune import report_sections  # noqa: F401 - its hook: finetune's
from genmodes.data.types import Dataset
from genmodes.errors import ConfigError


class Settings(_FT):
    augment: list[str] | None = Field(None, min_length=1, description="datasets whose oracle augmentations the "
                                      "study's fine-tune goes on training on (augmented fine-tuning on those only)")
    augment_epochs: float = Field(1.0, gt=0, le=100, description="epochs over the augmentations and the study's "
                                  "texts after the study's fine-tune")

    @model_serializer(mode="wrap")
    def _without_unset_augment(self, handler: Any) -> Any:
        # without augment, the dump is the plain study fine-tune's (one checkpoint for both)
        out = handler(self)
        if isinstance(out, dict) and not out.get("augment"):
            out.pop("augment", None)
            out.pop("augment_epochs", None)
        # as finetune's dump (this serializer replaces its): one key for the study's fine-tune, whether
        # a condition or the rl stage's start names it
        return without_unset_drills(out)

    def plain(self) -> "Settings":
        """These settings without the augmentation: the study fine-tune it continues from."""
        return self.model_copy(update={"augment": None, "augment_epochs": 1.0})


RECALL_GATE = True  # its latent results count only where it knows the facts (genmodes.experiments.gates)


class Info(_FTInfo):
    """The study's knowledge fine-tune: every dataset's documents (then, with ``augment``, the
    augmentations: their count and the continued run's loss curve)."""

    documents: int | None = None
    datasets: list[str] | None = None
    augmented_datasets: list[str] | None = None
    augmentations: int | None = None
    augment_loss_curve: list[tuple[int, float]] | None = None
    augment_seconds: float | None = None


def stopping_rule_run(info: Info) -> Info | None:
    """The study's fine-tune under its stopping rule; of an augmented model, the fine-tune it continued
    from (its own seconds, without the continued run's)."""
    if info.until_recall is None:
        return None
    if info.augment_seconds is None:
        return info
    return info.model_copy(update={"train_seconds": round(float(info.train_seconds or 0.0) - info.augment_seconds, 3)})


def validate(settings: Settings, check: StageCheck) -> None:
    """finetune's checks; augmented datasets exist and their family writes oracle augmentations."""
    from genmodes.conditions.finetune import check_chain_drills, validate as finetune_validate
    from genmodes.data.families import get_family

    finetune_validate(settings.model_copy(update={"chain_drills": None, "recall_drills_on_chain": False}), check)
    check_chain_drills(settings, check, study=True)
    for name in settings.augment or []:
        if name not in check.datasets:
            raise ConfigError(f"{check.where}: augment: no dataset {name!r} in this study (it has {list(check.datasets)})")
        if get_family(check.datasets[name].family).oracle_augmentations is None:
            raise ConfigError(f"{check.where}: augment: dataset {name!r} ({check.datasets[name].family}) has no "
                              "oracle augmentations")


def estimate(settings: Settings, cost: Any) -> StageCost:
    out = cost.finetune("finetune_all", settings.plain(), study_texts(cost.datasets, settings), study_wide=True)
    if settings.augment:
        more = cost.finetune("finetune_all_augmented", augment_run(settings), augmented_texts(cost.datasets, settings),
                             study_wide=True)
        out.train_s += more.train_s
        out.note = more.note or out.note
    return out


def augment_run(settings: Settings) -> Settings:
    """The continued run's settings: ``augment_epochs`` after the study's fine-tune, however that one
    stopped (its stopping rule does not apply again)."""
    return settings.plain().model_copy(update={"epochs": settings.augment_epochs, "steps": None,
                                               "until_recall": None, "max_epochs": None})


def augmented_texts(datasets: dict[str, Dataset], ft: Settings) -> list[str]:
    """What the augmented run trains on after the study's fine-tune: the listed datasets' oracle
    augmentations, then the study's texts."""
    from genmodes.data.families import get_family

    aug = [d.text for name in ft.augment or [] for d in get_family(datasets[name].family).oracle_augmentations(
        datasets[name])]
    return aug + study_texts(datasets, ft)


def study_texts(datasets: dict[str, Dataset], ft: _FT) -> list[str]:
    """The texts the study's fine-tune trains on (documents of ``ft.kinds``, every dataset, and their
    recall drills with ``recall_drills``)."""
    return [d.text for name, ds in sorted(datasets.items())
            for d in [x for x in ds.documents if ft.kinds is None or x.kind in ft.kinds] + drills(ds, ft, name=name)]


def study_datasets(ctx: CellContext) -> dict[str, Dataset]:
    return dict(ctx.datasets)


def study_context(ctx: CellContext) -> CellContext:
    """``ctx`` with a dataset made of every study dataset's documents: artifacts keyed by the study,
    so every cell of it shares one fine-tuned checkpoint."""
    dss = study_datasets(ctx)
    key = json.dumps([[n, d.meta.get("source_content_hash") or d.meta.get("content_hash") or d.family, d.seed]
                      for n, d in sorted(dss.items())])
    docs = [doc for _, d in sorted(dss.items()) for doc in d.documents]
    combined = Dataset(family="study", config={"datasets": sorted(dss)}, seed=0, documents=docs, questions=[],
                       knowledge=[], meta={"content_hash": hashlib.sha256(key.encode()).hexdigest()})
    return dataclasses.replace(ctx, dataset=combined)


def finetune_all(ctx: CellContext, ft: _FT) -> tuple[Any, Any, Info]:
    sctx = study_context(ctx)
    docs = [d for d in sctx.dataset.documents if ft.kinds is None or d.kind in ft.kinds]
    if not docs:
        raise ConfigError(f"finetune_all: no documents of kinds {ft.kinds} in the study's datasets")
    # the stopping rule waits for every dataset's recall (one fine-tune holds them all)
    recall = ctx.recall_probe(study_datasets(ctx)) if ft.until_recall is not None else None
    model, tok, info = train_on_texts(sctx, ft, study_texts(study_datasets(ctx), ft), tag="finetune_all",
                                      recall=recall)
    return model, tok, Info(**{**info.model_dump(), "documents": len(docs), "datasets": sorted(study_datasets(ctx))})


def build(ctx: CellContext, settings: Settings) -> Built:
    if settings.augment:
        return Built(*augmented(ctx, settings))
    model, tok, info = finetune_all(ctx, settings)
    return Built(model, tok, info)


def augmented(ctx: CellContext, settings: Settings) -> tuple[Any, Any, Info]:
    """The study's fine-tune, then ``augment_epochs`` over the augmentations and the study's texts
    (one checkpoint, shared by every cell, reused)."""
    from genmodes.conditions.finetune import load_finished
    from genmodes.io import wait_lock
    from genmodes.training.finetune import DONE_MARKER, save_checkpoint, texts_hash, train

    sctx = study_context(ctx)
    texts = augmented_texts(study_datasets(ctx), settings)
    # keyed as the study's fine-tune it continues from (its stopping rule: by the recall it stops on)
    recall = ctx.recall_probe(study_datasets(ctx)) if settings.until_recall is not None else None
    key: dict[str, Any] = {"settings": settings.key(), "texts": texts_hash(texts)}
    if recall is not None:
        key["recall"] = recall.key()
    path = sctx.artifact_dir("finetune_all_augmented", **key)
    with wait_lock(path.with_name(path.name + ".lock")):
        if (path / DONE_MARKER).exists():
            model, tok, saved = load_finished(ctx, settings, path)
            return model, tok, Info.read(saved).model_copy(update={"reused": True, "checkpoint": str(path)})
        model, tok, base = finetune_all(ctx, settings.plain())
        model, run = train(model, tok, texts, augment_run(settings), ctx.seed, progress=ctx.progress,
                           desc="finetune_all augmented")
        n_aug = len(texts) - len(study_texts(study_datasets(ctx), settings))
        info = base.model_copy(update={
            "augmented_datasets": list(settings.augment or []), "augmentations": n_aug,
            "augment_loss_curve": run["loss_curve"], "augment_seconds": run["train_seconds"],
            "train_seconds": round(float(base.train_seconds or 0.0) + run["train_seconds"], 3),
            "tokens_trained": (base.tokens_trained or 0) + run["tokens_trained"], "reused": False})
        save_checkpoint(model, tok, info.model_dump(mode="json", exclude_none=True), path)
    return model, tok, info.model_copy(update={"checkpoint": str(path)})
