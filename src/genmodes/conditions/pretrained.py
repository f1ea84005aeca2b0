"""``pretrained``: no exposure to the dataset. The contamination / chance check [P1]: on nonsense
entities the model must score near chance."""

from __future__ import annotations

from genmodes.conditions.base import CellContext, Prepared, Settings as _Base


class Settings(_Base):
    pass


def prepare(ctx: CellContext, settings: Settings) -> Prepared:
    model, tok = ctx.load_model()
    return Prepared(model, tok, info={"train_seconds": 0.0, "prefix_tokens": 0})
