"""``finetune_all`` model stage: fine-tune on the documents of every dataset in the study [P3].

P3 (arXiv 2604.01430) fine-tunes the knowledge of several disjoint datasets into one model before
RL, so the model that RL starts from (and the prompted-thinking baseline) knows every dataset, the
transfer ones included. Settings are ``finetune``'s; one checkpoint serves every cell of the study
(:func:`genmodes.conditions.rl.finetune_all`).
"""

from __future__ import annotations

from typing import Any

from genmodes.conditions.base import Built, CellContext
from genmodes.conditions.finetune import Settings as _FT


class Settings(_FT):
    pass


def build(ctx: CellContext, settings: Settings) -> Built:
    from genmodes.conditions.rl import finetune_all

    model, tok, info = finetune_all(ctx, settings)
    return Built(model, tok, info)
