"""Study configs: a YAML grid of model(s) x datasets x conditions x seeds, validated up front.

One ``model:`` (today's configs), or ``models: [a, b]``: the model is then a grid axis too (issue 13
item 2: P1 tried one family; several families in one study are the cross-family check it lacked).
A condition may name the ``datasets`` it runs on, so one study can hold, say, the headline conditions on
one dataset and an in-context budget sweep on another without their full product.

A condition is a model stage composed with a context stage (:mod:`genmodes.conditions`)::

    conditions:
      - name: finetune+retrieval
        model: {kind: finetune, epochs: 10}
        context: {kind: retrieval, method: bm25, k: 4}
      - name: finetune                     # short form: kind = name, settings as the kind's
        settings: {epochs: 10}

Every problem is reported as one line naming the field (``conditions[2].context.k: ...``) before
anything runs, so a typo never costs a half-finished grid.

:func:`parse_config` returns a :class:`Study`: the config with every condition's stages resolved and
validated once (:class:`StudyCondition`); the runner, executors, estimator, exporter and report take
it. Parsing imports no torch (stage modules import it where they use it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from genmodes.errors import ConfigError, DataError
from genmodes.limits import (MAX_CONDITION_SETTING, MAX_DATASET_SETTING, MAX_SEED, MAX_THREADS,
                             check_numbers)

MAX_CONFIG_BYTES = 1 << 20  # the largest study config in configs/ is a few KB
MAX_CONFIG_NODES = 100_000  # YAML aliases can expand a small file exponentially
MAX_NAME = 100  # names become folder names (cells/<dataset>__<condition>__s<seed>): 255 bytes at most
_BAD_NAME_CHARS = set('/\\\0:*?"<>|\n\r\t')


def _check_name(v: str | None, what: str = "name") -> str | None:
    """A name becomes a folder name: non-empty, no path separators, no leading dot, short."""
    if v is None:
        return v
    if not v.strip():
        raise ValueError(f"{what} is empty")
    bad = sorted(set(v) & _BAD_NAME_CHARS)
    if bad:
        raise ValueError(f"{what} {v[:40]!r} contains {bad[0]!r}; use letters, digits, '-', '_', '.', '+'")
    if v.startswith(".") or v != v.strip():
        raise ValueError(f"{what} {v[:40]!r} must not start with '.' or with/end in spaces")
    if len(v.encode()) > MAX_NAME:
        raise ValueError(f"{what} is {len(v.encode())} bytes long; at most {MAX_NAME} (it names folders)")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(_Strict):
    """One dataset of the grid: generated (``family``), a saved folder (``path``) or the published
    reversal-curse files (``berglund``)."""

    name: str | None = None
    family: str | None = None
    path: str | None = None
    berglund: str | None = None
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    settings: dict[str, Any] = Field(default_factory=dict)
    splits: list[str] | None = Field(default=None, min_length=1)  # score only these splits
    max_per_split: int | None = Field(default=None, gt=0, le=MAX_DATASET_SETTING)  # seeded subsample per split

    _name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))

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
            try:
                _check_name(self.name, "name (from the dataset's source; give a 'name')")
            except ValueError as e:
                raise ValueError(str(e)) from None
        return self


class Resources(_Strict):
    """What one cell asks of a Ray cluster (``--executor ray``): Ray's task resources. Where the cells
    run, not what they compute: left out of the run folder's config.yaml, so a run resumed on another
    cluster is the same run."""

    num_cpus: float | None = Field(default=None, gt=0, le=1024)
    num_gpus: float | None = Field(default=None, ge=0, le=64)
    memory_gb: float | None = Field(default=None, gt=0, le=1 << 20)  # Ray's `memory`, in GB


class ConditionSpec(_Strict):
    name: str
    # short form: a condition kind (genmodes.conditions.SHORT_FORMS; defaults to `name`) and its settings
    kind: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    # run this condition on these datasets only (names); default every dataset of the config
    datasets: list[str] | None = Field(default=None, min_length=1)
    # composed form: {kind: <model stage>, ...its settings} and {kind: <context stage>, ...its settings}
    model: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    resources: Resources | None = None  # this condition's cells, instead of the config's `resources`

    _name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))

    @field_validator("model", "context", mode="before")
    @classmethod
    def _kind_only(cls, v: Any) -> Any:
        return {"kind": v} if isinstance(v, str) else v  # `model: finetune` = `model: {kind: finetune}`

    @property
    def composed(self) -> bool:
        return self.model is not None or self.context is not None

    def spec_runs_on(self, dataset: str) -> bool:
        return self.datasets is None or dataset in self.datasets

    def resolve(self, where: str | None = None) -> Any:
        """The model stage and context stage (or baseline) with validated settings
        (:class:`genmodes.conditions.Condition`); one-line :class:`ConfigError` naming the field, after
        ``where`` (this condition's path, e.g. ``config.yaml: conditions[1]``)."""
        from genmodes.conditions import resolve

        if self.composed:
            return resolve(self.kind, self.settings, model=self.model, context=self.context,
                           where=where or f"condition {self.name!r}")
        return resolve(self.kind or self.name, self.settings,
                       where=f"{where} ({self.name})" if where else self.name)


class Comparison(_Strict):
    """A paired comparison the study declares: condition ``a`` minus condition ``b``, on ``split`` of
    ``dataset`` (left out: every split, every dataset both conditions run on). The report tests the
    declared comparisons as one family (Holm-corrected), apart from the exploratory all-pairs table."""

    a: str  # a condition's name
    b: str  # another condition's name: the difference is a - b
    dataset: str | None = None  # a dataset's name (default: every dataset both run on)
    split: str | None = Field(default=None, min_length=1)  # a split of it (default: every split)


class SplitComparison(_Strict):
    """A split contrast the study declares: split ``a`` minus split ``b`` of ``dataset`` (left out:
    every dataset that has both), for each of ``conditions`` (left out: every condition), e.g. a
    designed probe's congruent minus incongruent items. The two splits hold different questions, so
    the report gives an unpaired bootstrap interval."""

    a: str = Field(min_length=1)  # a split
    b: str = Field(min_length=1)  # another split of the same dataset: the difference is a - b
    conditions: list[str] | None = Field(default=None, min_length=1)
    dataset: str | None = None

    @model_validator(mode="after")
    def _two(self) -> "SplitComparison":
        if self.a == self.b:
            raise ValueError(f"a and b are both {self.a!r}; contrast two splits")
        return self


class ScoringSpec(_Strict):
    batch_tokens: int = Field(default=4096, gt=0, le=1 << 24)
    chat_template: bool = False  # score inside the tokenizer's chat template (genmodes.chat)


DEFAULT_MODEL = "smollm2-135m"


def model_label(spec: str) -> str:
    """A model spec as a folder-name part (cell ids of a several-model run): the spec itself when it
    is a plain name (smollm2-135m), else the last part of its path without .gguf."""
    label = spec.strip().rstrip("/\\")
    if set(label) & _BAD_NAME_CHARS:
        label = label.replace("\\", "/").rsplit("/", 1)[-1]
    label = label.removesuffix(".gguf")
    label = "".join("_" if ch in _BAD_NAME_CHARS else ch for ch in label).lstrip(".") or "model"
    return label[:MAX_NAME]


class RunConfig(_Strict):
    name: str
    # one model (a string; smollm2-135m when neither is given) or several (`models`): exactly one of them
    model: str | None = None
    models: list[str] | None = Field(default=None, min_length=1, max_length=100)
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] = Field(default_factory=lambda: [0], min_length=1,
                                                                  max_length=10_000)
    datasets: list[DatasetSpec] = Field(min_length=1)
    conditions: list[ConditionSpec] = Field(min_length=1)
    scoring: ScoringSpec = Field(default_factory=ScoringSpec)
    threads: int | None = Field(default=None, gt=0, le=MAX_THREADS)  # torch threads (default: torch's choice)
    resources: Resources | None = None  # per cell, under --executor ray (default: 1 CPU)
    # A trained model's latent results count only where it knows the facts: its recall accuracy must
    # reach this for the report to call them a test (genmodes.experiments.gates).
    recall_gate: float = Field(default=0.9, gt=0, le=1, description="recall accuracy a trained model must reach "
                                                                     "for its latent results to count")
    # paired comparisons the study declares (the report tests them as one family, Holm-corrected)
    compare: list[Comparison] = Field(default_factory=list, max_length=10_000)
    # split contrasts the study declares (a designed probe's two halves), per condition
    compare_splits: list[SplitComparison] = Field(default_factory=list, max_length=1_000)

    _name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or "\0" in v or "\n" in v):
            raise ValueError("model must be a model spec (e.g. smollm2-135m, tiny-random, a folder or a .gguf)")
        return v

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str] | None) -> list[str] | None:
        for i, m in enumerate(v or []):
            if not m.strip() or "\0" in m or "\n" in m:
                raise ValueError(f"models[{i}] must be a model spec (e.g. smollm2-135m, tiny-random, a folder "
                                 "or a .gguf)")
        return v

    @property
    def model_specs(self) -> list[str]:
        """The models of the grid, in config order (one for a ``model:`` config)."""
        return list(self.models) if self.models is not None else [self.model or DEFAULT_MODEL]

    @property
    def several_models(self) -> bool:
        """Whether the model is a grid axis (``models:``), which puts the model in cell ids."""
        return self.models is not None

    @model_validator(mode="after")
    def _unique(self) -> "RunConfig":
        if self.model is not None and self.models is not None:
            raise ValueError("give 'model' (one) or 'models' (a list), not both")
        if self.models is None and self.model is None:
            self.model = DEFAULT_MODEL
        if self.models is not None:
            dup = {m for m in self.models if self.models.count(m) > 1}
            if dup:
                raise ValueError(f"models: duplicate model(s): {', '.join(sorted(dup))}")
            labels = [model_label(m) for m in self.models]
            clash = sorted({m for m, lab in zip(self.models, labels) if labels.count(lab) > 1})
            if clash:
                raise ValueError(f"models: {', '.join(clash)} would share the folder name "
                                 f"{model_label(clash[0])!r} in cell ids; rename a file or folder")
        for what, names in (("dataset", [d.name for d in self.datasets]),
                            ("condition", [c.name for c in self.conditions])):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"duplicate {what} name(s): {', '.join(sorted(dup))} (give each a distinct 'name')")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("duplicate seeds")
        names = [d.name for d in self.datasets]
        for c in self.conditions:
            unknown = [d for d in c.datasets or [] if d not in names]
            if unknown:
                raise ValueError(f"condition {c.name!r}: datasets: no dataset named {unknown[0]!r} "
                                 f"(have: {', '.join(map(str, names))})")
        self._check_compare([str(n) for n in names])
        conds = [c.name for c in self.conditions]
        for i, sc in enumerate(self.compare_splits):
            unknown = [c for c in sc.conditions or [] if c not in conds]
            if unknown:
                raise ValueError(f"compare_splits[{i}].conditions: no condition named {unknown[0]!r} "
                                 f"(have: {', '.join(conds)})")
            if sc.dataset is not None and sc.dataset not in names:
                raise ValueError(f"compare_splits[{i}].dataset: no dataset named {sc.dataset!r} "
                                 f"(have: {', '.join(map(str, names))})")
        return self

    def _check_compare(self, datasets: list[str]) -> None:
        """Declared comparisons name conditions and datasets of this config, and a dataset both run on
        (their splits are checked once the datasets are built: :func:`check_compare_splits`)."""
        conds = {c.name: c for c in self.conditions}
        for i, cmp in enumerate(self.compare):
            for side in ("a", "b"):
                name = getattr(cmp, side)
                if name not in conds:
                    raise ValueError(f"compare[{i}].{side}: no condition named {name!r} "
                                     f"(have: {', '.join(conds)})")
            if cmp.a == cmp.b:
                raise ValueError(f"compare[{i}]: a and b are both {cmp.a!r}; compare two conditions")
            if cmp.dataset is not None and cmp.dataset not in datasets:
                raise ValueError(f"compare[{i}].dataset: no dataset named {cmp.dataset!r} "
                                 f"(have: {', '.join(datasets)})")
            both = [d for d in ([cmp.dataset] if cmp.dataset else datasets)
                    if conds[cmp.a].spec_runs_on(d) and conds[cmp.b].spec_runs_on(d)]
            if not both:
                where = f"dataset {cmp.dataset!r}" if cmp.dataset else "any dataset"
                raise ValueError(f"compare[{i}]: {cmp.a!r} and {cmp.b!r} do not both run on {where}")


def _loc(err: dict[str, Any]) -> str:
    out = ""
    for x in err["loc"]:
        out += f"[{x}]" if isinstance(x, int) else (f".{x}" if out else str(x))
    return out or "config"


@dataclass(frozen=True)
class StudyCondition:
    """A condition of a study, resolved: its name, where it runs, and its stages with validated settings
    (:class:`genmodes.conditions.Condition`)."""

    spec: ConditionSpec
    stages: Any  # genmodes.conditions.Condition

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        """For records and reports: the short form's kind, else ``model+context``."""
        return self.stages.kind

    @property
    def datasets(self) -> list[str] | None:
        return self.spec.datasets

    @property
    def resources(self) -> Resources | None:
        return self.spec.resources

    @property
    def is_baseline(self) -> bool:
        return self.stages.is_baseline

    def runs_on(self, dataset: str) -> bool:
        return self.spec.datasets is None or dataset in self.spec.datasets


@dataclass(frozen=True)
class Study:
    """A parsed config with every condition resolved once (see the module docstring)."""

    config: RunConfig
    conditions: tuple[StudyCondition, ...]

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def model(self) -> str | None:
        return self.config.model

    @property
    def seeds(self) -> list[int]:
        return self.config.seeds

    @property
    def datasets(self) -> list[DatasetSpec]:
        return self.config.datasets

    @property
    def scoring(self) -> ScoringSpec:
        return self.config.scoring

    @property
    def threads(self) -> int | None:
        return self.config.threads

    @property
    def resources(self) -> Resources | None:
        return self.config.resources

    @property
    def recall_gate(self) -> float:
        return self.config.recall_gate

    @property
    def model_specs(self) -> list[str]:
        return self.config.model_specs

    @property
    def compare(self) -> list[Comparison]:
        return self.config.compare

    @property
    def several_models(self) -> bool:
        return self.config.several_models

    def condition(self, name: str) -> StudyCondition:
        return next(c for c in self.conditions if c.name == name)


def parse_config(raw: Any, source: str = "config", check_paths: bool = True) -> Study:
    """The study a config describes, every part checked (``check_paths``: also that dataset folders
    exist; a report of a finished run reads its config without them)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a YAML mapping at the top level")
    _check_shape(raw, source)
    try:
        cfg = RunConfig(**{str(k): v for k, v in raw.items()})
    except ValidationError as e:
        from genmodes.suggest import extra_key_message

        err = e.errors()[0]
        msg = extra_key_message(RunConfig, err, "key") or err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{source}: {_loc(err)}: {msg}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply") from None
    return Study(cfg, _check_parts(cfg, source, check_paths))


def _check_shape(raw: Any, source: str) -> None:
    """Bounded size and depth, string keys, no NUL characters: checked iteratively, before pydantic
    (which would recurse) and before any value becomes a path."""
    from genmodes.io import MAX_NESTING

    stack, nodes = [(raw, 1, "")], 0
    while stack:
        x, depth, where = stack.pop()
        nodes += 1
        if nodes > MAX_CONFIG_NODES:
            raise ConfigError(f"{source}: more than {MAX_CONFIG_NODES:,} values (YAML aliases expanding?)")
        if depth > MAX_NESTING:
            raise ConfigError(f"{source}: {where or 'config'}: nested more than {MAX_NESTING} levels deep")
        if isinstance(x, dict):
            for k, v in x.items():
                if not isinstance(k, str):
                    raise ConfigError(f"{source}: {where or 'config'}: key {k!r} is not a string")
                stack.append((v, depth + 1, f"{where}.{k}" if where else k))
        elif isinstance(x, list):
            stack.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(x))
        elif isinstance(x, str) and "\0" in x:
            raise ConfigError(f"{source}: {where}: contains a NUL character")


def _check_parts(cfg: RunConfig, source: str, check_paths: bool = True) -> tuple[StudyCondition, ...]:
    """Family names and settings, condition kinds and settings, sizes: all checked before anything
    runs; the conditions resolved. (Dataset contents, splits and the model are checked by the runner,
    still before the run folder is made.)"""
    from genmodes.data.families import make_config

    for i, d in enumerate(cfg.datasets):
        where = f"{source}: datasets[{i}]"
        if d.family:
            try:
                fc = make_config(d.family, d.settings)
            except DataError as e:
                raise ConfigError(f"{where}: {e}") from None
            check_numbers(fc.model_dump(), f"{where}.settings", MAX_DATASET_SETTING)
        for key in ("path", "berglund"):
            p = getattr(d, key)
            if p and check_paths and not Path(p).expanduser().is_dir():
                raise ConfigError(f"{where}.{key}: no such directory: {p}")
    out = []
    for i, c in enumerate(cfg.conditions):
        where = f"{source}: conditions[{i}]"
        r = c.resolve(where=where)
        parts = ((r.baseline, "settings"),) if r.model is None else \
            ((r.model_settings, "model" if c.composed else "settings"),
             (r.context_settings, "context" if c.composed else "settings"))
        for settings, part in parts:
            check_numbers(settings.model_dump(), f"{where}.{part}", MAX_CONDITION_SETTING)
        out.append(StudyCondition(c, r))
    return tuple(out)


def check_compare_splits(study: Study, datasets: dict[str, Any]) -> None:
    """Each declared comparison's ``split`` is a split of a dataset both its conditions run on
    (``datasets``: the study's datasets as built, by name); one-line :class:`ConfigError` otherwise."""
    for i, cmp in enumerate(study.compare):
        if cmp.split is None:
            continue
        a, b = study.condition(cmp.a), study.condition(cmp.b)
        names = [n for n in datasets if (cmp.dataset is None or n == cmp.dataset) and a.runs_on(n) and b.runs_on(n)]
        have = list(dict.fromkeys(q.split for n in names for q in datasets[n].questions))
        if cmp.split not in have:
            raise ConfigError(f"compare[{i}].split: no split {cmp.split!r} in "
                              f"{', '.join(map(repr, names))} (have: {', '.join(have)})")


def check_split_contrasts(study: Study, datasets: dict[str, Any]) -> None:
    """Each declared split contrast names two splits of a dataset (``datasets``: the study's datasets as
    built, by name); one-line :class:`ConfigError` otherwise."""
    for i, sc in enumerate(study.config.compare_splits):
        names = [n for n in datasets if sc.dataset is None or n == sc.dataset]
        have = list(dict.fromkeys(q.split for n in names for q in datasets[n].questions))
        for side in ("a", "b"):
            if getattr(sc, side) not in have:
                raise ConfigError(f"compare_splits[{i}].{side}: no split {getattr(sc, side)!r} in "
                                  f"{', '.join(map(repr, names))} (have: {', '.join(have)})")


def read_raw(path: str | os.PathLike) -> Any:
    """The config file's YAML, read with the size, encoding and nesting limits (one line on error)."""
    from genmodes.io import read_text

    try:
        text = read_text(Path(path), what="config", max_bytes=MAX_CONFIG_BYTES)
    except DataError as e:
        raise ConfigError(str(e)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML ({getattr(e, 'problem', None) or e})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a study config") from None


def load_config(path: str | os.PathLike) -> Study:
    raw = read_raw(path)
    return parse_config(raw, source=str(path))


def dump_config(study: Study | RunConfig) -> str:
    """The config as the run folder's ``config.yaml`` holds it."""
    cfg = study.config if isinstance(study, Study) else study
    kinds = {c.name: c.kind for c in study.conditions} if isinstance(study, Study) else {}
    d = cfg.model_dump(mode="json")
    # the axis not used is left out, so a one-model config dumps as it did before `models` existed
    # (a run folder compares its config.yaml text to decide it is the same run)
    d.pop("models" if cfg.models is None else "model")
    d.pop("resources", None)  # placement, not content (see Resources)
    if cfg.recall_gate == RunConfig.model_fields["recall_gate"].default:
        d.pop("recall_gate")  # as before gates existed: a resumed run's config.yaml reads the same
    for key in ("compare", "compare_splits"):
        if not d.get(key):
            d.pop(key, None)  # a config without comparisons dumps as before they existed
        else:  # unset fields left out, so the file reads like the config that declared them
            d[key] = [{k: v for k, v in c.items() if v is not None} for c in d[key]]
    for c, spec in zip(d["conditions"], cfg.conditions):
        c.pop("resources", None)
        if spec.composed:  # the stages say it all (and a kind beside them would not parse back)
            del c["kind"], c["settings"]
            for part in ("model", "context"):
                if c[part] is None:
                    del c[part]
        else:  # as before the composed form existed: a resumed run's config.yaml reads the same
            c["kind"] = kinds.get(spec.name) or spec.kind or spec.name
            del c["model"], c["context"]
        if spec.datasets is None:
            c.pop("datasets")
    return yaml.safe_dump(d, sort_keys=False, allow_unicode=True)
