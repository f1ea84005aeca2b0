"""``finetune_all`` model stage: fine-tune on the documents of every dataset in the study [P3].

P3 (arXiv 2604.01430) fine-tunes the knowledge of several disjoint datasets into one model before
RL, so the model that RL starts from (and the prompted-thinking baseline) knows every dataset, the
transfer ones included. Settings are ``finetune``'s; one checkpoint serves every cell of the study
(:func:`finetune_all`, also the start of the ``rl`` stage).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from genmodes.conditions.base import Built, CellContext, StageCost
from genmodes.conditions.finetune import Info as _FTInfo, Settings as _FT, train_on_texts
from genmodes.conditions.finetune import report_sections, validate  # noqa: F401 - its hooks: finetune's
from genmodes.data.types import Dataset
from genmodes.errors import ConfigError


class Settings(_FT):
    pass


RECALL_GATE = True  # its latent results count only where it knows the facts (genmodes.experiments.gates)


class Info(_FTInfo):
    """The study's knowledge fine-tune: every dataset's documents."""

    documents: int | None = None
    datasets: list[str] | None = None


def estimate(settings: Settings, cost: Any) -> StageCost:
    return cost.finetune("finetune_all", settings, study_texts(cost.datasets, settings), study_wide=True)


def study_texts(datasets: dict[str, Dataset], ft: _FT) -> list[str]:
    """The texts the study's fine-tune trains on (documents of ``ft.kinds``, every dataset)."""
    return [d.text for _, ds in sorted(datasets.items()) for d in ds.documents if ft.kinds is None or d.kind in ft.kinds]


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
    model, tok, info = train_on_texts(sctx, ft, [d.text for d in docs], tag="finetune_all", recall=recall)
    return model, tok, Info(**{**info.model_dump(), "documents": len(docs), "datasets": sorted(study_datasets(ctx))})


def build(ctx: CellContext, settings: Settings) -> Built:
    model, tok, info = finetune_all(ctx, settings)
    return Built(model, tok, info)
