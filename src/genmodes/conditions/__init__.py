"""Learning conditions: one module each, one shared interface (:mod:`genmodes.conditions.base`)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from genmodes.errors import ConfigError

CONDITION_MODULES = {
    "pretrained": "genmodes.conditions.pretrained",
    "finetune": "genmodes.conditions.finetune",
    "in_context": "genmodes.conditions.in_context",
    "augmented_finetune": "genmodes.conditions.augment",
    "retrieval": "genmodes.conditions.retrieval",
    "from_scratch": "genmodes.conditions.from_scratch",
    "baseline": "genmodes.conditions.baseline",
}


def condition_names() -> list[str]:
    return list(CONDITION_MODULES)


def get_condition(kind: str) -> ModuleType:
    if kind not in CONDITION_MODULES:
        raise ConfigError(f"unknown condition {kind!r}; known: {', '.join(CONDITION_MODULES)}")
    return importlib.import_module(CONDITION_MODULES[kind])


def make_settings(kind: str, settings: dict[str, Any] | None, where: str = "") -> Any:
    mod = get_condition(kind)
    try:
        return mod.Settings(**(settings or {}))
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(x) for x in err["loc"]) or "?"
        raise ConfigError(f"{where or kind}: bad setting {key!r}: {err['msg']}") from None
