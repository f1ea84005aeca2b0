"""Learning conditions, each a model stage composed with a context stage.

The stage contract is in :mod:`genmodes.conditions.base`. A config names a condition in one of two forms:

- composed: ``model: {kind: finetune, epochs: 10}`` and ``context: {kind: retrieval, method: bm25}``
  (either may be left out: model ``pretrained``, context ``none``);
- short: ``kind: X, settings: {...}`` (or only ``name: X``), where X is one of :data:`SHORT_FORMS`,
  each mapped onto a model stage and a context stage by :func:`resolve` (``retrieval`` with nested
  ``finetune:`` settings is model ``finetune`` + context ``retrieval``; ``from_scratch`` with
  ``context: oracle`` is model ``scratch`` + an oracle ``retrieval`` in its plain format).

``baseline`` (a shortcut predictor that loads no model) is a condition kind of its own, outside the
composition.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, Mapping

from pydantic import ValidationError

from genmodes.conditions.base import ContextStageInfo, Info, ModelStageInfo, Prepared, settings_key
from genmodes.errors import ConfigError

# One registry per stage role: kind -> module (its path, imported when first used, or the module).
MODEL_STAGES: dict[str, str | ModuleType] = {
    "pretrained": "genmodes.conditions.pretrained",
    "finetune": "genmodes.conditions.finetune",
    "augmented_finetune": "genmodes.conditions.augment",
    "scratch": "genmodes.conditions.from_scratch",
    "finetune_all": "genmodes.conditions.finetune_all",
    "rl": "genmodes.conditions.rl",
}
CONTEXT_STAGES: dict[str, str | ModuleType] = {
    "none": "genmodes.conditions.no_context",
    "in_context": "genmodes.conditions.in_context",
    "retrieval": "genmodes.conditions.retrieval",
    "thinking": "genmodes.conditions.thinking",
}
BASELINE = "baseline"
BASELINE_MODULE = "genmodes.conditions.baseline"
# the condition kinds of the short form (kind: X, settings: {...})
SHORT_FORMS = ("pretrained", "finetune", "in_context", "augmented_finetune", "retrieval", "from_scratch",
               BASELINE)



def register_stage(role: Literal["model", "context"], kind: str, module: str | ModuleType) -> None:
    """Make ``kind`` a model or context stage of configs: ``module`` (a module object or its import
    path) declares the stage (see :mod:`genmodes.conditions.base`)."""
    registry = MODEL_STAGES if role == "model" else CONTEXT_STAGES
    registry[kind] = module


def _module(registry: Mapping[str, str | ModuleType], kind: Any, what: str) -> ModuleType:
    if not isinstance(kind, str) or kind not in registry:
        raise ConfigError(f"unknown {what} {kind!r}; known: {', '.join(registry)}")
    mod = registry[kind]
    return mod if isinstance(mod, ModuleType) else importlib.import_module(mod)


def model_stage(kind: str) -> ModuleType:
    return _module(MODEL_STAGES, kind, "model stage")


def context_stage(kind: str) -> ModuleType:
    return _module(CONTEXT_STAGES, kind, "context stage")


def baseline_stage() -> ModuleType:
    return importlib.import_module(BASELINE_MODULE)


def reads_documents(context_kind: str | None) -> bool:
    """A context stage that puts documents before the question (its ``READS_DOCUMENTS``); False for a
    kind this process does not know (a record written with a stage registered elsewhere)."""
    if context_kind is None or context_kind not in CONTEXT_STAGES:
        return False
    return bool(getattr(context_stage(context_kind), "READS_DOCUMENTS", False))


def own_model_specs() -> set[str]:
    """Model specs that a model stage builds itself (its ``OWN_MODEL``: ``scratch``): no model to load."""
    return {s for s in (getattr(model_stage(k), "OWN_MODEL", None) for k in MODEL_STAGES) if s}


def info_class(role: str, kind: str | None) -> type[Info]:
    """The ``Info`` record a stage writes (role: model, context or baseline)."""
    if role == "baseline":
        return baseline_stage().Info
    if kind is None:
        return ModelStageInfo if role == "model" else ContextStageInfo
    mod = model_stage(kind) if role == "model" else context_stage(kind)
    return getattr(mod, "Info", ModelStageInfo if role == "model" else ContextStageInfo)


@dataclass(frozen=True)
class Condition:
    """A resolved condition: a model stage and a context stage with their validated settings, or a
    baseline (``model`` and ``context`` None, ``baseline`` its settings). ``kind`` names it for the
    report: the short form's kind, else ``model+context`` (``model`` alone when the context is
    ``none``, ``context`` alone when the model is ``pretrained``)."""

    kind: str
    model: str | None
    model_settings: Any
    context: str | None
    context_settings: Any
    baseline: Any = None

    @property
    def is_baseline(self) -> bool:
        """A shortcut predictor: no model is loaded, trained or exported."""
        return self.model is None

    def stages(self) -> list[tuple[str, str | None, ModuleType, Any]]:
        """(role, kind, module, settings) of each stage: model then context, or the baseline alone."""
        if self.model is None:
            return [("baseline", None, baseline_stage(), self.baseline)]
        return [("model", self.model, model_stage(self.model), self.model_settings),
                ("context", self.context, context_stage(self.context), self.context_settings)]

    def read_infos(self, stages: Mapping[str, Any] | None, legacy: Mapping[str, Any] | None = None) -> dict[str, Info]:
        """Each stage's ``Info`` (by role) from a cell record: its ``stages``, or for a record written
        before stages had their own, its one flat ``info`` (``legacy``)."""
        out: dict[str, Info] = {}
        for role, kind, module, _ in self.stages():
            cls = info_class(role, kind)
            out[role] = cls.read((stages or {}).get(role)) if stages is not None else cls.from_legacy(legacy or {})
        return out

    def key(self) -> dict[str, Any]:
        """The kind and every setting with its default filled in: a changed default changes the results,
        so it changes the cell's key."""
        if self.model is None:
            return {"kind": self.kind, "settings": settings_key(self.baseline)}
        return {"kind": self.kind, "model": {"kind": self.model, **settings_key(self.model_settings)},
                "context": {"kind": self.context, **settings_key(self.context_settings)}}


def _validate(cls: Any, settings: Mapping[str, Any], where: str, paths: Mapping[str, str] | None = None,
              short: bool = False) -> Any:
    """``cls(**settings)``, a one-line :class:`ConfigError` naming the field otherwise: ``where`` is
    the field's path prefix (``conditions[1].context``: the composed form) or, with ``short``, the
    condition (``conditions[1] (name): bad setting 'key'``). ``paths`` maps a field to the key it was
    given as, where the short form renamed it."""
    try:
        return cls(**settings)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(x) for x in err["loc"])
        head = key.split(".", 1)[0]
        if paths and head in paths:
            key = paths[head] + key[len(head):]
        from genmodes.suggest import extra_key_message

        msg = extra_key_message(cls, err) or err["msg"].removeprefix("Value error, ")
        if not key:  # a check across fields: its message names them
            raise ConfigError(f"{where}: {msg}") from None
        if short:
            raise ConfigError(f"{where}: bad setting {key!r}: {msg}") from None
        raise ConfigError(f"{where}.{key}: {msg}") from None


def _stage(registry: Mapping[str, str], what: str, spec: Any, where: str) -> tuple[str, Any]:
    """A composed-form stage ``{kind: ..., **settings}`` -> (kind, validated settings)."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a mapping {{kind: ..., settings...}}, got {type(spec).__name__}")
    if "kind" not in spec:
        raise ConfigError(f"{where}.kind: missing; one of {', '.join(registry)}")
    kind = spec["kind"]
    if not isinstance(kind, str) or kind not in registry:
        raise ConfigError(f"{where}.kind: unknown {what} {kind!r}; known: {', '.join(registry)}")
    settings = {str(k): v for k, v in spec.items() if k != "kind"}
    return kind, _validate(_module(registry, kind, what).Settings, settings, where)


def _label(model: str, context: str) -> str:
    if context == "none":
        return model
    if model == "pretrained":
        return context
    return f"{model}+{context}"


def resolve(kind: str | None = None, settings: Mapping[str, Any] | None = None, *,
            model: Mapping[str, Any] | None = None, context: Mapping[str, Any] | None = None,
            where: str = "condition") -> Condition:
    """A condition from either form (see the module docstring), every setting validated.

    Errors are one line naming the field: ``{where}.context.k: ...`` for the composed form (``where``:
    the condition's path), ``{where}: bad setting 'k': ...`` for the short form."""
    if model is not None or context is not None:
        if kind is not None or settings:
            raise ConfigError(f"{where}: give either 'kind'/'settings' (a named condition) or 'model'/'context' "
                              "(its stages), not both")
        mk, ms = _stage(MODEL_STAGES, "model stage", {"kind": "pretrained"} if model is None else model,
                        f"{where}.model")
        ck, cs = _stage(CONTEXT_STAGES, "context stage", {"kind": "none"} if context is None else context,
                        f"{where}.context")
        return Condition(_label(mk, ck), mk, ms, ck, cs)
    if kind is None:
        raise ConfigError(f"{where}: no condition kind; give 'kind' (one of {', '.join(SHORT_FORMS)}) "
                          "or 'model'/'context'")
    if kind not in SHORT_FORMS:
        raise ConfigError(f"{where}: unknown condition {kind!r}; known: {', '.join(SHORT_FORMS)} "
                          "(or compose 'model' and 'context')")
    s = dict(settings or {})
    if kind == BASELINE:
        return Condition(kind, None, None, None, None,
                         baseline=_validate(baseline_stage().Settings, s, where, short=True))
    mk, m_in, ck, c_in, paths = _short_form(kind, s, where)
    ms = _validate(model_stage(mk).Settings, m_in, where, paths, short=True)
    cs = _validate(context_stage(ck).Settings, c_in, where, paths, short=True)
    return Condition(kind, mk, ms, ck, cs)


def _short_form(kind: str, s: dict[str, Any], where: str) -> tuple[str, dict, str, dict, dict[str, str]]:
    """The short form's settings split onto (model kind, model settings, context kind, context
    settings, {field: the key it was given as})."""
    if kind == "pretrained":
        return "pretrained", s, "none", {}, {}
    if kind == "finetune":
        return "finetune", s, "none", {}, {}
    if kind == "in_context":
        return "pretrained", {}, "in_context", s, {}
    if kind == "augmented_finetune":
        from genmodes.conditions.augment import FINETUNE_RENAMED

        ft = s.pop("finetune", None) or {}
        if not isinstance(ft, Mapping):
            raise ConfigError(f"{where}: bad setting 'finetune': expected a mapping of finetune settings")
        # the augmentation's own keys that the flat model stage renames (batch_size: the generation's)
        out = {FINETUNE_RENAMED.get(k, k): v for k, v in s.items()}
        paths = {v: k for k, v in FINETUNE_RENAMED.items() if k in s}
        for k, v in ft.items():
            if k in out:
                raise ConfigError(f"{where}: bad setting 'finetune.{k}': also given outside 'finetune'")
            out[str(k)] = v
            paths[str(k)] = f"finetune.{k}"
        return "augmented_finetune", out, "none", {}, paths
    if kind == "retrieval":
        ft = s.pop("finetune", None)
        if ft is not None and not isinstance(ft, Mapping):
            raise ConfigError(f"{where}: bad setting 'finetune': expected a mapping of finetune settings")
        paths = {k: f"finetune.{k}" for k in (ft or {})}
        return ("finetune" if ft is not None else "pretrained"), dict(ft or {}), "retrieval", s, paths
    # from_scratch: the training settings build the model; context oracle is P2's oracle episodic memory
    from genmodes.conditions.from_scratch import ORACLE_FORMAT, ORACLE_OPTIONS

    ctx_kind = s.pop("context", "none")
    if ctx_kind not in ("none", "oracle"):
        raise ConfigError(f"{where}: bad setting 'context': {ctx_kind!r} is not one of 'none', 'oracle'")
    # None was from_scratch's "default" for these (e.g. distractor_kinds: the support's kinds)
    oracle = {k: v for k in ORACLE_OPTIONS if k in s for v in [s.pop(k)] if v is not None}
    if ctx_kind == "none":
        # the oracle options were accepted (and unused) without an oracle context: still are
        return "scratch", s, "none", {}, {}
    return "scratch", s, "retrieval", {**ORACLE_FORMAT, **oracle}, {}


def prepare(ctx: Any, condition: Condition) -> Prepared:
    """Build the model stage, then apply the context stage (or let a baseline score): the cell's
    :class:`~genmodes.conditions.base.Prepared`, its ``model_info`` the model stage's ``Info``."""
    if condition.model is None:
        return baseline_stage().prepare(ctx, condition.baseline)
    built = model_stage(condition.model).build(ctx, condition.model_settings)
    prepared = context_stage(condition.context).apply(ctx, built, condition.context_settings)
    prepared.model_info = built.info
    return prepared
