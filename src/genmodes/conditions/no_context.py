"""Context stage ``none``: each question alone, as the dataset wrote it [P1, parametric conditions].

A dataset's ``*_in_context`` splits already put the facts a question needs in the question itself
(P2), so the same cell also gives those in-context results."""

from __future__ import annotations

from genmodes.conditions.base import Built, CellContext, ContextStageInfo, Prepared, Settings as _Base


class Settings(_Base):
    pass


class Info(ContextStageInfo):
    prefix_tokens: int = 0


def apply(ctx: CellContext, built: Built, settings: Settings) -> Prepared:
    return Prepared(built.model, built.tokenizer, info=Info(prefix_tokens=0))
