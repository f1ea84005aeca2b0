"""Simple syllogisms [P1, section "Datasets: simple syllogisms"].

A training example states two premises over three nonsense terms: "The relationships between glon,
troff and yomp are: All glon are yomp. All troff are glon." The test asks about the two end terms,
"The relationships between yomp and troff are:", and scores all six statements (All / Some / No,
both directions; "Some X are not Y" omitted) as continuations.

Which premise forms to use is decided by a brute-force solver (:func:`valid`), not a hand-made table:
a form is kept only if EXACTLY ONE of the six statements follows. What the solver finds:

- "Some X are Y" and "Some Y are X" are equivalent, as are "No X are Y" and "No Y are X", so a form
  whose conclusion is particular or negative always has two valid choices;
- with existential import (non-empty terms) "All S are P" also gives "Some S are P", so NO form has
  exactly one valid choice;
- without it (the default; empty terms allowed) the only such forms are Barbara (All M are P, All S
  are M => All S are P) in its two premise orders.

So the test contrasts the valid universal conclusion with its converse, the particular and negative
statements; the subtype (premise order x order of terms in the question) gives the error bars. A
``trained`` recall split asks for each premise itself.
"""

from __future__ import annotations

import functools
import itertools
import random
import re

from pydantic import Field

from genmodes.data.families import Family, FamilyConfig
from genmodes.data.nonsense import NonsenseWords
from genmodes.data.types import Dataset, Document, Fact, Question
from genmodes.errors import DataError

QUANTIFIERS = ("all", "some", "no", "some not")
CHOICE_QUANTIFIERS = ("all", "some", "no")  # "some X are not Y" is not a test choice [P1]

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


def choice_statements(a: str, b: str) -> list[Statement]:
    """The six test statements about end terms a, b."""
    return [(q, x, y) for q in CHOICE_QUANTIFIERS for x, y in ((a, b), (b, a))]


@functools.lru_cache(maxsize=None)
def unique_conclusion_forms(existential_import: bool = False) -> list[tuple[Statement, Statement]]:
    """Premise pairs (in stated order) over terms S, M, P with exactly one valid choice, "<q> S are P".

    Enumerates every mood and figure in both premise orders, with the end terms called A and B, and
    renames the subject of the one valid conclusion to S.
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
                _, s, _p = ok[0]
                ren = {s: "S", ("B" if s == "A" else "A"): "P", "M": "M"}
                forms.add(tuple((q, ren[x], ren[y]) for q, x, y in prem))
    return sorted(forms)


# ------------------------------------------------------------------------------------------ text

def sentence(st: Statement) -> str:
    q, x, y = st
    if q == "some not":
        return f"Some {x} are not {y}."
    return f"{q.capitalize()} {x} are {y}."


def form_label(form: tuple[Statement, Statement]) -> str:
    return " ".join(sentence(s) for s in form)


def _fact(st: Statement) -> Fact:
    return Fact(st[1], st[0], st[2])


class SimpleSyllogismsConfig(FamilyConfig):
    n_examples: int = Field(69, ge=1, le=3000, description="training examples (three fresh terms each)")
    existential_import: bool = Field(False, description="terms non-empty when deciding validity "
                                     "(leaves no form with exactly one valid choice)")


def _question(qid: str, split: str, subtype: str, a: str, b: str, truth: Statement, support: list[str],
              premises: list[Fact], rng: random.Random, meta: dict) -> Question:
    sts = choice_statements(a, b)
    rng.shuffle(sts)
    return Question(id=qid, split=split, subtype=subtype, context=f"The relationships between {a} and {b} are:",
                    choices=[" " + sentence(s) for s in sts], answer=sts.index(truth), support=support,
                    premises=premises, choice_facts=[_fact(s) for s in sts], meta=meta)


def generate(cfg: SimpleSyllogismsConfig, seed: int) -> Dataset:
    forms = unique_conclusion_forms(cfg.existential_import)
    if not forms:
        raise DataError("simple_syllogisms: no premise form has exactly one valid conclusion among the six "
                        "choices under existential_import=true; use existential_import=false")
    rng = random.Random(f"simple_syllogisms-{seed}")
    words = NonsenseWords(seed, namespace="simple_syllogisms").take(3 * cfg.n_examples)
    documents, questions, knowledge = [], [], []
    for i in range(cfg.n_examples):
        form = forms[i % len(forms)]
        names = dict(zip("SMP", words[3 * i: 3 * i + 3]))
        prem = [(q, names[x], names[y]) for q, x, y in form]
        listed = list(names.values())
        rng.shuffle(listed)
        text = (f"The relationships between {listed[0]}, {listed[1]} and {listed[2]} are: "
                + " ".join(sentence(p) for p in prem))
        pfacts = [_fact(p) for p in prem]
        doc = Document(id=f"syl{i:04d}", text=text, kind="article", facts=pfacts, meta={"form": form_label(form)})
        documents.append(doc)
        s, p = names["S"], names["P"]
        conclusions = [c for c in choice_statements(s, p) if valid(prem, c, cfg.existential_import)]
        knowledge += pfacts + [_fact(c) for c in conclusions]
        a, b = (s, p) if rng.random() < 0.5 else (p, s)
        order = "S first" if a == s else "P first"
        questions.append(_question(f"syl{i:04d}-test", "syllogism", f"{form_label(form)} / {order}", a, b,
                                   conclusions[0], [doc.id], pfacts, rng, {"form": form_label(form), "order": order}))
        for k, st in enumerate(prem):
            x, y = (st[1], st[2]) if rng.random() < 0.5 else (st[2], st[1])
            questions.append(_question(f"syl{i:04d}-trained{k}", "trained", f"premise {k + 1}", x, y, st,
                                       [doc.id], [_fact(st)], rng, {"form": form_label(form)}))
    questions.sort(key=lambda q: (q.split != "syllogism", q.id))
    return Dataset(family="simple_syllogisms", config=cfg.model_dump(), seed=seed, documents=documents,
                   questions=questions, knowledge=knowledge,
                   meta={"recall_splits": ["trained"], "entities": words,
                         "forms": [form_label(f) for f in forms],
                         "description": "two premises over nonsense terms; score the six statements about the end terms"})


_STATEMENT = re.compile(r"\b(all|some|no) ([a-z]+) are (not )?([a-z]+)\b", re.IGNORECASE)


def parse_statements(text: str) -> list[Fact]:
    """"All troff are yomp." -> Fact("troff", "all", "yomp"); "Some x are not y" -> relation "some not"."""
    out = []
    for m in _STATEMENT.finditer(text):
        q = m.group(1).lower()
        if m.group(3):
            if q != "some":
                continue
            q = "some not"
        out.append(Fact(m.group(2).lower(), q, m.group(4).lower()))
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
    description="69 two-premise examples over nonsense terms; score the 6 statements about the end terms",
    config=SimpleSyllogismsConfig,
    generate=generate,
    parse_statements=parse_statements,
    oracle_augmentations=oracle_augmentations,
)
