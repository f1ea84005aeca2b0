"""Registry of dataset families: one module per family, each defining ``FAMILY = Family(...)``.

To add a family: write ``genmodes/data/families/<name>.py`` with a pydantic config (defaults are the
published sizes, ``extra="forbid"`` so a misspelt key is an error), a pure ``generate(config, seed)``
returning a :class:`~genmodes.data.types.Dataset`, and add its name to ``FAMILY_MODULES`` below.
Every entity it draws goes through ``config.vocabulary`` (a :class:`~genmodes.data.nonsense.VocabularyPart`
or None): pass it to ``NonsenseWords(..., part=config.vocabulary)`` and filter any other entity pool
with ``config.vocabulary.holds``, so datasets declared with different parts share no entity.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer

from genmodes.data.nonsense import VocabularyPart
from genmodes.data.types import Dataset, Document, Fact
from genmodes.errors import DataError


class FamilyConfig(BaseModel):
    """Base of every family's config: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vocabulary: VocabularyPart | None = Field(
        None, description="{part: P, of: N}: draw entities only from part P of N disjoint parts of the "
                          "family's vocabulary (datasets with different parts share no entity, whatever the seed)")

    # settings added after datasets were published: unset, they are left out of the dumped config
    # (meta.json, cell keys), which then is what it was before the setting existed
    OMIT_WHEN_UNSET: ClassVar[tuple[str, ...]] = ("vocabulary",)
    # the same for settings added with a default other than None: left out while at their default
    OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _without_unset_additions(self, handler):
        out = handler(self)
        if isinstance(out, dict):
            for k in self.OMIT_WHEN_UNSET:
                if out.get(k) is None:
                    out.pop(k, None)
            for k in self.OMIT_AT_DEFAULT:
                if k in out and out[k] == type(self).model_fields[k].default:
                    out.pop(k)
        return out


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    config: type[FamilyConfig]
    generate: Callable[[Any, int], Dataset]
    # text -> the ground-truth-comparable facts it states (for checking generated augmentations);
    # None where the family's statements cannot be parsed.
    parse_statements: Callable[[str], list[Fact]] | None = None
    # the true consequences (reversals, inferences) of the training documents, written straight from
    # the ground-truth knowledge: the "oracle" augmentation upper bound.
    oracle_augmentations: Callable[[Dataset], list[Document]] | None = None
    # a fact as the training documents word it (one sentence that ``parse_statements`` reads back as
    # that fact): the gold premises of an oracle thought, the facts of a recall drill; None where the
    # family cannot write its facts.
    render_fact: Callable[[Fact], str] | None = None


FAMILY_MODULES = {
    "simple_reversals": "genmodes.data.families.simple_reversals",
    "simple_syllogisms": "genmodes.data.families.simple_syllogisms",
    "reversal_curse": "genmodes.data.families.reversal_curse",
    "semantic_structure": "genmodes.data.families.semantic_structure",
    "codebook": "genmodes.data.families.codebook",
    "relations": "genmodes.data.families.relations",
}


def family_names() -> list[str]:
    return list(FAMILY_MODULES)


def get_family(name: str) -> Family:
    if name not in FAMILY_MODULES:
        raise DataError(f"unknown dataset family {name!r}; known: {', '.join(FAMILY_MODULES)}")
    return importlib.import_module(FAMILY_MODULES[name]).FAMILY


def parse_overrides(pairs: list[str] | None) -> dict[str, str]:
    """``["n_facts=20", ...]`` -> ``{"n_facts": "20"}`` (values are validated by the family config)."""
    out: dict[str, str] = {}
    for p in pairs or []:
        if "=" not in p:
            raise DataError(f"--set expects key=value, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def make_config(name: str, overrides: dict[str, Any] | None = None) -> FamilyConfig:
    fam = get_family(name)
    try:
        return fam.config(**(overrides or {}))
    except ValidationError as e:
        from genmodes.suggest import extra_key_message

        err = e.errors()[0]
        key = ".".join(str(x) for x in err["loc"]) or "?"
        msg = extra_key_message(fam.config, err) or err["msg"]
        raise DataError(f"{name}: bad setting {key!r}: {msg}") from None


def make_dataset(name: str, seed: int = 0, overrides: dict[str, Any] | None = None) -> Dataset:
    """Generate a dataset: a pure function of (family, settings, seed)."""
    cfg = make_config(name, overrides)
    return get_family(name).generate(cfg, seed)
