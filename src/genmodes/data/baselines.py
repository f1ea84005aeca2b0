"""Shortcut baselines: non-model predictors a split must not be answerable by [P1 "hard distractors";
RESEARCH.md, "Shortcuts"].

A held-out split measures generalization only if no cheap statistic answers it. Each baseline here
scores a question's choices from the training documents (and, for the two priors, from the answers of
the *other* questions of the split), never from a model:

``position``      the answer index most common among the questions of the other splits (on a dataset
                  with one split, among the split's other questions: leave-one-out)
``longest``       the longest choice (characters); ``shortest`` the shortest
``overlap``       the choice sharing most words with the question's context; ``overlap_min`` fewest
``cooccurrence``  the choice whose words co-occur most often with the question's words in one training
                  document (what an associative learner of the training text would pick)
``neighbour``     the choice whose words stand most often within two words of the question's last word
                  in the training text, however common that word is (``cooccurrence`` counts content
                  words only, so a short, frequent key such as a codebook's symbol escapes it: with each
                  code word written next to one symbol in definitions, this scored 100% on latent uses)
``frequency``     the choice whose words are most frequent in the training text
``bigram``        the choice a smoothed word bigram model of the training text finds most likely after
                  the question's context
``familiarity``   the *least* familiar choice: fewest co-occurrences with the question's words in the
                  training documents, then the rarest. The confound of an in-context test whose target
                  fact is held out among trained distractor facts: the one the model never saw is the
                  answer. Its complement, the most familiar choice, is ``cooccurrence``.
``answer_form``   the choice whose *form* (its text with question words and rare words masked, e.g.
                  "All #1 are #2.") is most common among the answers of the other splits (or, alone,
                  the split's other questions): an "always the All statement" prior

A baseline that ties between choices gets the expected accuracy of a random tie-break (credit
1/ties), so a baseline that knows nothing scores chance exactly. Content words (for co-occurrence and
frequency) are the words of at most ``max(2, 10%)`` of the documents: template words ("are", "the")
say nothing about which entity is meant.

The audit (:func:`offences`) fails a held-out split (one not in ``ds.meta["recall_splits"]``) when a
baseline beats chance by more than 10 points *and* that excess is significant: one-sided binomial
p < 0.05, Bonferroni-corrected over the baselines x held-out splits tested, so a 12-question split is
not failed for the luck of one of its many tests. A family exempts a (split, method) pair
that is a shortcut by design in ``ds.meta["shortcut_exempt"] = {split: {method: reason}}``: on a
reversal split the right answer co-occurs with the question's words by construction (that is what
makes the reversal curse striking), so reversal splits exempt ``cooccurrence`` and report it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence

from genmodes.data.types import Dataset, Question

METHODS = ("position", "longest", "shortest", "overlap", "overlap_min", "cooccurrence", "familiarity",
           "frequency", "bigram", "answer_form", "neighbour")
NEIGHBOUR_WINDOW = 2  # words either side
MARGIN = 0.10  # points above chance a held-out split may be answered by a shortcut
ALPHA = 0.05   # and only when the excess is significant

_WORD = re.compile(r"[a-z0-9]+")
_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def tokens(text: str) -> list[str]:
    """Words and punctuation marks: the bigram model's tokens."""
    return _TOKEN.findall(text.lower())


class TrainingStats:
    """Word statistics of a dataset's training documents, built once for every baseline."""

    def __init__(self, ds: Dataset):
        self.n_docs = len(ds.documents)
        self.docs_of: dict[str, set[int]] = defaultdict(set)
        self.tf: Counter[str] = Counter()
        self.bigrams: Counter[tuple[str, str]] = Counter()
        self.near: Counter[tuple[str, str]] = Counter()  # (word, word within NEIGHBOUR_WINDOW of it)
        self.unigrams: Counter[str] = Counter()
        for i, d in enumerate(ds.documents):
            ws = words(d.text)
            self.tf.update(ws)
            for k in range(1, NEIGHBOUR_WINDOW + 1):
                self.near.update(zip(ws, ws[k:]))
                self.near.update(zip(ws[k:], ws))
            for w in set(ws):
                self.docs_of[w].add(i)
            toks = ["<s>", *tokens(d.text)]
            self.unigrams.update(toks)
            self.bigrams.update(zip(toks, toks[1:]))
        self.n_tokens = sum(self.unigrams.values())
        self.vocab = len(self.unigrams) + 1
        self.max_df = max(2, int(0.1 * self.n_docs))
        self.entities = set(ds.meta.get("entities") or ())

    def df(self, w: str) -> int:
        return len(self.docs_of.get(w, ()))

    def content(self, ws: Sequence[str]) -> list[str]:
        """The words that identify something: rare in the training text (or unseen there)."""
        return [w for w in dict.fromkeys(ws) if self.df(w) <= self.max_df]

    def p_bigram(self, prev: str, w: str) -> float:
        # Dirichlet-smoothed bigram over an add-one unigram: never zero, exact on seen pairs
        p_uni = (self.unigrams.get(w, 0) + 1) / (self.n_tokens + self.vocab)
        c_prev = self.unigrams.get(prev, 0)
        return (self.bigrams.get((prev, w), 0) + p_uni) / (c_prev + 1)


def _distinct_words(q: Question) -> list[list[str]]:
    """Per choice, its words minus those every choice shares (they cannot tell choices apart)."""
    per = [words(c) for c in q.choices]
    common = set(per[0]).intersection(*map(set, per[1:])) if per else set()
    return [[w for w in ws if w not in common] for ws in per]


def _form(choice: str, context: str, stats: TrainingStats) -> str:
    ctx = list(dict.fromkeys(words(context)))
    out = []
    for t in tokens(choice):
        if t in ctx and stats.df(t) <= stats.max_df:
            out.append(f"#{ctx.index(t) + 1}")
        elif _WORD.fullmatch(t) and (t in stats.entities or stats.df(t) <= stats.max_df):
            out.append("#x")
        else:
            out.append(t)
    return " ".join(out)


# ------------------------------------------------------------------------------------------ methods

Scorer = Callable[[Question, TrainingStats, "SplitPriors"], list[float]]


@dataclass
class SplitPriors:
    """Answer positions and forms per split, for the leave-one-out priors."""

    positions: dict[str, Counter]
    forms: dict[str, Counter]
    form_of: dict[str, list[str]]  # question id -> form of each choice

    @classmethod
    def build(cls, questions: Sequence[Question], stats: TrainingStats) -> "SplitPriors":
        positions: dict[str, Counter] = defaultdict(Counter)
        forms: dict[str, Counter] = defaultdict(Counter)
        form_of = {}
        for q in questions:
            fs = [_form(c, q.context, stats) for c in q.choices]
            form_of[q.id] = fs
            positions[q.split][q.answer] += 1
            forms[q.split][fs[q.answer]] += 1
        return cls(positions, forms, form_of)


def _others(table: dict[str, Counter], split: str) -> Counter | None:
    """The counts of every other split, or None when the dataset has no other split."""
    rest = [c for s, c in table.items() if s != split]
    return sum(rest, Counter()) if rest else None


def _position(q, stats, pri):
    # the prior a learner could take from the rest of the data: the other splits' answers (on a split
    # that is alone, the other questions of it: leave-one-out)
    c = _others(pri.positions, q.split)
    if c is None:
        c = pri.positions[q.split]
        return [c.get(i, 0) - (i == q.answer) for i in range(len(q.choices))]
    return [c.get(i, 0) for i in range(len(q.choices))]


def _answer_form(q, stats, pri):
    fs = pri.form_of[q.id]
    c = _others(pri.forms, q.split)
    if c is None:
        c = pri.forms[q.split]
        return [c.get(f, 0) - (f == fs[q.answer]) for f in fs]
    return [c.get(f, 0) for f in fs]


def _longest(q, stats, pri):
    return [float(len(c.strip())) for c in q.choices]


def _shortest(q, stats, pri):
    return [-float(len(c.strip())) for c in q.choices]


def _overlap(q, stats, pri):
    ctx = set(words(q.context))
    return [float(len(set(ws) & ctx)) for ws in map(words, q.choices)]


def _overlap_min(q, stats, pri):
    return [-s for s in _overlap(q, stats, pri)]


def _cooccurrence(q, stats, pri):
    qw = stats.content(words(q.context))
    out = []
    for ws in _distinct_words(q):
        total = 0
        for c in stats.content([w for w in ws if w not in qw]):
            dc = stats.docs_of.get(c)
            if dc:
                total += sum(len(dc & stats.docs_of.get(w, set())) for w in qw)
        out.append(float(total))
    return out


def _familiarity(q, stats, pri):
    # Unlike cooccurrence, a choice that is itself in the context counts too: its co-occurrences with the
    # context's other words are how familiar the fact the context shows about it is. Fewest first; among
    # ties the rarest choice (the second key is below one, so it never outweighs a co-occurrence).
    ctx = stats.content(words(q.context))
    freq = _frequency(q, stats, pri)
    top = max(freq) + 1.0 if freq else 1.0
    out = []
    for ws, f in zip(_distinct_words(q), freq):
        own = set(ws)
        total = sum(len(stats.docs_of.get(c, set()) & stats.docs_of.get(w, set()))
                    for c in stats.content(ws) for w in ctx if w not in own)
        out.append(-float(total) - f / (top + 1.0))
    return out


def _frequency(q, stats, pri):
    out = []
    for ws in _distinct_words(q):
        out.append(sum(math.log1p(stats.tf.get(w, 0)) for w in ws) / len(ws) if ws else 0.0)
    return out


def _bigram(q, stats, pri):
    ctx = tokens(q.context)
    prev0 = ctx[-1] if ctx else "<s>"
    out = []
    for c in q.choices:
        prev, lp = prev0, 0.0
        for t in tokens(c):
            lp += math.log(stats.p_bigram(prev, t))
            prev = t
        out.append(lp)
    return out


def _neighbour(q, stats, pri):
    ctx = words(q.context)
    if not ctx:
        return [0.0] * len(q.choices)
    last = ctx[-1]
    return [float(sum(stats.near.get((w, last), 0) for w in ws)) for ws in _distinct_words(q)]


SCORERS: dict[str, Scorer] = {
    "position": _position, "longest": _longest, "shortest": _shortest, "overlap": _overlap,
    "overlap_min": _overlap_min, "cooccurrence": _cooccurrence, "familiarity": _familiarity,
    "frequency": _frequency,
    "bigram": _bigram, "answer_form": _answer_form, "neighbour": _neighbour,
}
assert tuple(SCORERS) == METHODS


def credit(scores: Sequence[float], answer: int) -> float:
    """Expected accuracy of picking a best-scored choice at random: 1/ties if the answer is among them."""
    best = max(scores)
    tied = [i for i, s in enumerate(scores) if s == best]
    return 1.0 / len(tied) if answer in tied else 0.0


def pick(scores: Sequence[float], key: str) -> int:
    """A best-scored choice, ties broken by a hash of ``key`` (seeded and unbiased)."""
    best = max(scores)
    tied = [i for i, s in enumerate(scores) if s == best]
    return tied[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(tied)]


class Baselines:
    """Every baseline over one dataset; ``score(method, q)`` gives the per-choice scores."""

    def __init__(self, ds: Dataset, questions: Sequence[Question] | None = None):
        self.ds = ds
        self.stats = TrainingStats(ds)
        self.priors = SplitPriors.build(ds.questions if questions is None else questions, self.stats)

    def score(self, method: str, q: Question) -> list[float]:
        if method not in SCORERS:
            raise ValueError(f"unknown baseline method {method!r}; known: {', '.join(METHODS)}")
        return SCORERS[method](q, self.stats, self.priors)


# ------------------------------------------------------------------------------------------ the table

@dataclass
class BaselineRow:
    split: str
    method: str
    n: int
    accuracy: float
    chance: float
    held_out: bool
    exempt: str | None = None  # the family's reason, where this shortcut is by design
    p_value: float = 1.0
    alpha: float = ALPHA  # the corrected significance level this row is tested at

    @property
    def offence(self) -> bool:
        return (self.held_out and self.exempt is None and self.accuracy > self.chance + MARGIN
                and self.p_value < self.alpha)


def _binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), in log space (n can be thousands)."""
    if k <= 0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k, n + 1)]
    m = max(terms)
    return min(1.0, math.exp(m) * sum(math.exp(t - m) for t in terms))


def evaluate(ds: Dataset, methods: Sequence[str] = METHODS) -> list[BaselineRow]:
    """Accuracy of each baseline on each split, against chance, marking the held-out offences."""
    b = Baselines(ds)
    recall = set(ds.meta.get("recall_splits", []))
    exempt = ds.meta.get("shortcut_exempt") or {}
    rows = []
    for split in ds.splits:
        qs = ds.split(split)
        chance = ds.chance(split)
        for m in methods:
            acc = sum(credit(b.score(m, q), q.answer) for q in qs) / len(qs)
            p = _binom_sf(round(acc * len(qs)), len(qs), chance) if 0 < chance < 1 else 1.0
            rows.append(BaselineRow(split=split, method=m, n=len(qs), accuracy=acc, chance=chance,
                                    held_out=split not in recall, exempt=(exempt.get(split) or {}).get(m),
                                    p_value=p))
    n_tests = max(1, sum(r.held_out for r in rows))
    for r in rows:
        r.alpha = ALPHA / n_tests
    return rows


def offences(rows: Sequence[BaselineRow]) -> list[str]:
    """One line per held-out split a shortcut answers."""
    return [f"{r.split}: the {r.method} baseline gets {r.accuracy:.1%} (chance {r.chance:.1%}, n={r.n}, "
            f"p={r.p_value:.2g}): a shortcut answers this held-out split" for r in rows if r.offence]


REVERSAL_EXEMPTION = ("on a reversal the right answer co-occurs with the question's words by construction: "
                      "an associative learner would pass; fine-tuned models do not (the reversal curse)")


def print_table(rows: Sequence[BaselineRow], title: str = "") -> None:
    """Baselines as rows, splits as columns; offences in red, by-design shortcuts marked *."""
    from rich.console import Console
    from rich.table import Table

    con = Console()
    splits = list(dict.fromkeys(r.split for r in rows))
    by = {(r.split, r.method): r for r in rows}
    t = Table(title=title or "shortcut baselines: accuracy per split (* by design, red fails the audit)")
    t.add_column("baseline")
    for s in splits:
        first = next(r for r in rows if r.split == s)
        t.add_column(f"{s}{'' if first.held_out else ' (recall)'}\nchance {first.chance:.0%}", justify="right")
    for m in dict.fromkeys(r.method for r in rows):
        cells = []
        for s in splits:
            r = by.get((s, m))
            if r is None:
                cells.append("")
                continue
            txt = f"{r.accuracy:.0%}" + ("*" if r.exempt else "")
            cells.append(f"[bold red]{txt}[/]" if r.offence else txt)
        t.add_row(m, *cells)
    con.print(t)
