"""Bounds on every number a user can give: what a machine could ever run, said in the message.

A setting past these bounds is not a study anyone can finish (a billion epochs, ten billion
generated items), and values past int64 crash torch deep inside a run; so they are rejected up front
with the bound named, like any other bad input (issue 12).
"""

from __future__ import annotations

import math
from typing import Any

from genmodes.errors import ConfigError

MAX_SEED = 2**32 - 1  # numpy's legacy seeding and torch.manual_seed both accept this range
MAX_THREADS = 1024
MAX_DATASET_SETTING = 10**6  # a count of generated items; their products already reach memory limits
MAX_CONDITION_SETTING = 10**9
# per-key bounds, wherever the key appears in a settings tree
KEY_BOUNDS = {"epochs": 10**4, "steps": 10**8}


def _fmt(x: Any) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) >= 1e6:
        return f"{x:.3g}"
    return repr(x)


def check_numbers(obj: Any, where: str, bound: int) -> None:
    """Every number in ``obj`` (a dumped settings tree) finite and at most ``bound`` in magnitude
    (``KEY_BOUNDS`` for the keys named there). Raises :class:`ConfigError` naming the field."""
    stack: list[tuple[str, Any, str | None]] = [(where, obj, None)]
    while stack:
        path, x, key = stack.pop()
        if isinstance(x, dict):
            stack.extend((f"{path}.{k}", v, str(k)) for k, v in x.items())
        elif isinstance(x, (list, tuple)):
            stack.extend((f"{path}[{i}]", v, key) for i, v in enumerate(x))
        elif isinstance(x, bool) or not isinstance(x, (int, float)):
            continue
        elif isinstance(x, float) and not math.isfinite(x):
            raise ConfigError(f"{path}: {x} is not a finite number")
        else:
            limit = KEY_BOUNDS.get(key or "", bound)
            if abs(x) > limit:
                raise ConfigError(f"{path}: {_fmt(x)} is beyond what any machine could run "
                                  f"(at most {limit:,})")


def seed_arg(text: str) -> int:
    """argparse ``type=`` for a ``--seed``: an integer from 0 to :data:`MAX_SEED`."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text[:40]!r}: expected an integer") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed {text[:40]} must be from 0 to {MAX_SEED}")
    return value
