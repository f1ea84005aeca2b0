"""Model stage ``pretrained``: the model as loaded, no exposure to the dataset. With context ``none``
it is the contamination / chance check [P1]: on nonsense entities the model must score near chance."""

from __future__ import annotations

from genmodes.conditions.base import Built, CellContext, ModelStageInfo, Settings as _Base


class Settings(_Base):
    pass


class Info(ModelStageInfo):
    pass


def build(ctx: CellContext, settings: Settings) -> Built:
    model, tok = ctx.load_model()
    return Built(model, tok, info=Info(train_seconds=0.0))
