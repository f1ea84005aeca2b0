"""Semantic structure [P1, "On the generalization of language models from in-context learning and
finetuning", semantic structure dataset].

A hand-written hierarchy of 118 real-world categories of animals and objects
(``resources/semantic_hierarchy.json``: parent, 1-4 properties each, relations "eats", "lives in",
"is made of", "is used for"), every property inherited by all descendants. Each generated dataset
maps every category, property, food, habitat and material word to a nonsense word (seeded), keeping
only the relational frame in English: "The dax is a type of fep. The fep can zarp."

Training: wiki-like articles of 4-20 sentences in five formats (encyclopedia paragraph, bullet list,
Q&A, comparison of two sibling categories, glossary of category facts), plus short QA items. An
article states facts *about its own categories only* (their parent and their own properties), never
an inherited one, so a syllogism's premises sit in different documents and must be linked across
them (P1's "global" inferences). Every trained fact has a complete encyclopedia article.

Splits (every choice is a nonsense word; options are never in context):
- ``rephrase`` (recall): a trained fact in a phrasing training never uses ("The dax is able to zarp.");
- ``reversal``: a trained fact asked object-first ("One type of fep is the dax.", "One thing that can
  zarp is the dax."); its fact is the inverse relation, e.g. ("zarp", "is an ability of", "dax");
- ``syllogism``: an inherited fact, hops = premises = isa edges + 1 for a property ("dax isa fep,
  fep can zarp" is 2 hops), or isa edges for an ancestor ("dax isa fep isa blick": 2 hops);
- ``category_holdout``: for held-out leaf categories training states *only* the parent fact; their
  inherited properties and (non-root) ancestors are asked (all of them at the default size);
- ``cooccurrence_congruent`` / ``cooccurrence_incongruent``: a designed shortcut probe (listed in
  ``meta["probe_splits"]``), below.

Hard distractors (P1; issue 8 part 4). Each wrong option holds the same relation for some other
entity (another category can "blorf"; the wrong reversal answer is itself a type of something) and is
false under the closed-world knowledge, which holds every inherited fact and every inverse; no option
is a word of the question. Beyond that, options are matched on what a non-model shortcut over the
training documents reads (``genmodes.data.baselines``), so that on the held-out splits none beats
chance by more than a few points:
- same-document co-occurrence with the question's content words: each wrong option co-occurs about
  as often as the answer (exactly where the valid options allow, else within a tenth). Syllogism and
  category-holdout answers are never stated with their subject, so their options mostly co-occur
  zero times: an associative learner is at chance. A reversal's answer co-occurs with its question
  by definition (the reversal curse's point), so there co-occurrence is reported, exempt
  (``meta["shortcut_exempt"]``), not matched;
- "is a type of": every option sits at the answer's depth in the hierarchy (answers near the root
  among mid-level distractors let "pick the most general" answer most such items; issue 8). A root
  answer has one same-depth alternative (the hierarchy has two roots), so "X is a type of <root>"
  is never asked;
- frequency in the training text (and so a bigram model's score of the option after the context,
  since a property word only ever follows its relation's words): the number of wrong options more
  frequent than the answer is balanced over a split, 0..k-1 equally often, so the most and the least
  frequent option are each the answer about 1/k of the time. An item whose answer is the most
  (least) frequent of every valid option is skipped once its share is full, so each split plans a
  quarter more items than it asks. A reversal's options (categories) also end a sentence about as
  often as its answer does (a parent often does, "... is a type of fep.", a leaf never);
- length (same length preferred) and answer position (each position equally often).

Co-occurrence probe [P1; RESEARCH.md "word co-occurrence can mask a failure of latent
generalization"]: syllogism-type inferences (premises in different documents, like ``syllogism``)
whose subject's first ``probe_cue_mentions`` articles end with a "See also" line linking to a list
page, e.g. "See also: everything that can zarp." The link states nothing about the category (no
parser reads a fact from it) but puts the cue word in the subject's documents, after its relation's
words and before a full stop as a statement would. In
``cooccurrence_congruent`` the cue is the answer, so training co-occurrence favours the right option
(every other option co-occurs less); in ``cooccurrence_incongruent`` the cue is one wrong option (the
lure; ``meta["cue"]``), so it favours a wrong one (the answer and the other options co-occur less
than the lure; the lure is chosen so that, with its cue mentions, it is as frequent as the answer,
above it for half the items). The two splits are drawn alternately from one pool, so they share subtypes and
hops; beside each other in a summary they show whether a model's inferences follow the association:
an associative learner scores 100% and 0%. The congruent split is a shortcut by design
(``meta["shortcut_exempt"]``); the audit still checks every other baseline there.

Subtypes: "category"/"property" for rephrase and reversal, "{category,property}_{hops}hop" for
inferences.

The world (lexicon, hierarchy, closed-world knowledge) is built once (:class:`World`); which facts
each split asks is chosen from it, then the documents are written, the probe's cue links added, and
each question's options chosen from the documents' statistics. Everything is a function of
(config, seed).
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from typing import Any, ClassVar, Iterator

from pydantic import Field, field_validator

from genmodes.data.baselines import REVERSAL_EXEMPTION
from genmodes.data.families import Family, FamilyConfig
from genmodes.data.nonsense import NonsenseWords, VocabularyPart, capitalize
from genmodes.data.types import Dataset, Document, Fact, Question

ISA = "is a type of"
RECALL_SPLITS = ["rephrase"]
CONGRUENT, INCONGRUENT = "cooccurrence_congruent", "cooccurrence_incongruent"
PROBE_SPLITS = [CONGRUENT, INCONGRUENT]
CONGRUENT_EXEMPTION = ("a designed shortcut probe: training co-occurrence favours the right option on every "
                       "item (beside cooccurrence_incongruent, where it favours a wrong one)")

INCONGRUENT_EXEMPTION = ("a designed shortcut probe: training co-occurrence favours one wrong option on every item, "
                         "so 'the least familiar option' rules that one out (one in three, not a reading of the facts)")

# Per relation: training phrasings, held-out rephrasings, the reversed phrasing, a Q&A question.
# Every forward template ends with "{o}." and every reversed one with "{s}.", so a question is the
# template cut before that word and the choice is " word.".
TEMPLATES: dict[str, dict] = {
    ISA: dict(train=["The {s} is a type of {o}.", "Every {s} is a {o}."],
              rephrase=["The {s} is a kind of {o}.", "Each {s} counts as a {o}."],
              reverse="One type of {o} is the {s}.", inverse="has type", ask="What is the {s}?"),
    "can": dict(train=["The {s} can {o}.", "Every {s} can {o}."],
                rephrase=["The {s} is able to {o}.", "Each {s} knows how to {o}."],
                reverse="One thing that can {o} is the {s}.", inverse="is an ability of",
                ask="What can the {s} do?"),
    "has": dict(train=["The {s} has {o}.", "Every {s} has {o}."],
                rephrase=["The {s} comes with {o}.", "Each {s} possesses {o}."],
                reverse="One thing that has {o} is the {s}.", inverse="is had by",
                ask="What does the {s} have?"),
    "is": dict(train=["The {s} is {o}.", "Every {s} is {o}."],
               rephrase=["The {s} tends to be {o}.", "Each {s} is always {o}."],
               reverse="One thing that is {o} is the {s}.", inverse="is a trait of",
               ask="What is the {s} like?"),
    "eats": dict(train=["The {s} eats {o}.", "Every {s} eats {o}."],
                 rephrase=["The {s} feeds on {o}.", "The diet of the {s} includes {o}."],
                 reverse="One thing that eats {o} is the {s}.", inverse="is eaten by",
                 ask="What does the {s} eat?"),
    "lives in": dict(train=["The {s} lives in {o}.", "Every {s} lives in {o}."],
                     rephrase=["The {s} makes its home in {o}.", "The {s} is found in {o}."],
                     reverse="One thing that lives in {o} is the {s}.", inverse="is home to",
                     ask="Where does the {s} live?"),
    "is made of": dict(train=["The {s} is made of {o}.", "Every {s} is made of {o}."],
                       rephrase=["The {s} is built from {o}.", "The material of the {s} is {o}."],
                       reverse="One thing made of {o} is the {s}.", inverse="is the material of",
                       ask="What is the {s} made of?"),
    "is used for": dict(train=["The {s} is used for {o}.", "Every {s} is used for {o}."],
                        rephrase=["People use the {s} for {o}.", "The purpose of the {s} is {o}."],
                        reverse="One thing used for {o} is the {s}.", inverse="is the use of",
                        ask="What is the {s} used for?"),
}
INVERSE = {r: t["inverse"] for r, t in TEMPLATES.items()}
COMPARE = "The {s} and the {t} are both types of {o}."
INTROS = ["This article is about the {s}.", "Here is what is known about the {s}.",
          "The following describes the {s}.", ""]
OUTROS = ["That is what is known about the {s}.", "More about the {s} may be added later.", "", ""]


class SemanticStructureConfig(FamilyConfig):
    OMIT_WHEN_UNSET: ClassVar[tuple[str, ...]] = ("vocabulary", "subtrees")

    n_documents: int = Field(2200, ge=1, description="articles; at least one complete article per category")
    n_qa_items: int = Field(300, ge=0, description="short single-fact Q&A documents, besides the articles")
    n_holdout_categories: int = Field(10, ge=0, le=40)
    holdout_mentions: int = Field(5, ge=1, description="glossary articles stating each held-out category's parent")
    questions_per_split: int = Field(300, ge=1)
    n_choices: int = Field(4, ge=2)
    support_docs_per_premise: int = Field(3, ge=1, description="support lists the shortest documents stating each premise")
    probe_questions_per_split: int | None = Field(
        None, ge=0, description="items in each co-occurrence probe split (0: no probe); default: half of "
                                "questions_per_split")
    probe_cue_mentions: int = Field(
        3, ge=1, description="articles about a probe item's subject that end with its cue word's See-also link")
    subtrees: list[str] | None = Field(
        None, min_length=1, description="English names of hierarchy categories to keep, each with all its "
                                        "descendants and its ancestors (default: the whole hierarchy)")

    @field_validator("subtrees")
    @classmethod
    def _known_categories(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            names = [c["name"] for c in load_hierarchy()]
            unknown = [x for x in v if x not in names]
            if unknown:
                raise ValueError(f"no category {unknown[0]!r} in the hierarchy (its roots: "
                                 f"{', '.join(c['name'] for c in load_hierarchy() if c['parent'] is None)})")
        return v


@functools.lru_cache(maxsize=1)
def load_hierarchy() -> list[dict]:
    """The hierarchy, checked: parents exist and come first, no property repeats an ancestor's."""
    raw = json.loads(resources.files("genmodes.data").joinpath("resources/semantic_hierarchy.json").read_text())
    cats = raw["categories"]
    seen: dict[str, dict] = {}
    for c in cats:
        p = c["parent"]
        if p is not None and p not in seen:
            raise ValueError(f"semantic hierarchy: {c['name']!r} has parent {p!r} defined after it or not at all")
        for rel, _ in c["properties"]:
            if rel not in TEMPLATES or rel == ISA:
                raise ValueError(f"semantic hierarchy: {c['name']!r} has unknown relation {rel!r}")
        a = p
        while a is not None:
            dup = {tuple(x) for x in seen[a]["properties"]} & {tuple(x) for x in c["properties"]}
            if dup:
                raise ValueError(f"semantic hierarchy: {c['name']!r} repeats {sorted(dup)} of ancestor {a!r}")
            a = seen[a]["parent"]
        seen[c["name"]] = c
    return cats


def subtree_categories(subtrees: list[str] | None) -> list[dict]:
    """The hierarchy's categories kept by ``subtrees`` (each named category, its descendants and its
    ancestors), in hierarchy order; every category when ``subtrees`` is None."""
    cats = load_hierarchy()
    if subtrees is None:
        return cats
    parent = {c["name"]: c["parent"] for c in cats}
    keep: set[str] = set()
    for c in cats:  # parents come first: a category is kept when its parent is, or when it is named
        if c["name"] in subtrees or parent[c["name"]] in keep:
            keep.add(c["name"])
    for name in subtrees:
        a = parent[name]
        while a is not None:
            keep.add(a)
            a = parent[a]
    return [c for c in cats if c["name"] in keep]


def _question_parts(template: str, s: str, o: str, last: str) -> tuple[str, str]:
    """Split a filled template before its final word: (context, " word.")."""
    text = template.format(s=s, o=o)
    assert text.endswith(f" {last}."), text
    return text[: -len(last) - 2], f" {last}."


_WORD = re.compile(r"[a-z]+")
_END = re.compile(r"([a-z]+)\.")
SEE_ALSO = "See also: "
CUE_FORMATS = ("encyclopedia", "bullets", "qa")  # articles about one category, which may end with a link
# The co-occurrence probe's cue: a "See also" link to a list page, which names the cue word after
# the relation's own words (so a bigram of the training text sees it where a statement would put
# it) but states nothing about the article's category.
LINKS = {ISA: "every type of {o}", "can": "everything that can {o}", "has": "everything that has {o}",
         "is": "everything that is {o}", "eats": "everything that eats {o}",
         "lives in": "everything that lives in {o}", "is made of": "everything made of {o}",
         "is used for": "everything used for {o}"}


@dataclass(frozen=True)
class World:
    """The frozen world of one dataset: lexicon, hierarchy, trained facts and closed-world knowledge.

    Built once by :func:`build_world`; the plan of what is asked, the documents and the questions are
    all written from it, and none of them changes it.
    """

    lex: dict[str, str]  # English category -> nonsense word
    obj_lex: dict[str, str]  # English property object (food, habitat, ...) -> nonsense word
    names: list[str]  # categories, every parent before its children
    parent: dict[str, str | None]
    children: dict[str, list[str]]
    chain: dict[str, list[str]]  # c -> [c, its parent, its grandparent, ...]
    depth: dict[str, int]  # isa edges up to a root
    heldout: list[str]  # held-out leaf categories, in hierarchy order
    held: frozenset[str]
    studied: list[str]  # the other categories
    own: dict[str, list[Fact]]  # c -> the properties c states itself (none for a held-out category)
    props_of: dict[str, dict[Fact, tuple[str, int]]]  # c -> property fact -> (owner, isa edges to it)
    forward: frozenset[Fact]  # every true forward fact: ancestors and inherited properties
    knowledge: frozenset[Fact]  # forward facts and the inverse of each
    trained: list[Fact]  # what the documents state: each parent edge, then each own property
    trained_set: frozenset[Fact]
    holders: dict[tuple[str, str], frozenset[str]]  # (relation, object) -> subjects it is true of
    objs_of: dict[tuple[str, str], frozenset[str]]  # (subject, relation) -> objects it is true with
    rel_objects: dict[str, list[str]]  # relation -> every object it takes, sorted
    rel_subjects: dict[str, list[str]]  # relation -> studied subjects holding it, in hierarchy order

    def ancestors(self, c: str) -> list[str]:
        return self.chain[c][1:]

    def facts_of(self, c: str) -> list[Fact]:
        """What a complete article about ``c`` states: its parent edge and its own properties."""
        return ([Fact(c, ISA, self.parent[c])] if self.parent[c] else []) + self.own[c]

    def premises_for(self, f: Fact) -> tuple[list[Fact], int]:
        """Premises of a forward fact and its hop count (= number of premises)."""
        chain = self.chain[f.subject]
        if f.relation == ISA:
            k = chain.index(f.object)
            return [Fact(chain[i], ISA, chain[i + 1]) for i in range(k)], k
        owner, d = self.props_of[f.subject][f]
        return [Fact(chain[i], ISA, chain[i + 1]) for i in range(d)] + [Fact(owner, f.relation, f.object)], d + 1

    def wrong_forward(self, f: Fact) -> list[str]:
        """Valid wrong objects of (subject, relation, ?): false for the subject, true of another
        subject (hard), never the subject itself; a wrong category sits at the answer's depth."""
        true = self.objs_of.get((f.subject, f.relation), frozenset())
        if f.relation == ISA:  # a wrong parent must itself have a subtype
            d = self.depth[f.object]
            return [c for c in self.names if self.children[c] and self.depth[c] == d
                    and c not in true and c != f.subject]
        return [o for o in self.rel_objects[f.relation] if o not in true]

    def wrong_reverse(self, f: Fact) -> list[str]:
        """Valid wrong subjects of (?, relation, object): each holds the relation with another object."""
        true = self.holders.get((f.relation, f.object), frozenset())
        pool = [c for c in self.rel_subjects[f.relation] if c not in true and c != f.object]
        if f.relation == ISA:
            pool = [c for c in pool if self.depth[c] == self.depth[f.subject]]
        return pool


def build_world(seed: int, rng: random.Random, n_holdout_categories: int,
                vocabulary: VocabularyPart | None = None, subtrees: list[str] | None = None) -> World:
    """The world of (seed, n_holdout_categories); ``rng`` draws the held-out categories (and nothing else);
    every word is from the ``vocabulary`` part when one is given; only the ``subtrees`` of the
    hierarchy when given (:func:`subtree_categories`)."""
    cats = subtree_categories(subtrees)
    words = NonsenseWords(seed, namespace="semantic_structure", distinct_prefix_len=3, part=vocabulary)
    lex: dict[str, str] = {c["name"]: w for c, w in zip(cats, words.take(len(cats)))}
    objects = sorted({o for c in cats for _, o in c["properties"]})
    obj_lex = dict(zip(objects, words.take(len(objects))))
    parent = {lex[c["name"]]: (lex[c["parent"]] if c["parent"] else None) for c in cats}
    names = [lex[c["name"]] for c in cats]
    children: dict[str, list[str]] = {c: [] for c in names}
    for c, p in parent.items():
        if p is not None:
            children[p].append(c)
    chain: dict[str, list[str]] = {}
    for c in names:  # parents come first, so a parent's chain is already there
        chain[c] = [c] + (chain[parent[c]] if parent[c] is not None else [])
    depth = {c: len(chain[c]) - 1 for c in names}
    leaves = [c for c in names if not children[c] and depth[c] >= 2]
    heldout = sorted(rng.sample(leaves, min(n_holdout_categories, len(leaves))), key=names.index)
    held = frozenset(heldout)
    own = {lex[c["name"]]: ([] if lex[c["name"]] in held else
                            [Fact(lex[c["name"]], r, obj_lex[o]) for r, o in c["properties"]]) for c in cats}
    # Closed world: every inherited property and ancestor, and the inverse of each.
    props_of: dict[str, dict[Fact, tuple[str, int]]] = {}
    for c in names:
        props_of[c] = {Fact(c, f.relation, f.object): (c, 0) for f in own[c]}
        for d, a in enumerate(chain[c][1:], start=1):
            for f in own[a]:
                props_of[c][Fact(c, f.relation, f.object)] = (a, d)
    forward: set[Fact] = set()
    for c in names:
        forward.update(Fact(c, ISA, a) for a in chain[c][1:])
        forward.update(props_of[c])
    knowledge = forward | {Fact(f.object, INVERSE[f.relation], f.subject) for f in forward}
    trained = [Fact(c, ISA, parent[c]) for c in names if parent[c]] + [f for c in names for f in own[c]]
    holders: dict[tuple[str, str], set[str]] = defaultdict(set)
    objs_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for f in forward:
        holders[(f.relation, f.object)].add(f.subject)
        objs_of[(f.subject, f.relation)].add(f.object)
    rel_objects = {r: sorted({o for (r2, o) in holders if r2 == r}) for r in TEMPLATES}
    rel_subjects = {r: sorted({s for (s, r2) in objs_of if r2 == r and s not in held}, key=names.index)
                    for r in TEMPLATES}
    return World(
        lex=lex, obj_lex=obj_lex, names=names, parent=parent, children=children, chain=chain, depth=depth,
        heldout=heldout, held=held, studied=[c for c in names if c not in held], own=own, props_of=props_of,
        forward=frozenset(forward), knowledge=frozenset(knowledge), trained=trained, trained_set=frozenset(trained),
        holders={k: frozenset(v) for k, v in holders.items()}, objs_of={k: frozenset(v) for k, v in objs_of.items()},
        rel_objects=rel_objects, rel_subjects=rel_subjects)


# ---- which facts each split asks ---------------------------------------------------------------
Plan = dict[str, list[tuple[str, Fact]]]  # split -> (subtype, fact) items, in the order they are tried


def _stratified(cands: list[tuple[str, Fact]], qrng: random.Random) -> list[tuple[str, Fact]]:
    """All candidates, ordered round-robin over subtypes (for standard errors over subtypes)."""
    groups: dict[str, list[Fact]] = defaultdict(list)
    for st, f in cands:
        groups[st].append(f)
    for g in groups.values():
        qrng.shuffle(g)
    out: list[tuple[str, Fact]] = []
    order = sorted(groups)
    while any(groups.values()):
        for st in order:
            if groups[st]:
                out.append((st, groups[st].pop()))
    return out


def _kind(f: Fact) -> str:
    return "category" if f.relation == ISA else "property"


def _take(w: World, seed: int, split: str, cands: list[tuple[str, Fact]], n: int, k: int,
          reverse: bool = False, exclude: frozenset[Fact] | set[Fact] = frozenset()) -> list[tuple[str, Fact]]:
    """Up to ``n`` candidates (stratified over subtypes) with ``k - 1`` valid wrong options each."""
    qrng = random.Random(f"semantic-{seed}-{split}-plan")
    out = []
    for st, f in _stratified(cands, qrng):
        if len(out) == n:
            break
        pool = w.wrong_reverse(f) if reverse else w.wrong_forward(f)
        if f not in exclude and len(pool) >= k - 1:
            out.append((st, f))
    return out


def _inferences(w: World, subjects: set[str] | frozenset[str]) -> list[tuple[str, Fact]]:
    """Every untrained forward fact about ``subjects``, with its subtype ("property_2hop", ...)."""
    return [(f"{_kind(f)}_{w.premises_for(f)[1]}hop", f) for f in sorted(w.forward)
            if f.subject in subjects and f not in w.trained_set]


def plan_questions(config: SemanticStructureConfig, seed: int, w: World) -> tuple[Plan, dict[str, int]]:
    """Which facts each split asks (before the documents: the probe's cues go into them), and how many
    items each split keeps (its quota).

    An item is asked only if it has k-1 valid wrong options; "is a type of" items whose answer is a
    root have one same-depth alternative (two roots), so they are never asked. Each split plans a
    quarter more items than it asks: an item whose answer is the most (least) frequent of every
    valid option is skipped once enough items have the answer most (least) frequent
    (:func:`_frequency_ranks`).
    """
    k, n = config.n_choices, config.questions_per_split
    n_probe = (n + 1) // 2 if config.probe_questions_per_split is None else config.probe_questions_per_split
    quota = {"rephrase": n, "reversal": n, "syllogism": n, "category_holdout": n,
             CONGRUENT: n_probe, INCONGRUENT: n_probe}
    direct = [(_kind(f), f) for f in w.trained if f.subject not in w.held]
    plan: Plan = {}
    plan["rephrase"] = _take(w, seed, "rephrase", direct, n + n // 4, k)
    plan["reversal"] = _take(w, seed, "reversal", direct, n + n // 4, k, reverse=True)
    plan["syllogism"] = _take(w, seed, "syllogism", _inferences(w, set(w.studied)), n + n // 4, k)
    plan["category_holdout"] = _take(w, seed, "category_holdout", _inferences(w, w.held), n + n // 4, k)
    # the probe's items also spare one whose options cannot be kept below its cue word
    probe = _take(w, seed, "cooccurrence", _inferences(w, set(w.studied)),
                  2 * (n_probe + 2 + n_probe // 4) if n_probe else 0, k,
                  exclude={f for _, f in plan["syllogism"]})
    plan[CONGRUENT] = probe[0::2]
    plan[INCONGRUENT] = probe[1::2]
    return plan, quota


# ---- documents ---------------------------------------------------------------------------------
def say(rng: random.Random, f: Fact, k: int | None = None) -> str:
    """``f`` in training phrasing ``k`` (drawn when None)."""
    ts = TEMPLATES[f.relation]["train"]
    return ts[rng.randrange(len(ts)) if k is None else k].format(s=f.subject, o=f.object)


def _sentences_about(rng: random.Random, fs: list[Fact]) -> list[str]:
    """One sentence per fact in a drawn order and phrasing; an article of fewer than three facts
    restates some in the other phrasing."""
    fs = fs[:]
    rng.shuffle(fs)
    ks = [rng.randrange(2) for _ in fs]
    out = [say(rng, f, k) for f, k in zip(fs, ks)]
    for f, k in list(zip(fs, ks))[: max(0, 3 - len(out))]:
        out.append(say(rng, f, 1 - k))
    return out


def article(rng: random.Random, c: str, fmt: str, fs: list[Fact]) -> str:
    """An article about category ``c`` stating exactly ``fs``, in one of ``CUE_FORMATS``."""
    if fmt == "encyclopedia":
        body = _sentences_about(rng, fs)
        intro, outro = rng.choice(INTROS).format(s=c), rng.choice(OUTROS).format(s=c)
        sents = [x for x in [intro, *body, outro] if x]
        while len(sents) < 4:
            sents.append(f"Little else is known about the {c}.")
        return capitalize(c) + "\n" + " ".join(sents)
    if fmt == "bullets":
        body = _sentences_about(rng, fs)
        while len(body) < 4:
            body.append(f"Little else is known about the {c}.")
        return f"Facts about the {c}:\n" + "\n".join("- " + s for s in body)
    if fmt == "qa":
        fs = fs[:]
        rng.shuffle(fs)
        return "\n".join(f"Q: {TEMPLATES[f.relation]['ask'].format(s=c)} A: {say(rng, f)}" for f in fs)
    raise AssertionError(fmt)


def glossary(rng: random.Random, must: list[Fact], isa_pool: list[Fact]) -> tuple[str, list[Fact]]:
    """A glossary of 4-9 parent facts: ``must``, then others drawn from ``isa_pool``, shuffled."""
    k = rng.randint(max(0, 4 - len(must)), 9 - len(must))
    others = rng.sample(isa_pool, min(k, len(isa_pool)))  # a small subtree may have fewer
    fs = list(dict.fromkeys(must + others))
    rng.shuffle(fs)
    return "Glossary of kinds:\n" + "\n".join(say(rng, f, 0) for f in fs), fs


def comparison(rng: random.Random, w: World, a: str, b: str) -> tuple[str, list[Fact]]:
    """Two sibling categories: their common parent, then each one's own properties."""
    sents = [COMPARE.format(s=a, t=b, o=w.parent[a])]
    sents += [say(rng, f) for f in w.own[a]] + [say(rng, f) for f in w.own[b]]
    if len(sents) < 4:
        sents.append(f"Little else is known about the {a} or the {b}.")
    return " ".join(sents), [Fact(a, ISA, w.parent[a]), Fact(b, ISA, w.parent[b]), *w.own[a], *w.own[b]]


class _DocumentList:
    """Documents numbered by kind as they are added ("ss-doc-00000", "ss-qa-00000", ...)."""

    def __init__(self) -> None:
        self.docs: list[Document] = []
        self.n_kind: dict[str, int] = defaultdict(int)

    def add(self, text: str, facts: list[Fact], fmt: str, kind: str = "article", **meta: Any) -> None:
        prefix = "ss-qa" if kind == "qa" else "ss-doc"
        n = self.n_kind[kind]
        self.n_kind[kind] += 1
        self.docs.append(Document(id=f"{prefix}-{n:05d}", text=text, kind=kind, facts=sorted(set(facts)),
                                  meta={"format": fmt, **meta}))


def _add_glossary(out: _DocumentList, rng: random.Random, w: World, must: list[Fact], isa_pool: list[Fact]) -> None:
    text, fs = glossary(rng, must, isa_pool)
    out.add(text, fs, "glossary", about=sorted({f.subject for f in fs}, key=w.names.index))


FORMATS = ["encyclopedia", "bullets", "qa", "comparison", "glossary"]
FORMAT_WEIGHTS = [0.35, 0.2, 0.2, 0.15, 0.1]


def write_documents(config: SemanticStructureConfig, w: World, rng: random.Random) -> list[Document]:
    """The training documents: a complete article per studied category, the held-out categories'
    parent facts in glossaries, then articles in drawn formats up to ``n_documents``, then QA items."""
    out = _DocumentList()
    for c in w.studied:  # one complete article per category: every trained fact is in some document
        fs = w.facts_of(c)
        out.add(article(rng, c, "encyclopedia", fs), fs, "encyclopedia", about=[c])

    isa_pool = [Fact(c, ISA, w.parent[c]) for c in w.studied if w.parent[c]]
    for h in w.heldout:
        for _ in range(config.holdout_mentions):
            _add_glossary(out, rng, w, [Fact(h, ISA, w.parent[h])], isa_pool)

    sib_pairs = [(a, b) for p in w.names for a in w.children[p] for b in w.children[p]
                 if a < b and a not in w.held and b not in w.held]
    while len(out.docs) < config.n_documents:
        fmt = rng.choices(FORMATS, FORMAT_WEIGHTS)[0]
        if fmt == "glossary":
            _add_glossary(out, rng, w, [], isa_pool)
        elif fmt == "comparison" and sib_pairs:
            a, b = rng.choice(sib_pairs)
            if rng.random() < 0.5:
                a, b = b, a
            text, fs = comparison(rng, w, a, b)
            out.add(text, fs, "comparison", about=[a, b])
        else:
            fmt = "encyclopedia" if fmt == "comparison" else fmt
            c = rng.choice(w.studied)
            allf = w.facts_of(c)
            fs = rng.sample(allf, rng.randint(max(min(2, len(allf)), len(allf) // 2), len(allf)))
            out.add(article(rng, c, fmt, fs), fs, fmt, about=[c])
    for _ in range(config.n_qa_items):
        f = rng.choice(w.trained)
        out.add(f"Q: {TEMPLATES[f.relation]['ask'].format(s=f.subject)}\nA: {say(rng, f)}", [f], "qa", kind="qa")
    return out.docs


class _Stats:
    """Word statistics of the training documents, as the shortcut baselines read them
    (``genmodes.data.baselines``): same-document co-occurrence of a word with the context's
    content words (a word in more than a tenth of the documents is a template word, not content),
    and a word's frequency in the training text."""

    def __init__(self, docs: list[Document], strip_see_also: bool = False):
        self.docs_of: dict[str, set[int]] = defaultdict(set)
        self.freq: dict[str, int] = defaultdict(int)
        ends: dict[str, int] = defaultdict(int)
        for i, d in enumerate(docs):
            text = d.text.lower()
            if strip_see_also:
                text = text.split("\n" + SEE_ALSO.lower())[0]  # the links are the last lines
            for x in _WORD.findall(text):
                self.freq[x] += 1
                self.docs_of[x].add(i)
            for x in _END.findall(text):
                ends[x] += 1
        self.end = {x: ends[x] / n for x, n in self.freq.items()}  # share of a word's uses that end a sentence
        self.max_df = max(2, int(0.1 * len(docs)))

    def content(self, x: str) -> bool:
        return len(self.docs_of.get(x, ())) <= self.max_df

    def cooc(self, context_words: list[str], o: str) -> int:
        if not self.content(o):
            return 0
        return sum(len(self.docs_of[o] & self.docs_of.get(x, set())) for x in context_words if self.content(x))


# ---- the co-occurrence probe's cues ------------------------------------------------------------
def choose_cues(config: SemanticStructureConfig, seed: int, w: World, docs: list[Document],
                plan: Plan) -> dict[Fact, str]:
    """The probe's cue per item: the word its subject's articles link to under "See also".

    The answer for a congruent item; for an incongruent one a valid wrong option, the lure, chosen
    on the documents as written so far: one that co-occurs with the subject no more than the answer
    does, and as frequent as the answer will be with the cue's mentions, above it for every other
    item and below it for the rest, so the lure's frequency tells nothing.
    """
    pilot = _Stats(docs)
    mentions: dict[str, int] = defaultdict(int)
    for d in docs:
        if d.meta["format"] in CUE_FORMATS and len(d.meta.get("about", [])) == 1:
            mentions[d.meta["about"][0]] += 1
    cue: dict[Fact, str] = {f: f.object for _, f in plan[CONGRUENT]}
    prng = random.Random(f"semantic-{seed}-cooccurrence-cues")
    for i, (_, f) in enumerate(plan[INCONGRUENT]):
        ctx = [f.subject]
        m = min(config.probe_cue_mentions, mentions[f.subject])
        fa = pilot.freq[f.object]
        cands = [o for o in w.wrong_forward(f) if pilot.cooc(ctx, o) <= pilot.cooc(ctx, f.object)]
        prng.shuffle(cands)
        above = [o for o in cands if pilot.freq[o] + m > fa]
        below = [o for o in cands if pilot.freq[o] + m < fa]
        side = (above, below) if i % 2 == 0 else (below, above)
        pick = side[0] or side[1] or cands or w.wrong_forward(f)
        cue[f] = min(pick, key=lambda o: abs(pilot.freq[o] + m - fa))
    return cue


def see_also_links(cue: dict[Fact, str]) -> dict[str, list[str]]:
    """Subject -> its "See also" link texts (one per distinct cue of its items, in fact order)."""
    see_also: dict[str, list[str]] = defaultdict(list)
    for f in sorted(cue):
        link = LINKS[f.relation].format(o=cue[f])
        if link not in see_also[f.subject]:
            see_also[f.subject].append(link)
    return see_also


def add_cues(docs: list[Document], see_also: dict[str, list[str]], m: int) -> list[Document]:
    """The co-occurrence probe's cue words: a "See also" line (a link, never a statement) at the end
    of the first ``m`` articles about each probe subject."""
    cued: dict[str, int] = defaultdict(int)
    out = []
    for d in docs:
        about = d.meta.get("about", [])
        if d.meta["format"] in CUE_FORMATS and len(about) == 1 and see_also.get(about[0]) and cued[about[0]] < m:
            cued[about[0]] += 1
            # one link a line, each ending its sentence as a statement's object does (a bigram
            # model of the text sees the cue word where and how a statement would put it)
            links = "".join(f"\n{SEE_ALSO}{link}." for link in see_also[about[0]])
            d = Document(id=d.id, text=d.text + links, kind=d.kind, facts=d.facts, meta=d.meta)
        out.append(d)
    return out


# ---- questions ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Draft:
    """A planned item with its context and its shortlist of wrong options, before the frequency
    balance picks which of them are asked."""

    subtype: str
    fact: Fact
    reverse: bool  # asked object-first: the answer is the subject
    context: str
    answer: str
    ctx: list[str]  # the context's words, each once
    lure: str | None  # an incongruent probe item's cue, always an option
    premises: list[Fact]
    hops: int
    relation: str  # the relation the question asks (the inverse one for a reversal)
    short: list[str]  # the wrong options it may take
    dist: dict[str, int]  # |co-occurrence - the answer's| of each of them
    need: int  # wrong options to pick from ``short``

    def choice_fact(self, o: str) -> Fact:
        f = self.fact
        return Fact(f.object, self.relation, o) if self.reverse else Fact(f.subject, f.relation, o)


def _support(by_fact: dict[Fact, list[Document]], premises: list[Fact], per_premise: int) -> list[str]:
    """The ids of the shortest ``per_premise`` documents stating each premise."""
    ids: list[str] = []
    for p in premises:
        best = sorted(by_fact[p], key=lambda d: (len(d.facts), d.id))[:per_premise]
        ids += [d.id for d in best if d.id not in ids]
    return ids


def _positions(qrng: random.Random, k: int) -> Iterator[int]:
    """0..k-1 in shuffled rounds: exactly balanced over every k consecutive items."""
    while True:
        r = list(range(k))
        qrng.shuffle(r)
        yield from r


def _shortlist(stats: _Stats, base: _Stats, k: int, answer: str, pool: list[str], ctx: list[str],
               qrng: random.Random, match_cooc: bool, lure: str | None,
               congruent: bool) -> tuple[list[str], dict[str, int], int] | None:
    """Wrong options whose same-document co-occurrence with the context's words is as close to
    the answer's as the pool allows (exact where possible, then within about a tenth), with
    their distance and how many to pick; None where the pool cannot give them. A probe item matches
    the answer's co-occurrence without the cues (``base``), and keeps every other option below the
    cue word."""
    pool = [o for o in pool if o not in ctx and o != lure]
    ref = base if lure is not None or congruent else stats
    target = ref.cooc(ctx, answer)
    if lure is not None or congruent:
        top = stats.cooc(ctx, lure if lure is not None else answer)
        if lure is not None and stats.cooc(ctx, answer) >= top:
            return None  # the answer co-occurs as often as the cue anyway: not incongruent
        pool = [o for o in pool if stats.cooc(ctx, o) < top]
    need = k - 1 - (lure is not None)
    if len(pool) < need:
        return None
    if need == 0:  # two choices: the answer and the lure
        return [], {}, 0
    qrng.shuffle(pool)
    dist = {o: abs(stats.cooc(ctx, o) - target) for o in pool}
    if not match_cooc:
        return pool, dist, need
    for lv in sorted(set(dist.values())):
        if sum(d <= lv for d in dist.values()) >= need:
            tol = lv + target // 10
            return [o for o in pool if dist[o] <= tol], dist, need
    raise AssertionError("unreachable: the pool holds enough options")


def _draft(split: str, st: str, f: Fact, w: World, stats: _Stats, base: _Stats, k: int,
           cue: dict[Fact, str], qrng: random.Random) -> _Draft | None:
    """The item asking ``f`` in ``split``: its context, answer and shortlist (None: too few options)."""
    if split == "reversal":
        t = TEMPLATES[f.relation]
        context, _ = _question_parts(t["reverse"], f.subject, f.object, f.subject)
        answer, pool, reverse = f.subject, w.wrong_reverse(f), True
        prem, hops, rel = [f], 1, t["inverse"]
    else:
        template = (qrng.choice(TEMPLATES[f.relation]["rephrase"]) if split == "rephrase"
                    else TEMPLATES[f.relation]["train"][0])
        context, _ = _question_parts(template, f.subject, f.object, f.object)
        answer, pool, reverse = f.object, w.wrong_forward(f), False
        (prem, hops), rel = w.premises_for(f), f.relation
    ctx = list(dict.fromkeys(_WORD.findall(context.lower())))
    lure = cue[f] if split == INCONGRUENT else None
    # a reversal's answer co-occurs with its question by definition (that is the reversal
    # curse's point); matching it there would only cost the frequency balance
    sl = _shortlist(stats, base, k, answer, pool, ctx, qrng, split != "reversal", lure, split == CONGRUENT)
    if sl is None:
        return None
    short, dist, need = sl
    return _Draft(subtype=st, fact=f, reverse=reverse, context=context, answer=answer, ctx=ctx, lure=lure,
                  premises=prem, hops=hops, relation=rel, short=short, dist=dist, need=need)


def _frequency_ranks(drafts: list[_Draft], quota: int, k: int, freq: dict[str, int],
                     qrng: random.Random) -> dict[int, int]:
    """Which drafts are asked (their index) and how many wrong options more frequent in the training
    text than the answer each gets: each item's feasible range, balanced over the split (tightest
    items first), so a frequency prior (most or least frequent option) picks the answer at about chance.
    """
    ranges = []
    for d in drafts:
        n_above = sum(freq[o] > freq[d.answer] for o in d.short)
        n_not_above = len(d.short) - n_above
        fixed = int(d.lure is not None and freq[d.lure] > freq[d.answer])  # the lure is always an option
        ranges.append((max(0, d.need - n_not_above) + fixed, min(d.need, n_above) + fixed))
    count = [0] * k
    rank: dict[int, int] = {}

    def assign(i: int, feasible: list[int] | range) -> None:
        rank[i] = min(feasible, key=lambda r: (count[r], qrng.random()))
        count[rank[i]] += 1

    if len(drafts) <= quota:  # every item is asked: the tightest ranges choose first
        for i in sorted(range(len(drafts)), key=lambda i: (ranges[i][1] - ranges[i][0], i)):
            assign(i, range(ranges[i][0], ranges[i][1] + 1))
        return rank
    # spare items: in plan order, skip one whose feasible ranks are all full
    cap = -(-quota // k)
    skipped = []
    for i, (lo, hi) in enumerate(ranges):
        if len(rank) == quota:
            break
        ok = [r for r in range(lo, hi + 1) if count[r] < cap]
        if not ok:
            skipped.append(i)
            continue
        assign(i, ok)
    for i in skipped[: quota - len(rank)]:
        assign(i, range(ranges[i][0], ranges[i][1] + 1))
    return rank


def _wrong_options(d: _Draft, rank: int, stats: _Stats, reversal: bool) -> list[str]:
    """``d``'s wrong options, ``rank`` of them more frequent than the answer, the closest matches first.

    A tie in frequency with the answer is a tie for the baseline too: avoided, so that rank 0 makes
    the answer the most frequent option and rank k-1 the least. A reversal's options are categories,
    which end a sentence as often as the answer does first: a parent often does ("... is a type of
    fep."), a leaf never, and a bigram model of the text reads the "." after the option.
    """
    fr = stats.freq
    fa = fr[d.answer]
    end_a = stats.end.get(d.answer, 0)

    def key(o: str) -> tuple:
        near = round(10 * abs(stats.end.get(o, 0) - end_a)) if reversal else 0
        return near, d.dist[o], len(o) != len(d.answer), fr[o] == fa, abs(fr[o] - fa)

    above = sorted([o for o in d.short if fr[o] > fa], key=key)
    rest = sorted([o for o in d.short if fr[o] <= fa], key=key)
    r = rank - int(d.lure is not None and fr[d.lure] > fa)
    return above[:r] + rest[: d.need - r] + ([d.lure] if d.lure is not None else [])


def write_questions(config: SemanticStructureConfig, seed: int, w: World, docs: list[Document],
                    plan: Plan, quota: dict[str, int], cue: dict[Fact, str]) -> list[Question]:
    """Each split's questions, options chosen from the documents' statistics (module docstring)."""
    k = config.n_choices
    stats = _Stats(docs)
    base = _Stats(docs, strip_see_also=True)  # co-occurrence as it would be without the probe's cues
    by_fact: dict[Fact, list[Document]] = defaultdict(list)
    for d in docs:
        for f in d.facts:
            by_fact[f].append(d)
    questions: list[Question] = []
    for split, items in plan.items():
        qrng = random.Random(f"semantic-{seed}-{split}")
        positions = _positions(qrng, k)
        drafts = [d for st, f in items if (d := _draft(split, st, f, w, stats, base, k, cue, qrng)) is not None]
        rank = _frequency_ranks(drafts, quota[split], k, stats.freq, qrng)
        for n, i in enumerate(sorted(rank)):
            d = drafts[i]
            wrong = _wrong_options(d, rank[i], stats, split == "reversal")
            qrng.shuffle(wrong)
            pos = next(positions)
            options = wrong[:pos] + [d.answer] + wrong[pos:]
            meta = {"hard_distractors": True, "relation": d.relation, "hops": d.hops,
                    "cooccurrence": [stats.cooc(d.ctx, o) for o in options]}
            if split in PROBE_SPLITS:
                meta["cue"] = cue[d.fact]
            questions.append(Question(
                id=f"ss-{split}-{n:04d}", split=split, subtype=d.subtype, context=d.context,
                choices=[f" {o}." for o in options], answer=pos,
                support=_support(by_fact, d.premises, config.support_docs_per_premise), premises=d.premises,
                choice_facts=[d.choice_fact(o) for o in options], meta=meta))
    return questions


def generate(config: SemanticStructureConfig, seed: int) -> Dataset:
    rng = random.Random(f"semantic-{seed}")
    w = build_world(seed, rng, config.n_holdout_categories, config.vocabulary, config.subtrees)
    plan, quota = plan_questions(config, seed, w)
    docs = write_documents(config, w, rng)
    cue = choose_cues(config, seed, w, docs, plan)
    docs = add_cues(docs, see_also_links(cue), config.probe_cue_mentions)
    questions = write_questions(config, seed, w, docs, plan, quota, cue)

    used_words = {x for f in w.knowledge for x in (f.subject, f.object)}
    return Dataset(
        family="semantic_structure", config=config.model_dump(), seed=seed, documents=docs,
        questions=questions, knowledge=sorted(w.knowledge),
        meta={"recall_splits": RECALL_SPLITS, "probe_splits": PROBE_SPLITS,
              "shortcut_exempt": {"reversal": {"cooccurrence": REVERSAL_EXEMPTION},
                                  CONGRUENT: {"cooccurrence": CONGRUENT_EXEMPTION},
                                  INCONGRUENT: {"familiarity": INCONGRUENT_EXEMPTION}},
              "entities": [x for x in [*w.lex.values(), *w.obj_lex.values()] if x in used_words],
              "heldout_categories": w.heldout,
              # English -> nonsense, for reading results (never shown to a model)
              "lexicon": {"categories": w.lex,
                          "properties": {a: b for a, b in w.obj_lex.items() if b in used_words}}})


# ---- parsing -----------------------------------------------------------------------------------
def _compile(template: str) -> re.Pattern:
    pat = re.escape(template).replace(r"\{s\}", r"(?P<s>[a-z]+)").replace(r"\{o\}", r"(?P<o>[a-z]+)")
    pat = pat.replace(r"\{t\}", r"(?P<t>[a-z]+)")
    return re.compile(pat, re.IGNORECASE)


_PATTERNS: list[tuple[re.Pattern, str, bool]] = []  # (pattern, relation, reversed phrasing)
for _rel, _t in TEMPLATES.items():
    for _tpl in _t["train"] + _t["rephrase"]:
        _PATTERNS.append((_compile(_tpl), _rel, False))
    _PATTERNS.append((_compile(_t["reverse"]), _rel, True))
_COMPARE = _compile(COMPARE)
_SPLIT = re.compile(r"(?<=[.?:])\s+|\n")


def parse_statements(text: str) -> list[Fact]:
    """Sentences in any phrasing this family uses -> facts (reversed phrasings -> inverse facts).

    ``parse_statements(doc.text)`` gives back exactly ``doc.facts`` for every training document.
    """
    facts: list[Fact] = []
    for sent in _SPLIT.split(text):
        sent = sent.strip().removeprefix("- ").strip()
        if not sent:
            continue
        if m := _COMPARE.fullmatch(sent):
            facts += [Fact(m["s"], ISA, m["o"]), Fact(m["t"], ISA, m["o"])]
            continue
        for pat, rel, rev in _PATTERNS:
            if m := pat.fullmatch(sent):
                facts.append(Fact(m["o"], INVERSE[rel], m["s"]) if rev else Fact(m["s"], rel, m["o"]))
                break
    return list(dict.fromkeys(facts))


def oracle_augmentations(ds: Dataset) -> list[Document]:
    """Every true fact no training document states (inherited properties, ancestors, reversals),
    one article per subject, written from the closed-world knowledge in training phrasings."""
    stated = {f for d in ds.documents for f in d.facts}
    inv_rel = {v: k for k, v in INVERSE.items()}
    by_subject: dict[str, list[str]] = defaultdict(list)
    facts_by_subject: dict[str, list[Fact]] = defaultdict(list)
    for f in ds.knowledge:
        if f in stated:
            continue
        if f.relation in TEMPLATES:
            text = TEMPLATES[f.relation]["train"][0].format(s=f.subject, o=f.object)
            key = f.subject
        elif f.relation in inv_rel:  # (o, inverse, s): reversed phrasing of (s, rel, o)
            if Fact(f.object, inv_rel[f.relation], f.subject) not in stated:
                continue  # reversals of untrained facts add nothing beyond the forward fact
            text = TEMPLATES[inv_rel[f.relation]]["reverse"].format(s=f.object, o=f.subject)
            key = f.object
        else:
            continue
        by_subject[key].append(text)
        facts_by_subject[key].append(f)
    return [Document(id=f"ss-aug-{i:04d}", text=" ".join(by_subject[k]), kind="augmentation",
                     facts=sorted(facts_by_subject[k]), meta={"about": k})
            for i, k in enumerate(sorted(by_subject))]


def render_fact(f: Fact) -> str:
    """``f`` in the documents' first training phrasing ("The dax can zarp."); an inverse fact in the
    reversed phrasing ("One thing that can zarp is the dax.")."""
    if f.relation in TEMPLATES:
        return TEMPLATES[f.relation]["train"][0].format(s=f.subject, o=f.object)
    forward = {v: k for k, v in INVERSE.items()}
    if f.relation in forward:
        return TEMPLATES[forward[f.relation]]["reverse"].format(s=f.object, o=f.subject)
    raise ValueError(f"semantic_structure: no phrasing for relation {f.relation!r}")


FAMILY = Family(
    name="semantic_structure",
    description="P1 semantic structure: 118 animal/object categories with inherited properties, all words nonsense; rephrase, reversal, syllogism, category holdout",
    config=SemanticStructureConfig,
    generate=generate,
    parse_statements=parse_statements,
    oracle_augmentations=oracle_augmentations,
    render_fact=render_fact,
)
