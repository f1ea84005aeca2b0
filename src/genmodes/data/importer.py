"""Bring your own data: plain JSON Lines documents and questions -> a genmodes dataset.

Two files, one JSON object a line:

- documents: ``{"id": "d1", "text": "..."}`` (optional ``kind``, a word for the document's type, and
  ``meta``, an object kept as is): what a model may learn from (fine-tuning, in context, retrieval);
- questions: ``{"id": "q1", "question": "...", "choices": ["...", "..."], "answer": 0}``, ``answer``
  the index of the right choice, optional ``split`` (default ``test``), ``support`` (ids of the
  documents that state what the question needs: oracle retrieval puts them in context), ``subtype``
  (a group within the split) and ``meta``.

Each question is scored as genmodes scores every question: the choices are continuations of a context,
never shown together. The context is ``template`` with ``{question}`` filled in (default: the question
alone, as a cloze), its trailing whitespace moved to the choices, and each choice that does not start
with whitespace gets one leading space (the tokenizers' word boundary, as in lm-evaluation-harness).

Every bad row is found before anything is written, each as one line ``<file> line <n>: ...``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genmodes.data.types import Dataset, Document, Question
from genmodes.errors import DataError

FAMILY = "imported"
DEFAULT_SPLIT = "test"
DEFAULT_TEMPLATE = "{question}"
DOCUMENT_FIELDS = ("id", "text", "kind", "meta")
QUESTION_FIELDS = ("id", "question", "choices", "answer", "split", "support", "subtype", "meta")
MAX_CHOICES = 1000
MAX_ROW_ERRORS = 20  # listed; the rest are counted
SPLIT_NAME = re.compile(r"\w+(?:[-.]\w+)*")  # also a valid Hugging Face split name
MAX_FILE_BYTES = 2 << 30


class RowErrors(DataError):
    """Several bad rows: ``lines`` holds one message per row (the CLI prints each as its own
    ``genmodes: error:`` line); ``str()`` is the first, with the count of the others."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        more = f" (and {len(lines) - 1} more bad row(s))" if len(lines) > 1 else ""
        super().__init__(lines[0] + more)


@dataclass
class _Problems:
    lines: list[str] = field(default_factory=list)
    hidden: int = 0

    def add(self, msg: str) -> None:
        if len(self.lines) < MAX_ROW_ERRORS:
            self.lines.append(msg)
        else:
            self.hidden += 1

    def raise_any(self) -> None:
        if self.lines:
            extra = [f"{self.hidden} more bad row(s) not listed"] if self.hidden else []
            raise RowErrors(self.lines + extra)


def _rows(path: Path, problems: _Problems) -> list[tuple[int, Any]]:
    """(line number, parsed JSON) of every non-blank line; a line that is not JSON is a problem."""
    import json

    from genmodes.io import loads_line, read_text

    text = read_text(path, what="JSON Lines file", max_bytes=MAX_FILE_BYTES)
    out = []
    for i, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            out.append((i, loads_line(line)))
        except ValueError as e:
            msg = f"invalid JSON ({e.msg} at column {e.colno})" if isinstance(e, json.JSONDecodeError) else str(e)
            problems.add(f"{path.name} line {i}: {msg}")
    return out


def _string(row: dict, key: str, required: bool = True) -> str:
    v = row.get(key)
    if v is None and not required:
        return ""
    if not isinstance(v, str) or (required and not v.strip()):
        raise ValueError(f"field {key!r} must be a non-empty string, got {_show(v)}")
    return v


def _show(v: Any) -> str:
    import json

    return "nothing" if v is None else json.dumps(v, ensure_ascii=False)[:60]


def _check_fields(row: Any, valid: tuple[str, ...], required: tuple[str, ...]) -> dict:
    from genmodes.suggest import no_such

    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    for k in row:
        if k not in valid:
            raise ValueError(f"field {k!r}: {no_such(k, list(valid), 'field')}")
    for k in required:
        if k not in row:
            raise ValueError(f"missing field {k!r} (a row needs {', '.join(required)})")
    return row


def _meta(row: dict) -> dict:
    m = row.get("meta", {})
    if not isinstance(m, dict):
        raise ValueError(f"field 'meta' must be an object, got {_show(m)}")
    return m


def parse_document(row: Any) -> Document:
    row = _check_fields(row, DOCUMENT_FIELDS, ("id", "text"))
    kind = _string(row, "kind", required=False) or "article"
    return Document(id=_string(row, "id"), text=_string(row, "text"), kind=kind, meta=_meta(row))


def scored_form(template: str, question: str, choices: list[str]) -> tuple[str, list[str]]:
    """The context and choices the scorer sees (see the module docstring)."""
    context = template.replace("{question}", question)
    stripped = context.rstrip()
    moved = context[len(stripped):]
    return stripped, [c if c[:1].isspace() else (moved or " ") + c for c in choices]


def parse_question(row: Any, template: str) -> Question:
    row = _check_fields(row, QUESTION_FIELDS, ("id", "question", "choices", "answer"))
    qid, text = _string(row, "id"), _string(row, "question")
    choices = row["choices"]
    if not (isinstance(choices, list) and 2 <= len(choices) <= MAX_CHOICES
            and all(isinstance(c, str) and c.strip() for c in choices)):
        raise ValueError(f"field 'choices' must be a list of 2 to {MAX_CHOICES} non-empty strings, got "
                         f"{_show(choices)}")
    dup = next((c for i, c in enumerate(choices) if c.strip() in [x.strip() for x in choices[:i]]), None)
    if dup is not None:
        raise ValueError(f"choice {dup!r} appears twice; each choice must differ")
    answer = row["answer"]
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise ValueError(f"field 'answer' must be the index of the right choice (an integer), got {_show(answer)}")
    if not 0 <= answer < len(choices):
        raise ValueError(f"answer {answer} is not an index into its {len(choices)} choices (0 to {len(choices) - 1})")
    split = row.get("split", DEFAULT_SPLIT)
    if not isinstance(split, str) or not SPLIT_NAME.fullmatch(split):
        raise ValueError(f"field 'split' must be a name of letters, digits, '_', '-' or '.', got {_show(split)}")
    support = row.get("support", [])
    if not (isinstance(support, list) and all(isinstance(s, str) and s for s in support)):
        raise ValueError(f"field 'support' must be a list of document ids, got {_show(support)}")
    context, scored = scored_form(template, text, choices)
    if not context:
        raise ValueError("the question is empty once the template is filled in")
    return Question(id=qid, split=split, subtype=_string(row, "subtype", required=False), context=context,
                    choices=scored, answer=answer, support=list(dict.fromkeys(support)), meta=_meta(row))


def _parse_all(path: Path, parse, problems: _Problems, what: str) -> list:
    items, seen = [], {}
    for i, row in _rows(path, problems):
        try:
            item = parse(row)
        except ValueError as e:
            problems.add(f"{path.name} line {i}: {e}")
            continue
        if item.id in seen:
            problems.add(f"{path.name} line {i}: {what} id {item.id!r} already used on line {seen[item.id]}")
            continue
        seen[item.id] = i
        items.append((i, item))
    return items


def import_jsonl(documents: str | Path, questions: str | Path, *, recall: list[str] | None = None,
                 template: str = DEFAULT_TEMPLATE) -> Dataset:
    """Read, validate and convert the two files (see the module docstring). Every bad row is listed
    (:class:`RowErrors`); ``recall``: splits that test recall of what the documents state (the audit
    does not count a document stating their answer as a leak)."""
    if "{question}" not in template:
        raise DataError(f"--template {template!r} has no {{question}} placeholder")
    dpath, qpath = Path(documents), Path(questions)
    problems = _Problems()
    docs = _parse_all(dpath, parse_document, problems, "document")
    qs = _parse_all(qpath, lambda r: parse_question(r, template), problems, "question")
    known = {d.id for _, d in docs}
    for i, q in qs:
        missing = [s for s in q.support if s not in known]
        if missing:
            problems.add(f"{qpath.name} line {i}: support {missing[0]!r} is not a document id of {dpath.name}")
    problems.raise_any()
    if not docs:
        raise DataError(f"{dpath}: no documents (one JSON object a line)")
    if not qs:
        raise DataError(f"{qpath}: no questions (one JSON object a line)")
    questions_ = [q for _, q in qs]
    splits = list(dict.fromkeys(q.split for q in questions_))
    unknown = [s for s in recall or [] if s not in splits]
    if unknown:
        from genmodes.suggest import no_such

        raise DataError(f"--recall {unknown[0]!r}: {no_such(unknown[0], splits, 'split')}")
    config = {"documents_sha256": _sha256(dpath), "questions_sha256": _sha256(qpath), "template": template}
    return Dataset(family=FAMILY, config=config, seed=0, documents=[d for _, d in docs], questions=questions_,
                   knowledge=[], meta={"recall_splits": list(dict.fromkeys(recall or [])),
                                       "description": f"Imported from {dpath.name} and {qpath.name} "
                                                      "by genmodes data import."})


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
