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
- ``category_holdout``: for held-out leaf categories training states *only* the parent fact; every
  inherited property and ancestor is asked.

Hard distractors (P1): each wrong option holds the same relation for some other entity (another
category can "blorf"; the wrong reversal answer is itself a type of something), and is false under
the closed-world knowledge, which holds every inherited fact and every inverse. Wrong options come
from the answer's closest relatives first (a sibling's property, a cousin category), which share the
answer's co-occurring words. Subtypes:
"category"/"property" for rephrase and reversal, "{category,property}_{hops}hop" for inferences.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections import defaultdict
from importlib import resources

from pydantic import Field

from genmodes.data.families import Family, FamilyConfig
from genmodes.data.nonsense import NonsenseWords, capitalize
from genmodes.data.types import Dataset, Document, Fact, Question

ISA = "is a type of"
RECALL_SPLITS = ["rephrase"]

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
    n_documents: int = Field(2200, ge=1, description="articles; at least one complete article per category")
    n_qa_items: int = Field(300, ge=0, description="short single-fact Q&A documents, besides the articles")
    n_holdout_categories: int = Field(10, ge=0, le=40)
    holdout_mentions: int = Field(5, ge=1, description="glossary articles stating each held-out category's parent")
    questions_per_split: int = Field(300, ge=1)
    n_choices: int = Field(4, ge=2)
    support_docs_per_premise: int = Field(3, ge=1, description="support lists the shortest documents stating each premise")


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


def _question_parts(template: str, s: str, o: str, last: str) -> tuple[str, str]:
    """Split a filled template before its final word: (context, " word.")."""
    text = template.format(s=s, o=o)
    assert text.endswith(f" {last}."), text
    return text[: -len(last) - 2], f" {last}."


def generate(config: SemanticStructureConfig, seed: int) -> Dataset:
    rng = random.Random(f"semantic-{seed}")
    cats = load_hierarchy()
    words = NonsenseWords(seed, namespace="semantic_structure", distinct_prefix_len=3)
    lex: dict[str, str] = {c["name"]: w for c, w in zip(cats, words.take(len(cats)))}
    objects = sorted({o for c in cats for _, o in c["properties"]})
    obj_lex = dict(zip(objects, words.take(len(objects))))

    parent = {lex[c["name"]]: (lex[c["parent"]] if c["parent"] else None) for c in cats}
    names = [lex[c["name"]] for c in cats]
    children: dict[str, list[str]] = defaultdict(list)
    for c, p in parent.items():
        if p is not None:
            children[p].append(c)

    def ancestors(c: str) -> list[str]:
        out, a = [], parent[c]
        while a is not None:
            out.append(a)
            a = parent[a]
        return out

    leaves = [c for c in names if not children[c] and len(ancestors(c)) >= 2]
    heldout = sorted(rng.sample(leaves, min(config.n_holdout_categories, len(leaves))), key=names.index)
    held = set(heldout)
    own: dict[str, list[Fact]] = {
        lex[c["name"]]: ([] if lex[c["name"]] in held else
                         [Fact(lex[c["name"]], r, obj_lex[o]) for r, o in c["properties"]]) for c in cats}

    # Closed world: every inherited property and ancestor, and the inverse of each.
    props_of: dict[str, dict[Fact, tuple[str, int]]] = {}  # c -> inherited fact -> (owner, isa edges)
    for c in names:
        props_of[c] = {Fact(c, f.relation, f.object): (c, 0) for f in own[c]}
        for d, a in enumerate(ancestors(c), start=1):
            for f in own[a]:
                props_of[c][Fact(c, f.relation, f.object)] = (a, d)
    forward: set[Fact] = set()
    for c in names:
        forward.update(Fact(c, ISA, a) for a in ancestors(c))
        forward.update(props_of[c])
    knowledge_set = forward | {Fact(f.object, INVERSE[f.relation], f.subject) for f in forward}
    trained = [Fact(c, ISA, parent[c]) for c in names if parent[c]] + [f for c in names for f in own[c]]

    # ---- documents -------------------------------------------------------------------------
    def facts_of(c: str) -> list[Fact]:
        return ([Fact(c, ISA, parent[c])] if parent[c] else []) + own[c]

    def say(f: Fact, k: int | None = None) -> str:
        ts = TEMPLATES[f.relation]["train"]
        return ts[rng.randrange(len(ts)) if k is None else k].format(s=f.subject, o=f.object)

    def sentences_about(c: str, fs: list[Fact]) -> list[str]:
        fs = fs[:]
        rng.shuffle(fs)
        ks = [rng.randrange(2) for _ in fs]
        out = [say(f, k) for f, k in zip(fs, ks)]
        for f, k in list(zip(fs, ks))[: max(0, 3 - len(out))]:  # short articles restate a fact
            out.append(say(f, 1 - k))
        return out

    def article(c: str, fmt: str, fs: list[Fact]) -> tuple[str, list[Fact]]:
        if fmt == "encyclopedia":
            body = sentences_about(c, fs)
            intro, outro = rng.choice(INTROS).format(s=c), rng.choice(OUTROS).format(s=c)
            sents = [x for x in [intro, *body, outro] if x]
            while len(sents) < 4:
                sents.append(f"Little else is known about the {c}.")
            return capitalize(c) + "\n" + " ".join(sents), fs
        if fmt == "bullets":
            body = sentences_about(c, fs)
            while len(body) < 4:
                body.append(f"Little else is known about the {c}.")
            return f"Facts about the {c}:\n" + "\n".join("- " + s for s in body), fs
        if fmt == "qa":
            fs2 = fs[:]
            rng.shuffle(fs2)
            lines = [f"Q: {TEMPLATES[f.relation]['ask'].format(s=c)} A: {say(f)}" for f in fs2]
            return "\n".join(lines), fs
        raise AssertionError(fmt)

    docs: list[Document] = []
    n_kind: dict[str, int] = defaultdict(int)

    def add(text: str, facts: list[Fact], fmt: str, kind: str = "article", **meta) -> None:
        prefix = "ss-qa" if kind == "qa" else "ss-doc"
        n = n_kind[kind]
        n_kind[kind] += 1
        docs.append(Document(id=f"{prefix}-{n:05d}", text=text, kind=kind, facts=sorted(set(facts)),
                             meta={"format": fmt, **meta}))

    studied = [c for c in names if c not in held]
    for c in studied:  # one complete article per category: every trained fact is in some document
        text, fs = article(c, "encyclopedia", facts_of(c))
        add(text, fs, "encyclopedia", about=[c])

    isa_pool = [Fact(c, ISA, parent[c]) for c in studied if parent[c]]

    def glossary(must: list[Fact]) -> None:
        others = rng.sample(isa_pool, rng.randint(max(0, 4 - len(must)), 9 - len(must)))
        fs = list(dict.fromkeys(must + others))
        rng.shuffle(fs)
        add("Glossary of kinds:\n" + "\n".join(say(f, 0) for f in fs), fs, "glossary",
            about=sorted({f.subject for f in fs}, key=names.index))

    for h in heldout:
        for _ in range(config.holdout_mentions):
            glossary([Fact(h, ISA, parent[h])])

    sib_pairs = [(a, b) for p in names for a in children[p] for b in children[p]
                 if a < b and a not in held and b not in held]
    formats = ["encyclopedia", "bullets", "qa", "comparison", "glossary"]
    weights = [0.35, 0.2, 0.2, 0.15, 0.1]
    while len(docs) < config.n_documents:
        fmt = rng.choices(formats, weights)[0]
        if fmt == "glossary":
            glossary([])
        elif fmt == "comparison" and sib_pairs:
            a, b = rng.choice(sib_pairs)
            if rng.random() < 0.5:
                a, b = b, a
            sents = [COMPARE.format(s=a, t=b, o=parent[a])]
            sents += [say(f) for f in own[a]] + [say(f) for f in own[b]]
            if len(sents) < 4:
                sents.append(f"Little else is known about the {a} or the {b}.")
            add(" ".join(sents), [Fact(a, ISA, parent[a]), Fact(b, ISA, parent[b]), *own[a], *own[b]],
                "comparison", about=[a, b])
        else:
            fmt = "encyclopedia" if fmt == "comparison" else fmt
            c = rng.choice(studied)
            allf = facts_of(c)
            fs = rng.sample(allf, rng.randint(max(min(2, len(allf)), len(allf) // 2), len(allf)))
            text, fs = article(c, fmt, fs)
            add(text, fs, fmt, about=[c])
    for _ in range(config.n_qa_items):
        f = rng.choice(trained)
        add(f"Q: {TEMPLATES[f.relation]['ask'].format(s=f.subject)}\nA: {say(f)}", [f], "qa", kind="qa")

    # ---- questions ---------------------------------------------------------------------------
    by_fact: dict[Fact, list[Document]] = defaultdict(list)
    for d in docs:
        for f in d.facts:
            by_fact[f].append(d)

    def support(premises: list[Fact]) -> list[str]:
        ids: list[str] = []
        for p in premises:
            best = sorted(by_fact[p], key=lambda d: (len(d.facts), d.id))[: config.support_docs_per_premise]
            ids += [d.id for d in best if d.id not in ids]
        return ids

    # hard-distractor pools
    holders: dict[tuple[str, str], set[str]] = defaultdict(set)  # (relation, object) -> subjects
    objs_of: dict[tuple[str, str], set[str]] = defaultdict(set)   # (subject, relation) -> objects
    for f in forward:
        holders[(f.relation, f.object)].add(f.subject)
        objs_of[(f.subject, f.relation)].add(f.object)
    rel_objects = {r: sorted({o for (r2, o) in holders if r2 == r}, key=str) for r in TEMPLATES}
    rel_subjects = {r: sorted({s for (s, r2) in objs_of if r2 == r and s not in held}, key=names.index)
                    for r in TEMPLATES}

    def premises_for(f: Fact) -> tuple[list[Fact], int]:
        """Premises of a forward fact and its hop count (= number of premises)."""
        if f.relation == ISA:
            chain = [f.subject] + ancestors(f.subject)
            k = chain.index(f.object)
            return [Fact(chain[i], ISA, chain[i + 1]) for i in range(k)], k
        owner, d = props_of[f.subject][f]
        chain = [f.subject] + ancestors(f.subject)
        prem = [Fact(chain[i], ISA, chain[i + 1]) for i in range(d)] + [Fact(owner, f.relation, f.object)]
        return prem, d + 1

    questions: list[Question] = []
    n_split: dict[str, int] = defaultdict(int)

    def emit(split: str, subtype: str, qrng: random.Random, context: str, answer: str, wrong: list[str],
             fact_of, premises: list[Fact], **meta) -> bool:
        if not wrong:
            return False
        options = [answer] + wrong
        idx = n_split[split]
        n_split[split] += 1
        qrng.shuffle(options)
        questions.append(Question(
            id=f"ss-{split}-{idx:04d}", split=split, subtype=subtype,
            context=context, choices=[f" {o}." for o in options], answer=options.index(answer),
            support=support(premises), premises=premises, choice_facts=[fact_of(o) for o in options],
            meta={"hard_distractors": True, **meta}))
        return True

    # Relatedness of two categories: depth of their lowest common ancestor (-1: different roots).
    # Distractors are taken from the closest relatives first (a sibling's property, a cousin
    # category), which co-occur with the same parent words as the answer does.
    chains = {c: [c] + ancestors(c) for c in names}
    lca_depth = {(a, b): next((len(chains[x]) - 1 for x in chains[a] if x in chains[b]), -1)
                 for a in names for b in names}

    def closest(pool: list[str], k: int, score, qrng: random.Random) -> list[str]:
        pool = pool[:]
        qrng.shuffle(pool)
        return sorted(pool, key=lambda x: -score(x))[:k]

    def ask_forward(split: str, subtype: str, f: Fact, template: str, qrng: random.Random, **meta) -> bool:
        context, _ = _question_parts(template, f.subject, f.object, f.object)
        true = objs_of[(f.subject, f.relation)]
        if f.relation == ISA:  # a wrong parent must itself have a subtype
            pool = [c for c in names if children[c] and c not in true and c != f.subject]
        else:
            pool = [o for o in rel_objects[f.relation] if o not in true]
        if f.relation == ISA:
            pool = closest(pool, config.n_choices - 1, lambda c: lca_depth[(f.subject, c)], qrng)
        else:
            pool = closest(pool, config.n_choices - 1,
                           lambda o: max(lca_depth[(f.subject, h)] for h in holders[(f.relation, o)]), qrng)
        prem, hops = premises_for(f)
        return emit(split, subtype, qrng, context, f.object, pool, lambda o: Fact(f.subject, f.relation, o),
                    prem, relation=f.relation, hops=hops, **meta)

    def ask_reverse(split: str, subtype: str, f: Fact, qrng: random.Random) -> bool:
        t = TEMPLATES[f.relation]
        context, _ = _question_parts(t["reverse"], f.subject, f.object, f.subject)
        true = holders[(f.relation, f.object)]
        # a wrong answer holds the relation with some other object, so it is as familiar a subject
        pool = closest([c for c in rel_subjects[f.relation] if c not in true], config.n_choices - 1,
                       lambda c: lca_depth[(f.subject, c)], qrng)
        inv = t["inverse"]
        return emit(split, subtype, qrng, context, f.subject, pool, lambda c: Fact(f.object, inv, c), [f],
                    relation=inv, hops=1)

    def kind(f: Fact) -> str:
        return "category" if f.relation == ISA else "property"

    def stratified(cands: list[tuple[str, Fact]], n: int, qrng: random.Random) -> list[tuple[str, Fact]]:
        """Up to n candidates, taken round-robin over subtypes (for standard errors over subtypes)."""
        groups: dict[str, list[Fact]] = defaultdict(list)
        for st, f in cands:
            groups[st].append(f)
        for g in groups.values():
            qrng.shuffle(g)
        out: list[tuple[str, Fact]] = []
        order = sorted(groups)
        while len(out) < n and any(groups.values()):
            for st in order:
                if groups[st] and len(out) < n:
                    out.append((st, groups[st].pop()))
        return out

    direct = [f for f in trained if f.subject not in held]
    qrng = random.Random(f"semantic-{seed}-rephrase")
    for st, f in stratified([(kind(f), f) for f in direct], config.questions_per_split, qrng):
        ask_forward("rephrase", st, f, qrng.choice(TEMPLATES[f.relation]["rephrase"]), qrng)
    qrng = random.Random(f"semantic-{seed}-reversal")
    for st, f in stratified([(kind(f), f) for f in direct], config.questions_per_split, qrng):
        ask_reverse("reversal", st, f, qrng)

    trained_set = set(trained)

    def inferences(cs: set[str]) -> list[tuple[str, Fact]]:
        out = []
        for f in sorted(forward):
            if f.subject in cs and f not in trained_set:
                _, hops = premises_for(f)
                out.append((f"{kind(f)}_{hops}hop", f))
        return out

    for split, cs in (("syllogism", set(studied)), ("category_holdout", held)):
        qrng = random.Random(f"semantic-{seed}-{split}")
        cands = inferences(cs)
        for st, f in stratified(cands, config.questions_per_split, qrng):
            ask_forward(split, st, f, TEMPLATES[f.relation]["train"][0], qrng)

    used_words = {w for f in knowledge_set for w in (f.subject, f.object)}
    return Dataset(
        family="semantic_structure", config=config.model_dump(), seed=seed, documents=docs,
        questions=questions, knowledge=sorted(knowledge_set),
        meta={"recall_splits": RECALL_SPLITS,
              "entities": [w for w in [*lex.values(), *obj_lex.values()] if w in used_words],
              "heldout_categories": heldout,
              # English -> nonsense, for reading results (never shown to a model)
              "lexicon": {"categories": lex,
                          "properties": {k: w for k, w in obj_lex.items() if w in used_words}}})


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


FAMILY = Family(
    name="semantic_structure",
    description="P1 semantic structure: 118 animal/object categories with inherited properties, all words nonsense; rephrase, reversal, syllogism, category holdout",
    config=SemanticStructureConfig,
    generate=generate,
    parse_statements=parse_statements,
    oracle_augmentations=oracle_augmentations,
)
