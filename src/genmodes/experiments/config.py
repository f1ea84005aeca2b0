"""Study configs: a YAML grid of model x datasets x conditions x seeds, validated up front.

Every problem is reported as one line naming the field (``conditions[2].settings.lr: ...``) before
anything runs, so a typo never costs a half-finished grid.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from genmodes.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(_Strict):
    """One dataset of the grid: generated (``family``), a saved folder (``path``) or the published
    reversal-curse files (``berglund``)."""

    name: str | None = None
    family: str | None = None
    path: str | None = None
    berglund: str | None = None
    seed: int = 0
    settings: dict[str, Any] = Field(default_factory=dict)
    splits: list[str] | None = None  # score only these splits
    max_per_split: int | None = Field(default=None, gt=0)  # seeded subsample of questions per split

    @model_validator(mode="after")
    def _one_source(self) -> "DatasetSpec":
        given = [k for k in ("family", "path", "berglund") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of 'family', 'path' or 'berglund'")
        if self.settings and not self.family:
            raise ValueError("'settings' only applies to a generated dataset ('family')")
        if self.name is None:
            src = self.family or Path(self.path or self.berglund or "").name
            self.name = "berglund" if self.berglund else src
        return self


class ConditionSpec(_Strict):
    name: str
    kind: str | None = None  # the condition module; defaults to `name`
    settings: dict[str, Any] = Field(default_factory=dict)

    @property
    def kind_(self) -> str:
        return self.kind or self.name


class ScoringSpec(_Strict):
    batch_tokens: int = Field(default=4096, gt=0)
    chat_template: bool = False  # score inside the tokenizer's chat template (genmodes.chat)


class RunConfig(_Strict):
    name: str
    model: str = "smollm2-135m"
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    datasets: list[DatasetSpec] = Field(min_length=1)
    conditions: list[ConditionSpec] = Field(min_length=1)
    scoring: ScoringSpec = Field(default_factory=ScoringSpec)
    threads: int | None = Field(default=None, gt=0)  # torch threads (default: torch's choice)

    @model_validator(mode="after")
    def _unique(self) -> "RunConfig":
        for what, names in (("dataset", [d.name for d in self.datasets]),
                            ("condition", [c.name for c in self.conditions])):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"duplicate {what} name(s): {', '.join(sorted(dup))} (give each a distinct 'name')")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("duplicate seeds")
        return self


def _loc(err: dict[str, Any]) -> str:
    out = ""
    for x in err["loc"]:
        out += f"[{x}]" if isinstance(x, int) else (f".{x}" if out else str(x))
    return out or "config"


def parse_config(raw: Any, source: str = "config") -> RunConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a YAML mapping at the top level")
    try:
        cfg = RunConfig(**raw)
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{source}: {_loc(err)}: {msg}") from None
    _check_parts(cfg, source)
    return cfg


def _check_parts(cfg: RunConfig, source: str) -> None:
    """Family names and settings, condition kinds and settings: all checked before anything runs."""
    from genmodes.conditions import make_settings
    from genmodes.data.families import make_config
    from genmodes.errors import DataError

    for i, d in enumerate(cfg.datasets):
        if d.family:
            try:
                make_config(d.family, d.settings)
            except DataError as e:
                raise ConfigError(f"{source}: datasets[{i}]: {e}") from None
        for key in ("path", "berglund"):
            p = getattr(d, key)
            if p and not Path(p).expanduser().is_dir():
                raise ConfigError(f"{source}: datasets[{i}].{key}: no such directory: {p}")
    for i, c in enumerate(cfg.conditions):
        make_settings(c.kind_, c.settings, where=f"{source}: conditions[{i}] ({c.name})")


def load_config(path: str | os.PathLike) -> RunConfig:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML ({getattr(e, 'problem', None) or e})") from None
    return parse_config(raw, source=str(path))


def dump_config(cfg: RunConfig) -> str:
    d = cfg.model_dump(mode="json")
    for c, spec in zip(d["conditions"], cfg.conditions):
        c["kind"] = spec.kind_
    return yaml.safe_dump(d, sort_keys=False, allow_unicode=True)
