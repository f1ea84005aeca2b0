"""The common model of a dataset: documents to learn from, questions to test on, ground truth.

Every family (simple_reversals, simple_syllogisms, reversal_curse, semantic_structure, codebook,
relations) produces a :class:`Dataset`. Conditions only see ``documents`` (what the model may learn
from) and ``questions`` (what it is scored on); ``knowledge`` is the ground truth that the audit and
the augmentation checker use, never shown to a model.

Facts are triples ``(subject, relation, object)`` of plain strings. ``knowledge`` is closed-world: it
lists every true fact of the dataset's world that a question can ask about (trained facts and their
consequences alike), so a choice whose fact is not in it is false.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, order=True)
class Fact:
    subject: str
    relation: str
    object: str

    def to_list(self) -> list[str]:
        return [self.subject, self.relation, self.object]


@dataclass
class Document:
    """One training document. ``facts`` lists the ground-truth facts its text states."""

    id: str
    text: str
    kind: str = "article"  # article / relation / episode / filler / qa / definition / sequence
    facts: list[Fact] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "kind": self.kind,
                "facts": [f.to_list() for f in self.facts], "meta": self.meta}


@dataclass
class Question:
    """A multiple-choice test item, scored by likelihood: the choices are never shown in context.

    ``context`` is the prompt; each choice is a continuation of it (a leading space belongs to the
    choice). ``support`` holds the ids of the training documents that state ``premises``, the facts
    needed to answer (oracle retrieval puts those documents in context). ``choice_facts[i]`` is the
    fact that choice ``i`` asserts, or None where a choice is not a single fact.
    """

    id: str
    split: str
    subtype: str
    context: str
    choices: list[str]
    answer: int
    support: list[str] = field(default_factory=list)
    premises: list[Fact] = field(default_factory=list)
    choice_facts: list[Fact | None] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def chance(self) -> float:
        return 1.0 / len(self.choices)

    @property
    def answer_text(self) -> str:
        """The full correct statement: what must never appear in a training document."""
        return self.context + self.choices[self.answer]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "split": self.split, "subtype": self.subtype, "context": self.context,
                "choices": list(self.choices), "answer": self.answer, "support": list(self.support),
                "premises": [f.to_list() for f in self.premises],
                "choice_facts": [f.to_list() if f is not None else None for f in self.choice_facts],
                "meta": self.meta}


@dataclass
class Dataset:
    family: str
    config: dict[str, Any]
    seed: int
    documents: list[Document]
    questions: list[Question]
    knowledge: list[Fact]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def splits(self) -> list[str]:
        """Split names in order of first appearance."""
        return list(dict.fromkeys(q.split for q in self.questions))

    def split(self, name: str) -> list[Question]:
        return [q for q in self.questions if q.split == name]

    def chance(self, split: str) -> float:
        qs = self.split(split)
        return sum(q.chance for q in qs) / len(qs) if qs else float("nan")

    def doc_index(self) -> dict[str, Document]:
        return {d.id: d for d in self.documents}

    def summary(self) -> dict[str, Any]:
        return {"family": self.family, "seed": self.seed, "documents": len(self.documents),
                "questions": len(self.questions), "knowledge": len(self.knowledge),
                "splits": {s: len(self.split(s)) for s in self.splits}}
