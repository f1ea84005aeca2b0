"""What to say about a key or name that is not known: the valid ones, and the closest ("did you mean").

Used wherever a config, a family's settings or a command-line argument names something that does not
exist, so each of those one-line errors lists the choices in the same words.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Sequence


def did_you_mean(word: str, valid: Iterable[str]) -> str | None:
    """The valid name closest to ``word`` (difflib's ratio, at least 0.6), or None."""
    found = difflib.get_close_matches(str(word), list(valid), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown(word: str, valid: Sequence[str], what: str = "setting") -> str:
    """``unknown setting 'stesp'; did you mean 'steps'? (valid: a, b, steps)``"""
    return f"unknown {what} {str(word)!r}{_hint(word, valid)}"


def no_such(word: str, valid: Sequence[str], what: str = "setting") -> str:
    """``no such setting; did you mean 'steps'? (valid: a, b, steps)``: for a message that has named
    the key already."""
    return f"no such {what}{_hint(word, valid)}"


def _hint(word: str, valid: Sequence[str]) -> str:
    guess = did_you_mean(word, valid)
    return (f"; did you mean {guess!r}?" if guess else "") + f" (valid: {', '.join(valid) if valid else 'none'})"


def model_fields_at(model: Any, loc: Sequence[Any]) -> list[str] | None:
    """The field names of the pydantic model reached from ``model`` by following ``loc`` (a validation
    error's location, without its last element: the unknown key itself), through nested models, lists
    and optionals; None where the path leaves pydantic models."""
    import typing

    from pydantic import BaseModel

    def models_in(tp: Any) -> list[type]:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return [tp]
        return [m for a in typing.get_args(tp) for m in models_in(a)]

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list: the list's item type was taken at its field
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        inner = models_in(current.model_fields[part].annotation)
        if len(inner) != 1:
            return None
        current = inner[0]
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [name for name, f in current.model_fields.items() if not f.exclude]
    return None


def extra_key_message(model: Any, err: dict[str, Any], what: str = "setting") -> str | None:
    """For a pydantic ``extra_forbidden`` error on ``model``: ``no such setting; did you mean 'x'?
    (valid: ...)`` with the valid keys at the error's place (its location names the key); None for any
    other error."""
    if err.get("type") != "extra_forbidden" or not err.get("loc"):
        return None
    *path, key = err["loc"]
    valid = model_fields_at(model, path)
    if valid is None:
        return None
    return no_such(str(key), valid, what)
