"""Model stage ``pretrained``: the model as loaded, no exposure to the dataset. With context ``none``
it is the contamination / chance check [P1]: on nonsense entities the model must score near chance."""

from __future__ import annotations

from genmodes.conditions.base import Built, CellContext, Settings as _Base


class Settings(_Base):
    pass


def build(ctx: CellContext, settings: Settings) -> Built:
    model, tok = ctx.load_model()
    return Built(model, tok, info={"train_seconds": 0.0})
