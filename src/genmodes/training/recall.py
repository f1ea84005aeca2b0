"""Recall of the trained facts: the gate a latent result needs, and the stopping rule that trains to it.

A parametric condition's low score on a latent split (a reversal, a syllogism, a held-out category)
means "the knowledge is there and is not used" only if the model demonstrably learned the trained
facts; P2 reports "trained 100%, held-out 0%", and P1 trained to convergence. Every dataset names
its recall splits (``meta["recall_splits"]``: the trained facts asked in a phrasing training never
uses); :class:`RecallProbe` scores them with the one scorer (:mod:`genmodes.scoring`), each question
alone, exactly as a cell with no context scores them, so the gate a report shows and the figure a
stopping rule reads are the same number.

A fine-tuning run with ``until_recall`` scores the probe at the end of every epoch and stops at the
first epoch where every dataset's recall reaches it (:func:`genmodes.training.finetune.train`). A
training loop of another shape (from scratch) stops on the same rule through
:meth:`RecallProbe.reached`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from genmodes.data.types import Dataset, Question


def recall_questions(ds: Dataset) -> list[Question]:
    """The questions of ``ds``'s recall splits, as the study scores it (after ``splits`` and
    ``max_per_split``)."""
    recall = set(ds.meta.get("recall_splits") or [])
    return [q for q in ds.questions if q.split in recall]


@dataclass
class RecallProbe:
    """The recall questions of one or more datasets (``groups``: each question's dataset), scored as a
    cell without context scores them (``batch_tokens``, ``chat_template``: the study's scoring)."""

    questions: list[Question]
    groups: list[str] = field(default_factory=list)
    batch_tokens: int = 4096
    chat_template: bool = False

    def __post_init__(self) -> None:
        if not self.groups:
            self.groups = [""] * len(self.questions)
        if len(self.groups) != len(self.questions):
            raise ValueError("RecallProbe: one group per question")

    @classmethod
    def of(cls, datasets: dict[str, Dataset], batch_tokens: int = 4096, chat_template: bool = False) -> "RecallProbe":
        """The recall questions of every dataset (by name), in name order."""
        qs: list[Question] = []
        groups: list[str] = []
        for name, ds in sorted(datasets.items()):
            rq = recall_questions(ds)
            qs += rq
            groups += [name] * len(rq)
        return cls(qs, groups, batch_tokens, chat_template)

    def __bool__(self) -> bool:
        return bool(self.questions)

    @property
    def splits(self) -> list[str]:
        return list(dict.fromkeys(q.split for q in self.questions))

    def key(self) -> str:
        """What the probe's scores depend on besides the model (a checkpoint trained to a recall
        rule is keyed by it): the questions as scored and the scoring settings."""
        items = [[g, q.id, q.context, list(q.choices), q.answer] for g, q in zip(self.groups, self.questions)]
        return hashlib.sha256(json.dumps([items, self.batch_tokens, self.chat_template]).encode()).hexdigest()

    def score(self, model: Any, tokenizer: Any) -> "RecallScore":
        """Each question scored alone in eval mode, with no gradient; the model's mode is restored."""
        import torch

        from genmodes.scoring import Scorer, chosen

        was_training = model.training
        model.eval()
        try:
            prefix, context_for = "", (lambda q: q.context)
            if self.chat_template:
                from genmodes.chat import wrap

                prefix, context_for = wrap(tokenizer, prefix, context_for)
            with torch.no_grad():
                scores = Scorer(model, tokenizer, batch_tokens=self.batch_tokens).score(
                    [(context_for(q), q.choices) for q in self.questions], prefix=prefix)
        finally:
            model.train(was_training)
        right: dict[str, list[bool]] = {}
        for g, q, sc in zip(self.groups, self.questions, scores):
            right.setdefault(g, []).append(chosen(sc) == q.answer)
        return RecallScore({g: sum(v) / len(v) for g, v in right.items()},
                           sum(map(sum, right.values())) / max(1, len(self.questions)), len(self.questions))


@dataclass
class RecallScore:
    """Recall accuracy per group (dataset) and pooled over every question."""

    by_group: dict[str, float]
    accuracy: float
    questions: int

    def reached(self, threshold: float) -> bool:
        """Every group at or above ``threshold``: a study's fine-tune knows each dataset's facts."""
        return bool(self.by_group) and all(v >= threshold for v in self.by_group.values())

    @property
    def lowest(self) -> float:
        return min(self.by_group.values()) if self.by_group else float("nan")



def curve_reached(accuracy: dict[str, float], recall_splits: list[str], threshold: float) -> bool:
    """The stopping rule on one point of a training curve that is scored per split (training from
    scratch evaluates its curve every ``eval_every`` steps): every recall split scored and at or above
    ``threshold``. A loop stops on it after that evaluation (``if curve_reached(acc, splits, until):
    break``), which keeps the rule one definition for every training loop."""
    scored = [accuracy[s] for s in recall_splits if s in accuracy]
    return bool(scored) and len(scored) == len(recall_splits) and all(v >= threshold for v in scored)
