"""Repeat drills: a run of distinct words, then the same run again (or reversed), shared by the
from-scratch families.

Every word of the second run but its first is determined by the first run, so with the loss on those
words only (a document's meta ``targets``, training's ``loss: targets``) a drill is the densest
practice in reading the context: induction-like lookup forms on such copies (Olsson et al. 2022),
and associative recall is learned when the keys are fresh in every sequence (Arora et al. 2023,
"Zoology"). A reversed drill practises reading a word's predecessor, the direction a reversal in
context needs. Drills state nothing; they are marked ``fresh``, so a training run with
``fresh_bindings`` rebinds their words from the dataset's rebind pools every epoch.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

from genmodes.data.types import Document

# Chooses a drill's word pool (and the drill's extra meta) after its length is drawn: a family that
# mixes pools draws the choice from the same stream, in that order.
PoolChoice = Callable[[random.Random], tuple[Sequence[str], dict[str, Any]]]


def drill_targets(n: int) -> list[int]:
    """Word positions a drill of runs of ``n`` words trains on: the second run but its first word (where
    the second run starts is not determined)."""
    return list(range(n + 1, 2 * n))


def repeat_drill(rng: random.Random, pool: Sequence[str] | PoolChoice, min_len: int, max_len: int,
                 reversed_share: float) -> tuple[list[str], list[int], dict[str, Any]]:
    """One drill: (its words, its targets, extra meta from the pool choice). Draws, in this order: the
    run length, the pool (a :data:`PoolChoice`), the run, whether it is reversed."""
    n = rng.randint(min_len, max_len)
    words, meta = pool(rng) if callable(pool) else (pool, {})
    run = rng.sample(list(words), n)
    second = run[::-1] if reversed_share and rng.random() < reversed_share else run
    return run + second, drill_targets(n), meta


def repeat_documents(n_drills: int, rng: random.Random, pool: Sequence[str] | PoolChoice, min_len: int, max_len: int,
                     reversed_share: float, id_prefix: str, kind: str = "repeat") -> list[Document]:
    """``n_drills`` drills as documents (ids ``<id_prefix>00000``...), each marked fresh with its targets."""
    docs = []
    for k in range(n_drills):
        words, targets, meta = repeat_drill(rng, pool, min_len, max_len, reversed_share)
        docs.append(Document(id=f"{id_prefix}{k:05d}", text=" ".join(words), kind=kind,
                             meta={"fresh": True, "targets": targets, **meta}))
    return docs
