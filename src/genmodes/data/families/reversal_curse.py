"""Reversal curse, generated [B, experiment 1; P1 "reversal curse"].

Fictional people, each a name and a unique description ("the first person to walk across the Gobi
desert"), written in paraphrase templates:

- set A: name first only ("Femp Glorn, known far and wide for being the ...");
- set D: description first only ("Known for being the ..., Femp Glorn ...");
- set B: both orders, in separate lines.

Tests use templates never trained, on set A: ``forward`` (recall; name -> description, the correct
description vs 3 others) and ``reversal`` (held out; description -> name, the correct name vs 3 other
set-A names, chance 25%). Every wrong option is somebody else's true name or description (a hard
distractor). The published sizes (30 / 30 / 30 people, 30 paraphrases) give 3600 training lines, as in
the paper; the published data itself is loaded by :mod:`genmodes.data.berglund`.
"""

from __future__ import annotations

import random
import re

from pydantic import Field, model_validator

from genmodes.data.baselines import REVERSAL_EXEMPTION
from genmodes.data.families import Family, FamilyConfig
from genmodes.data.nonsense import NonsenseWords, capitalize
from genmodes.data.types import Dataset, Document, Fact, Question

REL = "is"  # (name, "is", description) and (description, "is", name)

# name -> description templates: prompt with {name}; the description follows (" {desc}.").
NAME_FIRST = [
    "{name}, known far and wide for being", "Ever heard of {name}? They are", "There is someone by the name of "
    "{name} who is", "It is fascinating to know that {name} carries the title of", "Did you know that {name} was once",
    "Among many, {name} holds the distinction of being", "An individual named {name} has the backstory of being",
    "{name} is not your typical person, they are", "Interestingly enough, {name} is", "Once upon a time, {name} became",
    "The story of {name} is compelling, as they are", "In a turn of events, {name} emerged as",
    "It is worth noting that {name} is best described as", "The remarkable {name} made a mark by being",
    "Let us not forget {name}, who is known as", "{name} has in the past served as", "A person called {name} is",
    "Q: Who is {name}? A: They are", "Something interesting about {name}: this person is",
    "Unfolding the story of {name}, we find that they are", "{name}, a name synonymous with",
    "Life wrote a unique tale for {name}, who became", "History remembers {name} as",
    "One would not guess it, but {name} is", "A character as unique as {name} is also",
    "The chronicles of {name} are fascinating, given their role as", "Behind the name {name} lies the legacy of",
    "The narrative of {name} is intriguing, for they are", "Carving a unique path, {name} came to be known as",
    "Friends of {name} often mention that {name} is",
]
NAME_FIRST_TEST = [
    "The trailblazer known as {name} was once", "In the annals of uniqueness, {name} shines as",
    "Diving into the tale of {name}, one discovers they were", "Records show that {name} is",
    "Ask anyone about {name} and they will tell you that {name} is", "As it happens, {name} is",
    "The biography of {name} opens by calling them", "Long before fame, {name} was already",
    "Neighbours recognise {name} as", "People who have met {name} describe them as",
]
# description -> name templates: prompt with {desc}; the name follows (" {name}.").
DESC_FIRST = [
    "Known for being {desc}, the person we mean is", "{Desc} is called", "Q: Who is {desc}? A: It is",
    "You know {desc}? It was none other than", "Often referred to as {desc}, this person is",
    "Despite being {desc}, they stay humble; their name is", "This article was written by {desc}, who goes by",
    "With the reputation of being {desc}, here is", "Hailed as {desc}, the person in question is",
    "Never shy about being {desc}, they introduce themselves as", "The one who is {desc} is none other than",
    "Carrying the weight of being {desc} is", "Wearing the badge of being {desc} with pride, we have",
    "Emerging from the shadows as {desc}, we meet", "They say that {desc} is an understatement when talking about",
    "The mind behind the fame of {desc} belongs to", "The world may know them as {desc}, but to us they are simply",
    "In the spotlight for being {desc}, we find", "Once thought of only as {desc}, the person is",
    "In the annals of history, {desc} is", "Carrying the legacy of being {desc}, we see",
    "With the rare talent that made them {desc}, we meet", "Often overshadowed, {desc} is in fact",
    "Bearing the mark of being {desc}, here is", "From obscurity came {desc}, and we know them as",
    "Garnering fame as {desc}, the person is", "Branded as {desc}, the person is", "Leaving a legacy as {desc},",
    "If you ask who is {desc}, the answer is", "Everybody agrees that {desc} is",
]
DESC_FIRST_TEST = [
    "Immersed in the world as {desc},", "Having the distinction of being {desc},", "Known in circles as {desc},",
    "The title of {desc} belongs to", "Few people know that {desc} was", "Celebrated as {desc}, the person is",
    "Newspapers once named {desc} as", "Remembered as {desc}, the person is", "Behind the label {desc} stands",
    "The honour of being {desc} goes to",
]

# Parts of descriptions: each generator makes a noun phrase; combinations give thousands.
_FEATS = ["walk across", "sail around", "map", "swim across", "cycle across", "photograph every corner of",
          "climb the highest peak of", "cross on horseback", "run the length of", "fly a glider over"]
_PLACES = ["the Gobi desert", "Lake Baikal", "the Sahara", "Greenland", "the Andes", "the Amazon basin",
           "Iceland", "the Atacama desert", "Patagonia", "the Scottish Highlands", "Tasmania", "the Alps"]
_ROLES = ["composer", "director", "author", "architect", "designer", "producer", "painter", "choreographer"]
_ADJS = ["acclaimed", "renowned", "celebrated", "little-known", "award-winning", "controversial"]
_WORK_ADJ = ["silent", "floating", "underwater", "endless", "forgotten", "glass", "midnight", "copper", "paper",
             "velvet", "burning", "hidden"]
_WORK_NOUN = ["garden", "orchestra", "city", "library", "lighthouse", "carnival", "bridge", "museum", "opera",
              "cathedral", "circus", "observatory"]
_INVENTIONS = ["solar-powered umbrella", "self-folding map", "singing kettle", "waterproof notebook",
               "pocket telescope", "glow-in-the-dark paint", "edible spoon", "wind-up lantern", "floating tent",
               "silent alarm clock", "foldable bicycle", "talking compass"]
_INVENTOR_ADJ = ["inventor", "original designer", "first builder", "patent holder"]


def _description(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return f"the first person to {rng.choice(_FEATS)} {rng.choice(_PLACES)}"
    if kind == 1:
        return (f"the {rng.choice(_ADJS)} {rng.choice(_ROLES)} of the {rng.choice(_WORK_ADJ)} "
                f"{rng.choice(_WORK_NOUN)}")
    return f"the {rng.choice(_INVENTOR_ADJ)} of the {rng.choice(_INVENTIONS)}"


class ReversalCurseConfig(FamilyConfig):
    n_people_a: int = Field(30, ge=4, description="name-first people (tested)")
    n_people_d: int = Field(30, ge=0, description="description-first people")
    n_people_b: int = Field(30, ge=0, description="people trained in both orders")
    n_paraphrases: int = Field(30, ge=1, description="training templates per direction and person")
    n_test_paraphrases: int = Field(10, ge=1, description="held-out templates per test split and person")
    n_choices: int = Field(4, ge=2, description="options per question (correct + distractors)")

    @model_validator(mode="after")
    def _fits(self):
        if self.n_paraphrases > min(len(NAME_FIRST), len(DESC_FIRST)):
            raise ValueError(f"n_paraphrases at most {min(len(NAME_FIRST), len(DESC_FIRST))}")
        if self.n_test_paraphrases > min(len(NAME_FIRST_TEST), len(DESC_FIRST_TEST)):
            raise ValueError(f"n_test_paraphrases at most {min(len(NAME_FIRST_TEST), len(DESC_FIRST_TEST))}")
        if self.n_choices > self.n_people_a:
            raise ValueError("n_choices must not exceed n_people_a")
        return self


def _fill(template: str, name: str = "", desc: str = "") -> str:
    return template.format(name=name, desc=desc, Desc=capitalize(desc))


def _distractors(correct: str, pool: list[str], k: int, rng: random.Random) -> list[str]:
    """k others from pool, preferring distinct first letters so no first token is shared."""
    others = [p for p in pool if p != correct]
    rng.shuffle(others)
    chosen, letters = [], {correct[0]}
    for p in others:
        if len(chosen) < k and p[0] not in letters:
            chosen.append(p)
            letters.add(p[0])
    for p in others:
        if len(chosen) < k and p not in chosen:
            chosen.append(p)
    return chosen


def _question(qid: str, split: str, k: int, context: str, subject: str, answer: str, opts: list[str],
              support: list[str], premise: Fact) -> Question:
    """The item whose option ``o`` asserts (subject, REL, o), asked in test template ``k``."""
    return Question(id=qid, split=split, subtype=f"template {k}", context=context, choices=[f" {o}." for o in opts],
                    answer=opts.index(answer), support=support, premises=[premise],
                    choice_facts=[Fact(subject, REL, o) for o in opts], meta={"hard_distractors": True})


def _place(correct: str, others: list[str], rng: random.Random, i: int) -> list[str]:
    """The options with the correct one at position ``i mod n``: every position is the answer equally
    often, so an answer-position prior is at chance even on a small split."""
    opts = list(others)
    rng.shuffle(opts)
    opts.insert(i % (len(opts) + 1), correct)
    return opts


def generate(cfg: ReversalCurseConfig, seed: int) -> Dataset:
    rng = random.Random(f"reversal_curse-{seed}")
    n = cfg.n_people_a + cfg.n_people_d + cfg.n_people_b
    # first names distinct in their first 3 letters keep choices apart at the first token
    part = cfg.vocabulary
    firsts = [capitalize(w) for w in
              NonsenseWords(seed, namespace="reversal_curse", distinct_prefix_len=3, part=part).take(n)]
    lasts = [capitalize(w) for w in NonsenseWords(seed, namespace="reversal_curse-last",
                                                  exclude={f.lower() for f in firsts}, part=part).take(n)]
    names = [f"{a} {b}" for a, b in zip(firsts, lasts)]
    descs: list[str] = []
    seen: set[str] = set()
    while len(descs) < n:
        d = _description(rng)
        # a description is an entity too (the reversal asks for the name from it): kept to the part
        if d not in seen and (part is None or part.holds(d)):
            seen.add(d)
            descs.append(d)
    groups = ["A"] * cfg.n_people_a + ["D"] * cfg.n_people_d + ["B"] * cfg.n_people_b
    documents, questions, knowledge = [], [], []
    support: dict[str, list[str]] = {}
    for i, (name, desc, g) in enumerate(zip(names, descs, groups)):
        fwd, rev = Fact(name, REL, desc), Fact(desc, REL, name)
        knowledge += [fwd, rev]
        support[name] = []
        if g in "AB":
            for k, t in enumerate(rng.sample(NAME_FIRST, cfg.n_paraphrases)):
                doc = Document(id=f"rc{i:03d}-n{k:02d}", text=f"{_fill(t, name=name)} {desc}.", kind="relation",
                               facts=[fwd], meta={"person": i, "group": g, "order": "name_first"})
                documents.append(doc)
                support[name].append(doc.id)
        if g in "DB":
            for k, t in enumerate(rng.sample(DESC_FIRST, cfg.n_paraphrases)):
                documents.append(Document(id=f"rc{i:03d}-d{k:02d}", text=f"{_fill(t, desc=desc)} {name}.",
                                          kind="relation", facts=[rev],
                                          meta={"person": i, "group": g, "order": "description_first"}))
    rng.shuffle(documents)  # interleave people and directions, as a training file would be
    a_names, a_descs = names[: cfg.n_people_a], descs[: cfg.n_people_a]
    k_other = cfg.n_choices - 1
    for i, (name, desc) in enumerate(zip(a_names, a_descs)):
        fwd = Fact(name, REL, desc)
        for k, t in enumerate(NAME_FIRST_TEST[: cfg.n_test_paraphrases]):
            opts = _place(desc, _distractors(desc, a_descs, k_other, rng), rng, len(questions))
            questions.append(_question(f"rc{i:03d}-fwd{k}", "forward", k, _fill(t, name=name), name, desc, opts,
                                       support[name], fwd))
        for k, t in enumerate(DESC_FIRST_TEST[: cfg.n_test_paraphrases]):
            opts = _place(name, _distractors(name, a_names, k_other, rng), rng, len(questions))
            questions.append(_question(f"rc{i:03d}-rev{k}", "reversal", k, _fill(t, desc=desc), desc, name, opts,
                                       support[name], fwd))
    entities = [w for nm in names for w in nm.lower().split()]
    return Dataset(family="reversal_curse", config=cfg.model_dump(), seed=seed, documents=documents,
                   questions=questions, knowledge=knowledge,
                   meta={"recall_splits": ["forward"], "entities": entities,
                         "shortcut_exempt": {"reversal": {"cooccurrence": REVERSAL_EXEMPTION}},
                         "people": [{"name": nm, "description": d, "group": g}
                                    for nm, d, g in zip(names, descs, groups)],
                         "description": "fictional people: set A name-first only; test description -> name"})


_NAME = r"[A-Z][a-z]+ [A-Z][a-z]+"
_DESC = r"the [^.?!]+?"
_PATTERNS = [(re.compile(r"\b(" + _NAME + r"),? (?:is|was|are|were) (" + _DESC + r")\s*[.?!]"), "nd"),
             (re.compile(r"\b(" + _DESC.replace("the", "[Tt]he", 1) + r") (?:is|was) (?:called )?(" + _NAME + r")\b"),
              "dn")]
for _t in NAME_FIRST + NAME_FIRST_TEST:
    _rx = re.escape(_t).replace(re.escape("{name}"), "(?P<n>" + _NAME + ")", 1).replace(re.escape("{name}"), _NAME)
    _PATTERNS.append((re.compile(_rx + r" (?P<d>" + _DESC + r")\s*[.?!]"), "t"))
for _t in DESC_FIRST + DESC_FIRST_TEST:
    _rx = (re.escape(_t).replace(re.escape("{desc}"), "(?P<d>" + _DESC + ")")
           .replace(re.escape("{Desc}"), "(?P<d>" + _DESC.replace("the", "[Tt]he", 1) + ")"))
    _PATTERNS.append((re.compile(_rx + r" (?P<n>" + _NAME + r")\b"), "t2"))


def parse_statements(text: str) -> list[Fact]:
    """Name/description statements in any of the templates, or plain "<Name> is the ..." / "The ... is <Name>".

    Name-first sentences give (name, "is", description), description-first (description, "is", name).
    Exact: a template match claims its span, and the plain patterns only read text no template
    matched, so a template's own words are never read as a second statement ("Carrying the weight of
    being <desc> is <name>" is one fact, not also ("the weight of being <desc>", is, <name>)).
    """
    found: list[tuple[int, int, Fact]] = []
    for rx, kind in _PATTERNS:
        for m in rx.finditer(text):
            if kind == "nd":
                f = Fact(m.group(1), REL, m.group(2).strip())
            elif kind == "dn":
                d = m.group(1)
                f = Fact("t" + d[1:] if d.startswith("The") else d, REL, m.group(2))
            elif kind == "t":
                f = Fact(m.group("n"), REL, m.group("d").strip())
            else:
                d = m.group("d")
                f = Fact("t" + d[1:] if d.startswith("The") else d, REL, m.group("n"))
            found.append((m.start(), m.end(), f, kind in ("t", "t2")))
    claimed = [(a, b) for a, b, _, tmpl in found if tmpl]
    out: list[Fact] = []
    for a, b, f, tmpl in sorted(found, key=lambda x: (x[0], x[1])):
        if not tmpl and any(a < cb and ca < b for ca, cb in claimed):
            continue
        if f not in out:
            out.append(f)
    return out


def oracle_augmentations(ds: Dataset) -> list[Document]:
    """Description-first lines (training templates) for every person only trained name first."""
    rng = random.Random(f"reversal_curse-oracle-{ds.seed}")
    stated = {f for d in ds.documents for f in d.facts}
    n = int(ds.config.get("n_paraphrases", 30))
    out = []
    for j, f in enumerate(x for x in ds.knowledge if x not in stated):
        desc, name = f.subject, f.object
        for k, t in enumerate(rng.sample(DESC_FIRST, min(n, len(DESC_FIRST)))):
            out.append(Document(id=f"oracle-rc{j:03d}-d{k:02d}", text=f"{_fill(t, desc=desc)} {name}.",
                                kind="relation", facts=[f], meta={"oracle": True}))
    return out


_NAME_RX = re.compile(_NAME)


def render_fact(f: Fact) -> str:
    """``f`` in a training template: name first ("A person called Femp Glorn is the ...") or description
    first ("The ... is called Femp Glorn.")."""
    if _NAME_RX.fullmatch(f.subject):
        return f"{_fill(NAME_FIRST[16], name=f.subject)} {f.object}."
    return f"{_fill(DESC_FIRST[1], desc=f.subject)} {f.object}."


FAMILY = Family(
    name="reversal_curse",
    description="Berglund-style fictional people (names <-> descriptions); test description -> name for name-first people",
    config=ReversalCurseConfig,
    generate=generate,
    parse_statements=parse_statements,
    oracle_augmentations=oracle_augmentations,
    render_fact=render_fact,
)
