"""``baseline``: a non-model shortcut predictor scored like any condition [RESEARCH "Shortcuts"].

``{name: cooccurrence, kind: baseline, settings: {method: cooccurrence}}`` puts the rows of one
:mod:`genmodes.data.baselines` method in the study's results, summary and report, so every table shows
what an associative learner of the training text (or a length, position, frequency, bigram or
answer-form prior) gets beside what the model got. No model is loaded or trained; each choice's
``logprob`` is the baseline's score for it, and ties are broken by a hash of (seed, question id), so the
pick is seeded and unbiased. The position and answer-form priors are leave-one-out over the questions
being scored.
"""

from __future__ import annotations

from typing import Literal

from genmodes.conditions.base import CellContext, ModelStageInfo, Prepared, Settings as _Base
from genmodes.data.baselines import METHODS

Method = Literal[METHODS]  # type: ignore[valid-type]


class Settings(_Base):
    method: Method = "cooccurrence"


class Info(ModelStageInfo):
    """Stands in for a model stage's (no training: 0 s)."""

    baseline: str | None = None  # the method
    prefix_tokens: int = 0


def own_scores(logprobs: list[float], chosen: int) -> list[float]:
    """A baseline's own scores of a question's choices, from the ``logprob`` values its results row
    holds (which carry +1 on the pick, see :func:`prepare`): counts, lengths or probabilities, never
    log-probabilities."""
    return [s - (i == chosen) for i, s in enumerate(logprobs)]


def prepare(ctx: CellContext, settings: Settings) -> Prepared:
    from genmodes.data.baselines import Baselines, pick
    from genmodes.scoring import ChoiceScore

    ds = ctx.dataset
    b = Baselines(ds)

    def score(questions):
        out = []
        for q in questions:
            scores = b.score(settings.method, q)
            best = pick(scores, f"{ctx.seed}-{q.id}")
            # +1 on the pick makes it strictly best (ties broken), so the runner's argmax is the pick
            out.append([ChoiceScore(c, float(s) + (i == best), 0, i == best)
                        for i, (c, s) in enumerate(zip(q.choices, scores))])
        return out

    return Prepared(model=None, tokenizer=None, score_questions=score,
                    info=Info(train_seconds=0.0, prefix_tokens=0, baseline=settings.method))
