"""Simple syllogisms [P1, section "Datasets: simple syllogisms"], balanced so no shortcut answers them.

A training example states two premises over three nonsense terms: "The relationships between glon,
troff and yomp are: No glon are yomp. Some troff are glon." The test asks about the two end terms,
"The relationships between yomp and troff are:", and scores six statements as continuations (chance
1/6, as in P1); exactly one of them follows from the premises.

Semantics, and why the option set is what it is. Validity is decided by a brute-force Venn-model
solver (:func:`valid`), without existential import (terms may be empty; the modern, Boolean reading).
"Some X are Y" and "Some Y are X" are the same statement (likewise "No"), so the six options are
"All a are b", "All b are a", "Some a are b" *or* "Some b are a", "No a are b" *or* "No b are a" (one
direction of each symmetric pair, drawn at random: listing both would make two options right), "Some a
are not b" and "Some b are not a". As facts, a symmetric statement is stored with its terms sorted
(:func:`statement_fact`), so any wording of it is the same fact for the audit and the augmentation
checker. A premise form is kept only if exactly one of these six is valid (:func:`unique_conclusion_forms`,
all four figures, both premise orders): the valid forms of the textbook (Barbara; Celarent, Cesare,
Camestres, Calemes; Darii, Datisi, Disamis, Dimatis; Ferio, Festino, Baroco, Bocardo, Ferison,
Fresison) with each symmetric premise in either wording.

Balance [issue 8]. A Barbara-only family has one answer form ("All S are P"), so a form prior gets 50%
and a bigram model of the training text 100% (chance 17%). Three choices make this family fair:

- Moods. The conclusions are Some, No and Some-not statements, each mood as often as it has options
  (1 : 1 : 2), so each of the four options is the answer of a quarter of the items, and no length,
  frequency or form prior beats chance. "All" is a setting (``moods``), off by default, because it
  cannot be made fair: its only form is Barbara, whose conclusion is spelled with the premises' own
  word pairs ("All S are M" + "All M are P" -> "All S are P"), so a bigram model of the training text
  finds it every time, and no existential statement about S can be trained to mask that without
  making "Some S are P" valid too. Without "All" answers, the two "All" statements are left out of the
  options as well (else "never All" would be a prior worth 1/4 against a chance of 1/6): the test
  scores four statements (chance 25%); the ``trained`` recall split keeps all six.
- Forms. Within a mood, a bigram model of the premises prefers the conclusion of some forms (it
  reuses a premise's quantifier-subject pair, the "atmosphere" of the premises) and a wrong option of
  others. Measured with the four options over 960 examples (``forms="all"``): Some forms 83, 80, 55,
  42%; No forms 58, 58, 30, 27%; Some-not forms 0-55% (chance 25%). ``forms="balanced"`` (default)
  keeps the forms in ``BALANCED_FORMS``; on them the bigram model leans towards the answer on Some and
  No items (about 50-70%) and away from it on Some-not items (0-23%), and over the split it is near
  chance: 27% at 960 examples, 34% on average over seeds 0-9 at P1's 69 (29-41%; seed 0: 30%). The
  per-mood subtypes keep the lean visible: a model that reasons by premise atmosphere scores high on
  Some and No and low on Some-not.
- Order. The question names the end terms in random order and the symmetric options are worded in a
  random direction; the premises use every figure the kept forms have.

At the default size every baseline (position, length, overlap, co-occurrence, frequency, bigram,
answer form) stays within chance + 10 points: ``genmodes data audit`` prints them and fails a split
one answers.

Subtypes (for error bars over inference types, P1's protocol) are the conclusion moods. A ``trained``
recall split asks for each premise itself, with the same six-statement option set.
"""

from __future__ import annotations

import functools
import itertools
import random
import re

from typing import Literal

from pydantic import Field

from genmodes.data.families import Family, FamilyConfig
from genmodes.data.nonsense import NonsenseWords
from genmodes.data.types import Dataset, Document, Fact, Question
from genmodes.errors import DataError

QUANTIFIERS = ("all", "some", "no", "some not")

Statement = tuple[str, str, str]  # (quantifier, X, Y)


# ----------------------------------------------------------------------------------------- solver

def _holds(q: str, x: int, y: int, regions: tuple[tuple[bool, ...], ...]) -> bool:
    """Truth of "<q> X are Y" in a model given as the occupied Venn regions (membership tuples)."""
    if q == "all":
        return not any(r[x] and not r[y] for r in regions)
    if q == "no":
        return not any(r[x] and r[y] for r in regions)
    if q == "some":
        return any(r[x] and r[y] for r in regions)
    if q == "some not":
        return any(r[x] and not r[y] for r in regions)
    raise ValueError(f"unknown quantifier {q!r}")


@functools.lru_cache(maxsize=None)
def _models(n_terms: int, existential_import: bool) -> list[tuple[tuple[bool, ...], ...]]:
    """Every model of n terms up to what statements can tell apart: a set of occupied Venn regions.

    The region outside all terms never matters, so there are 2^(2^n - 1) models (128 for 3 terms).
    With existential import every term must be non-empty.
    """
    regions = [r for r in itertools.product((False, True), repeat=n_terms) if any(r)]
    out = []
    for mask in range(1 << len(regions)):
        occ = tuple(r for i, r in enumerate(regions) if mask >> i & 1)
        if existential_import and not all(any(r[t] for r in occ) for t in range(n_terms)):
            continue
        out.append(occ)
    return out


def valid(premises: list[Statement], conclusion: Statement, existential_import: bool = False) -> bool:
    """Does ``conclusion`` hold in every model of ``premises``? Statements are (quantifier, X, Y) over
    any hashable term names; terms are the ones the statements mention."""
    terms = sorted({t for _, x, y in [*premises, conclusion] for t in (x, y)}, key=str)
    ix = {t: i for i, t in enumerate(terms)}
    for m in _models(len(terms), existential_import):
        if all(_holds(q, ix[x], ix[y], m) for q, x, y in premises) and not _holds(
                conclusion[0], ix[conclusion[1]], ix[conclusion[2]], m):
            return False
    return True


SYMMETRIC = ("some", "no")
MOODS = ("all", "some", "no", "some not")  # conclusion moods
MOOD_SHARES = {"all": 2, "some": 1, "no": 1, "some not": 2}  # each mood as often as it has options
# Forms whose conclusion a bigram model of the premises does not find more often than chance, on
# average (measured bigram accuracy with the four-statement options, 40-60 items each; see docstring)
BALANCED_FORMS = {
    "All M are P. Some S are M.", "Some P are M. All M are S.",                          # Some: 55%, 42%
    "All P are M. No M are S.", "No M are P. All S are M.",                              # No: 30%, 27%
    "No M are P. Some M are S.", "No P are M. Some M are S.", "Some M are S. No M are P.",  # Some-not: 0%
    "Some M are S. No P are M.", "Some S are M. No P are M.", "No M are P. Some S are M.",  # 0%, 23%, 30%
}


def choice_statements(a: str, b: str, flip_some: bool = False, flip_no: bool = False,
                      with_all: bool = True) -> list[Statement]:
    """The test statements about end terms a, b (one direction of each symmetric pair): six, or the
    four without the two "All" statements."""
    some = ("some", b, a) if flip_some else ("some", a, b)
    no = ("no", b, a) if flip_no else ("no", a, b)
    alls = [("all", a, b), ("all", b, a)] if with_all else []
    return [*alls, some, no, ("some not", a, b), ("some not", b, a)]


def statement_fact(st: Statement) -> Fact:
    """A statement as a fact; symmetric statements ("some", "no") with their terms sorted."""
    q, x, y = st
    if q in SYMMETRIC and y < x:
        x, y = y, x
    return Fact(x, q, y)


@functools.lru_cache(maxsize=None)
def unique_conclusion_forms(existential_import: bool = False) -> list[tuple[Statement, Statement]]:
    """Premise pairs (in stated order) over terms S, M, P with exactly one valid choice, "<q> S are P".

    Enumerates every mood and figure in both premise orders, with the end terms called A and B, and
    renames the subject of the one valid conclusion to S (either term for a symmetric conclusion:
    the one that sorts first, so each form is listed once).
    """
    forms = set()
    pair_orders = [("M", "A"), ("A", "M")]
    for q1, q2 in itertools.product(QUANTIFIERS, repeat=2):
        for (x1, y1), (x2, y2) in itertools.product(pair_orders, repeat=2):
            p_a = (q1, x1, y1)
            p_b = (q2, x2.replace("A", "B"), y2.replace("A", "B"))
            for prem in ((p_a, p_b), (p_b, p_a)):
                ok = [c for c in choice_statements("A", "B") if valid(list(prem), c, existential_import)]
                if len(ok) != 1:
                    continue
                q, s, _p = ok[0]
                for subj in ((s, "B" if s == "A" else "A") if q in SYMMETRIC else (s,)):
                    ren = {subj: "S", ("B" if subj == "A" else "A"): "P", "M": "M"}
                    forms.add(tuple((q, ren[x], ren[y]) for q, x, y in prem))
    # a symmetric conclusion's form is found under both namings of its end terms: keep the first
    kept: list[tuple[Statement, Statement]] = []
    swap = {"S": "P", "P": "S", "M": "M"}
    for f in sorted(forms):
        if tuple((q, swap[x], swap[y]) for q, x, y in f) not in kept:
            kept.append(f)
    return kept


def conclusion(form: tuple[Statement, Statement], existential_import: bool = False) -> Statement:
    """The one valid choice of a kept form, as (q, "S", "P") (or ("q", "P", "S") for its converse)."""
    ok = [c for c in choice_statements("S", "P") if valid(list(form), c, existential_import)]
    assert len(ok) == 1, form
    return ok[0]


# ------------------------------------------------------------------------------------------ text

def sentence(st: Statement) -> str:
    q, x, y = st
    if q == "some not":
        return f"Some {x} are not {y}."
    return f"{q.capitalize()} {x} are {y}."


def form_label(form: tuple[Statement, Statement]) -> str:
    return " ".join(sentence(s) for s in form)


class SimpleSyllogismsConfig(FamilyConfig):
    n_examples: int = Field(69, ge=1, le=3000, description="training examples (three fresh terms each)")
    moods: tuple[Literal["all", "some", "no", "some not"], ...] = Field(
        ("some", "no", "some not"), min_length=1,
        description="conclusion moods, each as often as it has options ('all' is off by default: a bigram "
                    "model answers it)")
    forms: Literal["balanced", "all"] = Field("balanced", description="premise forms: the bigram-balanced set "
                                              "(default) or every form with exactly one valid option")
    existential_import: bool = Field(False, description="terms non-empty when deciding validity "
                                     "(leaves no form with exactly one valid choice)")


def _question(qid: str, split: str, subtype: str, a: str, b: str, prem: list[Statement], support: list[str],
              premises: list[Fact], rng: random.Random, meta: dict, existential_import: bool,
              with_all: bool = True) -> Question | None:
    """The statements about (a, b); None if not exactly one follows from ``prem`` (never for kept forms)."""
    sts = choice_statements(a, b, flip_some=rng.random() < 0.5, flip_no=rng.random() < 0.5, with_all=with_all)
    rng.shuffle(sts)
    ok = [i for i, st in enumerate(sts) if valid(prem, st, existential_import)]
    if len(ok) != 1:
        return None
    return Question(id=qid, split=split, subtype=subtype, context=f"The relationships between {a} and {b} are:",
                    choices=[" " + sentence(st) for st in sts], answer=ok[0], support=support,
                    premises=premises, choice_facts=[statement_fact(st) for st in sts], meta=meta)


def _valid_facts(prem: list[Statement], terms: list[str], existential_import: bool) -> list[Fact]:
    """Closed-world knowledge of one example: every option statement over any two of its terms that holds."""
    out = []
    for x, y in itertools.combinations(terms, 2):
        for st in choice_statements(x, y):
            f = statement_fact(st)
            if f not in out and valid(prem, st, existential_import):
                out.append(f)
    return out


def generate(cfg: SimpleSyllogismsConfig, seed: int) -> Dataset:
    forms = unique_conclusion_forms(cfg.existential_import)
    by_mood = {m: [f for f in forms if conclusion(f, cfg.existential_import)[0] == m
                   and (cfg.forms == "all" or m == "all" or form_label(f) in BALANCED_FORMS)] for m in MOODS}
    # each mood as often as it has options (see the module docstring: no length or form prior beats chance)
    moods = [m for m in MOODS if by_mood[m] and m in cfg.moods for _ in range(MOOD_SHARES[m])]
    if not moods:
        raise DataError("simple_syllogisms: no premise form has exactly one valid conclusion among the six "
                        "choices under existential_import=true; use existential_import=false")
    rng = random.Random(f"simple_syllogisms-{seed}")
    words = NonsenseWords(seed, namespace="simple_syllogisms", part=cfg.vocabulary).take(3 * cfg.n_examples)
    documents, questions, knowledge = [], [], []
    for i in range(cfg.n_examples):
        mood = moods[i % len(moods)]
        form = by_mood[mood][(i // len(moods)) % len(by_mood[mood])]
        names = dict(zip("SMP", words[3 * i: 3 * i + 3]))
        prem = [(q, names[x], names[y]) for q, x, y in form]
        listed = list(names.values())
        rng.shuffle(listed)
        text = (f"The relationships between {listed[0]}, {listed[1]} and {listed[2]} are: "
                + " ".join(sentence(p) for p in prem))
        pfacts = [statement_fact(p) for p in prem]
        label = form_label(form)
        doc = Document(id=f"syl{i:04d}", text=text, kind="article", facts=pfacts, meta={"form": label})
        documents.append(doc)
        knowledge += [f for f in _valid_facts(prem, listed, cfg.existential_import) if f not in knowledge]
        s, p = names["S"], names["P"]
        a, b = (s, p) if rng.random() < 0.5 else (p, s)
        order = "S first" if a == s else "P first"
        q = _question(f"syl{i:04d}-test", "syllogism", mood, a, b, prem, [doc.id], pfacts, rng,
                      {"form": label, "order": order, "mood": mood}, cfg.existential_import,
                      with_all="all" in cfg.moods)
        assert q is not None, label  # kept forms have exactly one valid choice by construction
        questions.append(q)
        for k, st in enumerate(prem):
            x, y = (st[1], st[2]) if rng.random() < 0.5 else (st[2], st[1])
            q = _question(f"syl{i:04d}-trained{k}", "trained", st[0], x, y, prem, [doc.id], [statement_fact(st)],
                          rng, {"form": label}, cfg.existential_import)
            if q is not None:
                questions.append(q)
    questions.sort(key=lambda q: (q.split != "syllogism", q.id))
    return Dataset(family="simple_syllogisms", config=cfg.model_dump(), seed=seed, documents=documents,
                   questions=questions, knowledge=knowledge,
                   meta={"recall_splits": ["trained"], "entities": words,
                         "forms": [form_label(f) for f in forms],
                         "description": "two premises over nonsense terms (moods balanced); score six "
                                        "statements about the end terms, exactly one valid"})


_STATEMENT = re.compile(r"\b(all|some|no) ([a-z]+) are (not )?([a-z]+)\b", re.IGNORECASE)


def parse_statements(text: str) -> list[Fact]:
    """"All troff are yomp." -> Fact("troff", "all", "yomp"); "Some x are not y" -> relation "some not";
    "Some"/"No" statements with their terms sorted (:func:`statement_fact`), whichever way they are worded."""
    out = []
    for m in _STATEMENT.finditer(text):
        q = m.group(1).lower()
        if m.group(3):
            if q != "some":
                continue
            q = "some not"
        out.append(statement_fact((q, m.group(2).lower(), m.group(4).lower())))
    return out


def oracle_augmentations(ds: Dataset) -> list[Document]:
    """For each example, a document stating the valid conclusions that follow from its premises."""
    stated = {f for d in ds.documents for f in d.facts}
    out = []
    for d in ds.documents:
        terms = {t for f in d.facts for t in (f.subject, f.object)}
        concl = [f for f in ds.knowledge if f not in stated and f.subject in terms and f.object in terms]
        if not concl:
            continue
        listed = ", ".join(sorted(terms))
        text = (f"From the relationships between {listed} it follows that: "
                + " ".join(sentence((f.relation, f.subject, f.object)) for f in concl))
        out.append(Document(id=f"oracle-{d.id}", text=text, kind="article", facts=concl, meta={"oracle": True}))
    return out


FAMILY = Family(
    name="simple_syllogisms",
    description="69 two-premise examples over nonsense terms, conclusion moods balanced; 6 statements, one valid",
    config=SimpleSyllogismsConfig,
    generate=generate,
    parse_statements=parse_statements,
    oracle_augmentations=oracle_augmentations,
)
