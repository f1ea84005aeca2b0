"""Saving and loading datasets: a folder of JSON Lines files plus ``meta.json``.

Layout of a dataset folder::

    documents.jsonl   one Document a line (what a model may learn from)
    questions.jsonl   one Question a line (what it is scored on)
    knowledge.jsonl   one fact [subject, relation, object] a line (closed-world ground truth)
    meta.json         family, config, seed, genmodes version, content hash, dataset meta

Bytes are deterministic (sorted keys, fixed separators, UTF-8 without escaping, "\\n" newlines), so
the same (family, config, seed) gives byte-identical files and the same ``content_hash``. Saving is
atomic: files are written into a temporary folder beside the destination, which replaces the
destination only once complete; a failure leaves the old folder (or nothing) behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Iterable

from pydantic import (BaseModel, ConfigDict, Field, StrictStr, TypeAdapter, ValidationError,
                      model_validator)

from genmodes import __version__
from genmodes.data.types import Dataset, Document, Fact, Question
from genmodes.errors import DataError

DATA_FILES = ("documents.jsonl", "questions.jsonl", "knowledge.jsonl")
META_FILE = "meta.json"


def dumps(obj: Any) -> str:
    """The one JSON encoding of the project's data files: deterministic and readable."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def jsonl_bytes(rows: Iterable[Any]) -> bytes:
    """Rows in :func:`dumps`'s encoding, one a line (a NaN is an error, never written)."""
    from genmodes.io import jsonl_bytes as _jsonl_bytes

    return _jsonl_bytes(rows, separators=(",", ":"))


def content_hash(files: dict[str, bytes]) -> str:
    """sha256 over the data files, each preceded by its name (so moving a row between files counts)."""
    h = hashlib.sha256()
    for name in DATA_FILES:
        h.update(name.encode() + b"\0")
        h.update(files[name])
    return h.hexdigest()


def dataset_files(ds: Dataset) -> dict[str, bytes]:
    """The exact bytes ``save_dataset`` writes, by file name."""
    files = {
        "documents.jsonl": jsonl_bytes(d.to_json() for d in ds.documents),
        "questions.jsonl": jsonl_bytes(q.to_json() for q in ds.questions),
        "knowledge.jsonl": jsonl_bytes(f.to_list() for f in ds.knowledge),
    }
    meta = {"family": ds.family, "config": ds.config, "seed": ds.seed, "genmodes_version": __version__,
            "content_hash": content_hash(files), "counts": ds.summary(), "meta": ds.meta}
    files[META_FILE] = (json.dumps(meta, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    return files


def is_dataset_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / META_FILE).is_file()


def write_atomic_dir(out_dir: str | os.PathLike, files: dict[str, bytes], *, replace_any: bool = False) -> Path:
    """Write ``files`` (relative path -> bytes) as the folder ``out_dir``, atomically.

    An existing ``out_dir`` is replaced only after the new folder is complete, and only if it is a
    dataset folder or empty (unless ``replace_any``): a typo must not wipe an unrelated folder.
    """
    from genmodes.io import atomic_dir

    out = Path(out_dir)
    _check_replaceable(out, replace_any)
    with atomic_dir(out) as tmp:
        for rel, data in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    return out


def _check_replaceable(out: Path, replace_any: bool) -> None:
    """``out`` may become a dataset folder: absent, empty, or a dataset folder already."""
    probe = out
    while not (probe.exists() or probe.is_symlink()) and probe.parent != probe:
        probe = probe.parent
    if probe != out and probe.exists() and not probe.is_dir():
        raise DataError(f"output {out}: {probe} is a file, not a folder")
    if not (out.exists() or out.is_symlink()):
        return
    if not out.is_dir():
        raise DataError(f"output {out} exists and is not a folder")
    if not replace_any and not is_dataset_dir(out) and any(out.iterdir()):
        raise DataError(f"output folder {out} exists and is not a genmodes dataset; "
                        "refusing to replace it (choose another --out or remove it)")


def save_dataset(ds: Dataset, out_dir: str | os.PathLike) -> Path:
    """Write ``ds`` as a dataset folder (atomically; see module docstring). Returns the folder."""
    return write_atomic_dir(out_dir, dataset_files(ds))


# ---------------------------------------------------------------------------------------------- load

def _read_lines(path: Path) -> list[tuple[int, Any]]:
    from genmodes.io import read_jsonl

    if not path.is_file():
        raise DataError(f"{path}: missing file {path.name}")
    return read_jsonl(path, objects=False, name=path.name)


# Rows are validated by pydantic in strict mode (no coercion: "0" is not an answer, 1.0 not an id),
# then turned into the plain dataclasses of ``genmodes.data.types``. A field a row lacks takes its
# default where it has one; unknown fields are ignored (a newer writer may add some).
FactRow = Annotated[list[StrictStr], Field(min_length=3, max_length=3)]
MAX_CHOICES = 10_000


class _Row(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class DocumentRow(_Row):
    id: str
    text: str
    kind: str = "article"
    facts: list[FactRow] = []
    meta: dict[str, Any] = {}

    def to_document(self) -> Document:
        return Document(id=self.id, text=self.text, kind=self.kind, facts=[Fact(*f) for f in self.facts],
                        meta=self.meta)


class QuestionRow(_Row):
    id: str
    split: Annotated[str, Field(min_length=1)]
    subtype: str = ""
    context: str
    choices: Annotated[list[str], Field(min_length=1, max_length=MAX_CHOICES)]
    answer: int
    support: list[str] = []
    premises: list[FactRow] = []
    choice_facts: list[FactRow | None] = []
    meta: dict[str, Any] = {}

    @model_validator(mode="after")
    def _consistent(self) -> "QuestionRow":
        if "" in self.choices:
            # the scorer cannot score an empty continuation: refused here so show, audit and run agree
            raise ValueError(f"choice {self.choices.index('')} is empty")
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(f"answer {self.answer} out of range for {len(self.choices)} choices")
        if self.choice_facts and len(self.choice_facts) != len(self.choices):
            raise ValueError(f"{len(self.choice_facts)} choice_facts for {len(self.choices)} choices")
        return self

    def to_question(self) -> Question:
        return Question(id=self.id, split=self.split, subtype=self.subtype, context=self.context,
                        choices=self.choices, answer=self.answer, support=self.support,
                        premises=[Fact(*f) for f in self.premises],
                        choice_facts=[None if f is None else Fact(*f) for f in self.choice_facts], meta=self.meta)


class MetaFile(_Row):
    """What loading reads of ``meta.json`` (the rest, counts and version, is for people)."""

    family: str
    seed: int
    config: dict[str, Any]
    meta: dict[str, Any] | None = None
    content_hash: str | None = None


_META = TypeAdapter(MetaFile)
_DOCUMENT = TypeAdapter(DocumentRow)
_QUESTION = TypeAdapter(QuestionRow)
_FACT = TypeAdapter(FactRow)
# what each field must be, for the one-line error
_MUST = {"family": "a string", "seed": "an integer", "config": "an object", "content_hash": "a string",
         "id": "a string", "text": "a string", "kind": "a string", "subtype": "a string", "context": "a string",
         "split": "a non-empty string", "choices": "a non-empty list of strings", "answer": "an integer",
         "support": "a list of document ids", "meta": "an object",
         "facts": "a list of facts (each a list of three strings)",
         "premises": "a list of facts (each a list of three strings)",
         "choice_facts": "a list of facts (each a list of three strings, or null)"}


def _row_error(e: ValidationError, row: Any) -> str:
    """The first of pydantic's errors as one line naming the field and the offending value."""
    err = e.errors(include_url=False)[0]
    loc, kind = err["loc"], err["type"]
    if kind == "value_error":  # one of the row's own checks: its message says it all
        return str(err["ctx"]["error"])
    if not isinstance(row, dict) or not loc:
        return f"expected a JSON object, got {type(row).__name__}"
    field = str(loc[0])
    if kind == "missing":
        return f"missing field {field!r}"
    if field == "choices" and kind == "too_long":
        return f"{len(row[field])} choices; at most {MAX_CHOICES:,}"
    return f"field {field!r} must be {_MUST.get(field, 'valid')}, got {dumps(row[field])[:80]}"


def document_from_row(row: Any) -> Document:
    try:
        return _DOCUMENT.validate_python(row).to_document()
    except ValidationError as e:
        raise ValueError(_row_error(e, row)) from None


def question_from_row(row: Any) -> Question:
    try:
        return _QUESTION.validate_python(row).to_question()
    except ValidationError as e:
        raise ValueError(_row_error(e, row)) from None


def fact_from_row(row: Any) -> Fact:
    try:
        return Fact(*_FACT.validate_python(row))
    except ValidationError:
        raise ValueError(f"a knowledge row must be a list of three strings, got {dumps(row)[:80]}") from None


def _parse_file(path: Path, parse) -> list:
    out, ids = [], {}
    for i, row in _read_lines(path):
        try:
            item = parse(row)
        except (ValueError, TypeError, KeyError) as e:
            raise DataError(f"{path.name} line {i}: {e}") from None
        item_id = getattr(item, "id", None)
        if item_id is not None:
            if item_id in ids:
                raise DataError(f"{path.name} line {i}: id {item_id!r} already used on line {ids[item_id]}; "
                                "ids must be unique")
            ids[item_id] = i
        out.append(item)
    return out


def load_dataset(path: str | os.PathLike, *, verify_hash: bool = True) -> Dataset:
    """Read a dataset folder written by :func:`save_dataset`.

    Any missing or corrupt file, or bad row, is a :class:`DataError` naming the file and line.
    With ``verify_hash`` the files must match the ``content_hash`` in ``meta.json`` (hand-edited
    datasets: pass ``verify_hash=False``).
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder")
    meta_path = root / META_FILE
    if not meta_path.is_file():
        raise DataError(f"{root}: missing {META_FILE} (not a genmodes dataset folder)")
    from genmodes.io import loads_line, read_text
    from genmodes.limits import MAX_SEED

    text = read_text(meta_path, what=META_FILE, max_bytes=64 << 20)
    try:
        meta = loads_line(text)
    except ValueError as e:
        raise DataError(f"{meta_path}: invalid JSON ({getattr(e, 'msg', e)})") from None
    try:
        info = _META.validate_python(meta)
    except ValidationError as e:
        raise DataError(f"{meta_path}: {_row_error(e, meta)}") from None
    if not 0 <= info.seed <= MAX_SEED:
        raise DataError(f"{meta_path}: seed {info.seed} must be from 0 to {MAX_SEED}")
    documents = _parse_file(root / "documents.jsonl", document_from_row)
    questions = _parse_file(root / "questions.jsonl", question_from_row)
    knowledge = _parse_file(root / "knowledge.jsonl", fact_from_row)
    if verify_hash and info.content_hash:
        try:
            files = {n: (root / n).read_bytes() for n in DATA_FILES}
        except OSError as e:
            raise DataError(f"cannot read {e.filename}: {e.strerror}") from None
        if content_hash(files) != info.content_hash:
            raise DataError(f"{root}: data files do not match the content_hash in {META_FILE} "
                            "(edited by hand or truncated)")
    return Dataset(family=info.family, config=info.config, seed=info.seed, documents=documents,
                   questions=questions, knowledge=knowledge, meta=info.meta or {})


def resolve_dataset(spec: str | os.PathLike, seed: int = 0, overrides: dict[str, Any] | None = None) -> Dataset:
    """A dataset from either a dataset folder or a family name (generated with ``seed``/``overrides``).

    This is what the experiment runner calls for a config's ``dataset:`` entry.
    """
    from genmodes.data.families import FAMILY_MODULES, make_dataset

    p = Path(spec)
    if p.is_dir():
        if overrides:
            raise DataError(f"settings {sorted(overrides)} apply to a family name, not to the folder {p}")
        return load_dataset(p)
    if str(spec) in FAMILY_MODULES:
        return make_dataset(str(spec), seed=seed, overrides=overrides)
    raise DataError(f"{spec!r} is neither a dataset folder nor a family ({', '.join(FAMILY_MODULES)})")
