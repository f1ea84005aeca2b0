"""The settings reference, read from the pydantic models themselves (``genmodes settings [KIND]``,
``docs/SETTINGS.md``).

Every section comes from a registry, never from a hand list: the study config's own models
(:mod:`genmodes.experiments.config`), each model stage and context stage
(``MODEL_STAGES`` / ``CONTEXT_STAGES`` of :mod:`genmodes.conditions`), the baselines, and each dataset
family (``FAMILY_MODULES``). A field's description is its ``Field(description=...)``, else the comment
written above it (or at its end of line) in the class's source, so the source stays the one place a
setting is explained. A test regenerates ``docs/SETTINGS.md`` and compares, so the page cannot drift.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import json
import re
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

SETTINGS_DOC = "docs/SETTINGS.md"


@dataclass(frozen=True)
class FieldDoc:
    name: str
    type: str
    default: str
    description: str


@dataclass(frozen=True)
class Section:
    kind: str  # what `genmodes settings KIND` matches: a stage kind, family name, "baseline" or "config"
    title: str
    intro: str
    fields: list[FieldDoc]


# ------------------------------------------------------------------------------------------ one model

def _comments(cls: type) -> dict[str, str]:
    """Field name -> the comment above its definition (contiguous comment lines) or at its end of line,
    read from ``cls``'s own source (not its bases')."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = src.splitlines()
    by_line: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            by_line[tok.start[0]] = tok.string.lstrip("#").strip()
    out: dict[str, str] = {}
    body = ast.parse(src).body[0]
    for node in getattr(body, "body", []):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above = []
        ln = node.lineno - 1
        while ln >= 1 and lines[ln - 1].strip().startswith("#"):
            above.insert(0, by_line.get(ln, ""))
            ln -= 1
        trailing = [by_line[i] for i in range(node.lineno, (node.end_lineno or node.lineno) + 1) if i in by_line]
        text = " ".join(c for c in above + trailing if c and not re.match(r"(type: ?ignore|noqa)", c))
        if text:
            out[node.target.id] = text
    return out


def _field_comment(model: type[BaseModel], name: str) -> str:
    for cls in model.__mro__:
        if isinstance(cls, type) and issubclass(cls, BaseModel) and name in cls.__dict__.get("__annotations__", {}):
            return _comments(cls).get(name, "")
    return ""


def _constraints(metadata: list[Any]) -> str:
    signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "min_length": "length >=", "max_length": "length <="}
    parts = []
    for m in metadata:
        for attr, sign in signs.items():
            v = getattr(m, attr, None)
            if v is not None:
                parts.append(f"{sign} {v:g}" if isinstance(v, float) else f"{sign} {v}")
    return ", ".join(parts)


def type_name(tp: Any, refs: dict[type, str] | None = None) -> str:
    """A readable type: ``"full" | "lora"``, ``int | None``, ``list[str]``; a nested model by the name
    in ``refs`` (it has a section of its own), else inline as ``{field: type, ...}``."""
    refs = refs or {}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a, refs) for a in args)
    if origin is typing.Annotated:
        inner, *meta = args
        extra = _constraints(meta)
        return type_name(inner, refs) + (f" ({extra})" if extra else "")
    if origin in (list, tuple, set, dict):
        return f"{origin.__name__}[{', '.join('...' if a is Ellipsis else type_name(a, refs) for a in args)}]"
    if tp is type(None):
        return "None"
    if tp is typing.Any:
        return "any"
    if isinstance(tp, type):
        if tp in refs:
            return refs[tp]
        if issubclass(tp, BaseModel):
            return "{" + ", ".join(f"{k}: {type_name(f.annotation, refs)}" for k, f in tp.model_fields.items()) + "}"
        return tp.__name__
    return str(tp).replace("typing.", "")


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(its defaults)"
    # JSON, which YAML reads as written (null, true, "text\n")
    if isinstance(value, (str, int, float, bool, list, tuple, dict, type(None))):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def fields_of(model: type[BaseModel], refs: dict[type, str] | None = None) -> list[FieldDoc]:
    out = []
    for name, f in model.model_fields.items():
        tp = type_name(f.annotation, refs)
        extra = _constraints(f.metadata)
        if extra:
            tp += f" ({extra})"
        desc = (f.description or _field_comment(model, name)).strip()
        out.append(FieldDoc(name, tp, _default(f), " ".join(desc.split())))
    return out


def _doc(obj: Any, fallback: str = "") -> str:
    """The first paragraph of a module's or class's own docstring (not one it inherits), on one line,
    ending in a full stop."""
    text = " ".join(inspect.cleandoc(obj.__dict__.get("__doc__") or "").split("\n\n", 1)[0].split())
    text = text or fallback
    return text if not text or text.endswith((".", "!", "?", ":")) else text + "."


# ------------------------------------------------------------------------------------------ every section

def sections() -> list[Section]:
    """Every settings section, in the order of the registries."""
    from genmodes.conditions import (BASELINE, BASELINE_MODULE, CONTEXT_STAGES, MODEL_STAGES, SHORT_FORMS,
                                     resolve)
    from genmodes.data.families import FAMILY_MODULES, get_family
    from genmodes.experiments import config as cfg

    parts = {cfg.DatasetSpec: ("datasets[]", "One dataset of the grid."),
             cfg.ConditionSpec: ("conditions[]", "One condition of the grid: a short form (`kind`, `settings`) "
                                                 "or a model stage and a context stage (`model`, `context`)."),
             cfg.ScoringSpec: ("scoring", "How every condition is scored."),
             cfg.Comparison: ("compare[]", ""),
             cfg.Resources: ("resources", "")}
    refs: dict[type, str] = {m: f"`{key}`" for m, (key, _) in parts.items()}
    refs.update(_stage_refs(MODEL_STAGES, "model stage"))
    out = [Section("config", "Study config (top level)", _doc(cfg), fields_of(cfg.RunConfig, refs))]
    for model, (key, fallback) in parts.items():
        out.append(Section("config", f"Study config: `{key}`", _doc(model, fallback), fields_of(model, refs)))
    short = {}
    for kind in SHORT_FORMS:
        if kind != BASELINE:
            c = resolve(kind)
            short.setdefault((c.model, c.context), []).append(kind)
    for what, registry in (("model stage", MODEL_STAGES), ("context stage", CONTEXT_STAGES)):
        for kind, module_name in registry.items():
            mod = importlib.import_module(module_name)
            names = [k for (m, c), ks in short.items() for k in ks
                     if (what == "model stage" and m == kind and c == "none")
                     or (what == "context stage" and c == kind != "none" and m == "pretrained")]
            alias = f" Short form: `kind: {names[0]}` with these as its `settings`." if names else ""
            key = "model" if what == "model stage" else "context"
            out.append(Section(kind, f"{what.capitalize()} `{kind}`",
                               f"{_doc(mod)} In a condition: `{key}: {{kind: {kind}, ...}}`.{alias}",
                               fields_of(mod.Settings, refs)))
    base = importlib.import_module(BASELINE_MODULE)
    out.append(Section(BASELINE, "Baseline (`kind: baseline`)", _doc(base), fields_of(base.Settings)))
    for name in FAMILY_MODULES:
        fam = get_family(name)
        out.append(Section(name, f"Dataset family `{name}`",
                           f"{_doc(types.SimpleNamespace(__doc__=fam.description))} In a study: `datasets: [{{family: {name}, settings: {{...}}}}]`; "
                           f"on the command line: `genmodes data make {name} --set KEY=VALUE`.",
                           fields_of(fam.config)))
    return out


def _stage_refs(registry: dict[str, str], what: str) -> dict[type, str]:
    """A stage's settings class, and each pydantic base of it with the same fields (the class another
    stage nests, e.g. rl's ``finetune``), named by the first stage that has it."""
    refs: dict[type, str] = {}
    for kind, module_name in registry.items():
        cls = importlib.import_module(module_name).Settings
        for base in cls.__mro__:
            if isinstance(base, type) and issubclass(base, BaseModel) and base is not BaseModel \
                    and list(getattr(base, "model_fields", {})) == list(cls.model_fields) and cls.model_fields:
                refs.setdefault(base, f"{what} `{kind}`'s settings")
    return refs


def kinds() -> list[str]:
    return list(dict.fromkeys(s.kind for s in sections()))


def select(kind: str | None) -> list[Section]:
    """The sections ``genmodes settings KIND`` shows (all without KIND); an unknown KIND is one
    :class:`~genmodes.errors.ConfigError` line with the valid ones and the closest."""
    from genmodes.errors import ConfigError
    from genmodes.suggest import unknown

    every = sections()
    if kind is None:
        return every
    chosen = [s for s in every if s.kind == kind]
    if not chosen:
        raise ConfigError(unknown(kind, list(dict.fromkeys(s.kind for s in every)), "settings kind"))
    return chosen


# ------------------------------------------------------------------------------------------ rendering

def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown(secs: list[Section] | None = None) -> str:
    """The reference as markdown: what ``docs/SETTINGS.md`` holds."""
    secs = sections() if secs is None else secs
    out = ["# Settings reference", "",
           "Generated from the pydantic models by `genmodes settings --markdown > docs/SETTINGS.md`; "
           "`tests/experiments/test_reference.py` regenerates it and fails when it differs. "
           "`genmodes settings KIND` prints one section (KIND: `config`, a stage kind, `baseline` or a "
           "family name). Unknown keys are errors that list the valid ones.", ""]
    for s in secs:
        out += [f"## {s.title}", "", s.intro, ""]
        if not s.fields:
            out += ["No settings.", ""]
            continue
        out += ["| setting | type | default | description |", "|---|---|---|---|"]
        out += [f"| `{f.name}` | {_cell(f.type)} | `{_cell(f.default)}` | {_cell(f.description)} |"
                for f in s.fields]
        out.append("")
    return "\n".join(out)


def as_json(secs: list[Section]) -> str:
    return json.dumps([{"kind": s.kind, "title": s.title, "intro": s.intro,
                        "fields": [f.__dict__ for f in s.fields]} for s in secs], ensure_ascii=False, indent=2)


def print_sections(secs: list[Section]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    con = Console()
    for s in secs:
        con.print(f"[bold]{s.title.replace('`', '')}[/]", highlight=False)
        con.print(s.intro.replace("`", ""), markup=False, highlight=False)
        if not s.fields:
            con.print("  no settings\n")
            continue
        t = Table(show_edge=False)
        for col in ("setting", "type", "default", "description"):
            t.add_column(col, overflow="fold")
        for f in s.fields:  # Text: a type such as list[str] is not rich markup
            t.add_row(*(Text(x) for x in (f.name, f.type, f.default, f.description)))
        con.print(t)
        con.print()
