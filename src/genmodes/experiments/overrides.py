"""Command-line overrides of a study config, lm-eval style, without editing the YAML:

    genmodes run CONFIG --limit N --model SPEC --seeds 0,1 --set conditions.finetune.settings.epochs=3

Overrides are applied to the raw YAML mapping and the result is validated exactly like a config file
(:func:`genmodes.experiments.config.parse_config`), so a bad override fails before anything runs with
one line naming it. The runner writes the resolved config into the run folder, so the overridden
values are what ``config.yaml`` records (and a resume with different overrides is refused like a
different config).

``--set PATH=VALUE``: PATH is dot-separated; inside ``datasets`` and ``conditions`` a step is an
entry's name (or its index); VALUE is read as YAML (``3``, ``0.5``, ``true``, ``null``, ``[a, b]``).
``--limit N`` caps every dataset's ``max_per_split`` at N (lm-eval's ``--limit`` is per task; a
genmodes split is one lm-eval task).
"""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path
from typing import Any, Sequence

import yaml

from genmodes.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("overrides (applied to the config, validated like it, recorded in the run's config.yaml)")
    g.add_argument("--limit", type=int, metavar="N", help="at most N questions per split (seeded subsample)")
    g.add_argument("--model", metavar="SPEC", help="model spec (see `genmodes models`)")
    g.add_argument("--seeds", metavar="S1,S2,...", help="comma-separated seeds, e.g. 0,1")
    g.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", dest="overrides",
                   help="any config field, e.g. conditions.finetune.settings.epochs=3 (repeatable)")


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1") from None
    if not seeds:
        raise ConfigError(f"--seeds {text!r}: no seed given")
    return seeds


def _entry_name(section: str, entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("name"):
        return str(entry["name"])
    if section == "datasets":  # the default names of DatasetSpec
        if entry.get("berglund"):
            return "berglund"
        src = entry.get("family") or Path(str(entry.get("path") or "")).name
        return str(src) if src else None
    return None


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set ``raw[path] = value``; list entries of ``datasets`` / ``conditions`` are found by name or index."""
    keys = [k for k in path.split(".")]
    if not path or any(not k for k in keys):
        raise ConfigError(f"--set {path}: empty key in the path")
    node: Any = raw
    where = ""
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            names = [_entry_name(where.split(".")[-1], e) for e in node]
            if key in names:
                idx = names.index(key)
            elif key.isdigit() and int(key) < len(node):
                idx = int(key)
            else:
                known = ", ".join(n for n in names if n) or "none"
                raise ConfigError(f"--set {path}: {where} has no entry named {key!r} (have: {known})")
            if last:
                node[idx] = value
                return
            node, where = node[idx], f"{where}.{key}"
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--set {path}: {where} is a value, not a mapping")
        if last:
            node[key] = value
            return
        if node.get(key) is None:
            node[key] = {}
        node, where = node[key], f"{where}.{key}" if where else key


def apply_overrides(raw: dict[str, Any], *, limit: int | None = None, model: str | None = None,
                    seeds: Sequence[int] | None = None, sets: Sequence[str] = ()) -> dict[str, Any]:
    """A copy of ``raw`` with the overrides applied (``--set`` last, so it can refine the others)."""
    out = copy.deepcopy(raw)
    if model is not None:  # --model replaces the config's model or models: one model
        out.pop("models", None)
        out["model"] = model
    if seeds is not None:
        out["seeds"] = list(seeds)
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit {limit}: must be at least 1")
        for d in out.get("datasets") or []:
            if isinstance(d, dict):
                cur = d.get("max_per_split")
                d["max_per_split"] = limit if not isinstance(cur, int) or isinstance(cur, bool) else min(cur, limit)
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected PATH=VALUE, e.g. conditions.finetune.settings.epochs=3")
        path, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text  # not YAML: the literal string
        set_path(out, path.strip(), value)
    return out


def load_with_overrides(path: str | os.PathLike, args: argparse.Namespace | None = None, **kw: Any):
    """The config at ``path`` with the command line's overrides (``args`` from :func:`add_arguments`,
    or ``limit=``, ``model=``, ``seeds=``, ``sets=`` directly), validated like the file."""
    from genmodes.experiments.config import load_config, parse_config, read_raw

    if args is not None:
        seeds = getattr(args, "seeds", None)
        kw = {"limit": getattr(args, "limit", None), "model": getattr(args, "model", None),
              "seeds": parse_seeds(seeds) if isinstance(seeds, str) else seeds,
              "sets": getattr(args, "overrides", None) or (), **kw}
    if not any(v not in (None, (), []) for v in kw.values()):
        return load_config(path)
    raw = read_raw(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    return parse_config(apply_overrides(raw, **kw), source=f"{path} (with command-line overrides)")
