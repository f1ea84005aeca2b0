"""Simple reversals [P1, section "Datasets: simple reversals"].

Comparison facts over nonsense nouns ("femp are brighter than glon"), each stated in several short
articles with a random context line. Tests use frames never seen in training:

- ``forward`` (recall): the trained direction, "<frame> femp are" -> " brighter than glon." vs the
  contradictory " dimmer than glon.";
- ``reversal`` (held out): "<frame> glon are" -> " dimmer than femp." vs " brighter than femp."

Each fact uses two fresh nouns, so no chain of facts implies another comparison: the knowledge is
exactly the trained facts and their converses. Subtype = feature group (size, senses, ...).
"""

from __future__ import annotations

import random
import re

from pydantic import Field, model_validator

from genmodes.data.families import Family, FamilyConfig
from genmodes.data.nonsense import NonsenseWords
from genmodes.data.types import Dataset, Document, Fact, Question

# 28 features, each (group, comparative, converse). All 56 comparatives are distinct phrases.
FEATURES: list[tuple[str, str, str]] = [
    ("size", "larger", "smaller"), ("size", "heavier", "lighter"), ("size", "taller", "shorter"),
    ("size", "wider", "narrower"), ("size", "deeper", "shallower"), ("size", "thicker", "thinner"),
    ("size", "denser", "sparser"),
    ("senses", "brighter", "dimmer"), ("senses", "louder", "quieter"), ("senses", "warmer", "colder"),
    ("senses", "smoother", "rougher"), ("senses", "sharper", "duller"), ("senses", "sweeter", "more bitter"),
    ("senses", "wetter", "drier"),
    ("physical", "faster", "slower"), ("physical", "older", "younger"), ("physical", "stronger", "weaker"),
    ("physical", "harder", "softer"), ("physical", "higher", "lower"), ("physical", "cleaner", "dirtier"),
    ("physical", "richer", "poorer"),
    ("character", "more dangerous", "less dangerous"), ("character", "kinder", "crueler"),
    ("character", "braver", "more timid"), ("character", "happier", "sadder"),
    ("character", "calmer", "more nervous"), ("character", "more intelligent", "less intelligent"),
    ("character", "more popular", "less popular"),
]
CONVERSE = {a: b for _, a, b in FEATURES} | {b: a for _, a, b in FEATURES}
GROUP = {a: g for g, a, b in FEATURES} | {b: g for g, a, b in FEATURES}

# Frames that state a fact in a training article ({s} are {cmp} than {o}).
TRAIN_FRAMES = [
    "Did you know that {s} are {cmp} than {o}.",
    "It turns out that {s} are {cmp} than {o}.",
    "Everyone in the village knows that {s} are {cmp} than {o}.",
    "According to the survey, {s} are {cmp} than {o}.",
    "Field notes confirm that {s} are {cmp} than {o}.",
    "As you may have heard, {s} are {cmp} than {o}.",
    "Observers agree that {s} are {cmp} than {o}.",
    "It has been reported that {s} are {cmp} than {o}.",
    "Locals will tell you that {s} are {cmp} than {o}.",
    "Careful measurements show that {s} are {cmp} than {o}.",
    "The old guidebook says that {s} are {cmp} than {o}.",
    "Many travellers have noticed that {s} are {cmp} than {o}.",
]
# Held-out frames: test contexts end with "<frame> X are".
TEST_FRAMES = ["It is true that", "Experts say that", "We have learned that", "Recent studies confirm that",
               "Few people realise that"]
CONTEXT_LINES = [
    "The weather was mild for most of the week.", "Researchers gathered in the valley to take notes.",
    "Here is something I learned today.", "The museum opened a new exhibition last spring.",
    "A small crowd listened to the talk.", "The path to the lake was muddy after the rain.",
    "Our class went on a trip to the countryside.", "This is one of many curious facts.",
    "The library keeps a long list of such observations.", "Nobody expected the results to be so clear.",
    "The market was busy on Saturday morning.", "Some facts are easier to remember than others.",
    "A visiting teacher mentioned it during lunch.", "The report was written over several months.",
    "It was a quiet evening by the river.", "The newsletter arrived a day late.",
    "Children in the town like to repeat it.", "The expedition returned with many notebooks.",
    "I read about it in an old magazine.", "The radio program covered several topics.",
    "Scientists still argue about many details.", "The farmers talk about it every harvest.",
    "A new chapter was added to the textbook.", "The lecture hall was full that afternoon.",
    "My neighbour told me about it over the fence.", "The guide paused to point out the view.",
    "The first snow fell early that year.", "Visitors often ask about this.",
    "The committee met again on Tuesday.", "This was noted in the annual summary.",
]

_CMP_RE = "|".join(re.escape(c) for c in sorted(CONVERSE, key=len, reverse=True))
_STATEMENT = re.compile(rf"\b([a-z]+) are ({_CMP_RE}) than ([a-z]+)\b", re.IGNORECASE)


class SimpleReversalsConfig(FamilyConfig):
    n_facts: int = Field(100, ge=1, le=2000, description="comparison facts (two fresh nouns each)")
    articles_per_fact: int = Field(10, ge=1, description="training articles stating each fact")

    @model_validator(mode="after")
    def _enough_frames(self):
        if self.articles_per_fact > len(TRAIN_FRAMES):
            raise ValueError(f"articles_per_fact at most {len(TRAIN_FRAMES)} (distinct training frames)")
        return self


def _sentence(frame: str, f: Fact) -> str:
    return frame.format(s=f.subject, cmp=f.relation, o=f.object)


def _question(qid: str, split: str, frame: str, true: Fact, support: list[str], premise: Fact,
              rng: random.Random) -> Question:
    false = Fact(true.subject, CONVERSE[true.relation], true.object)
    pairs = [(f" {true.relation} than {true.object}.", true), (f" {false.relation} than {false.object}.", false)]
    rng.shuffle(pairs)
    return Question(id=qid, split=split, subtype=GROUP[true.relation], context=f"{frame} {true.subject} are",
                    choices=[c for c, _ in pairs], answer=[f for _, f in pairs].index(true), support=support,
                    premises=[premise], choice_facts=[f for _, f in pairs])


def generate(cfg: SimpleReversalsConfig, seed: int) -> Dataset:
    rng = random.Random(f"simple_reversals-{seed}")
    nouns = NonsenseWords(seed, namespace="simple_reversals", part=cfg.vocabulary).take(2 * cfg.n_facts)
    documents: list[Document] = []
    questions: list[Question] = []
    knowledge: list[Fact] = []
    for i in range(cfg.n_facts):
        _, pos, neg = FEATURES[rng.randrange(len(FEATURES))]
        cmp = pos if rng.random() < 0.5 else neg
        fwd = Fact(nouns[2 * i], cmp, nouns[2 * i + 1])
        rev = Fact(fwd.object, CONVERSE[cmp], fwd.subject)
        knowledge += [fwd, rev]
        ids = []
        for k, frame in enumerate(rng.sample(TRAIN_FRAMES, cfg.articles_per_fact)):
            line = rng.choice(CONTEXT_LINES)
            parts = [line, _sentence(frame, fwd)]
            if rng.random() < 0.5:
                parts.reverse()
            doc = Document(id=f"sr{i:04d}-a{k}", text=" ".join(parts), kind="article", facts=[fwd],
                           meta={"fact": i})
            documents.append(doc)
            ids.append(doc.id)
        frame = rng.choice(TEST_FRAMES)
        questions.append(_question(f"sr{i:04d}-forward", "forward", frame, fwd, ids, fwd, rng))
        questions.append(_question(f"sr{i:04d}-reversal", "reversal", frame, rev, ids, fwd, rng))
    # Splits grouped, forward first: the file reads in the order a reader expects.
    questions.sort(key=lambda q: (q.split != "forward", q.id))
    return Dataset(family="simple_reversals", config=cfg.model_dump(), seed=seed, documents=documents,
                   questions=questions, knowledge=knowledge,
                   meta={"recall_splits": ["forward"], "entities": nouns,
                         "shortcut_exempt": {"reversal": {"familiarity": COMPARATIVE_EXEMPTION}},
                         "description": "comparison facts over nonsense nouns; test the reversed comparison"})


# The reversal of "A are louder than B" is "B are quieter than A": its comparative never occurs with the
# pair in training, while the contradictory option repeats the trained one. So the least familiar option
# is right on every item, as the most familiar one (co-occurrence) is on the reversal curse's reversals:
# P1's design, and what a fine-tuned model that prefers the familiar gets wrong.
COMPARATIVE_EXEMPTION = ("on a comparative reversal the right option's comparative (the antonym) never occurs with "
                         "the pair in training and the contradiction repeats the trained one, by construction: a "
                         "learner that picks the unfamiliar passes; fine-tuned models prefer the familiar")


def parse_statements(text: str) -> list[Fact]:
    """"glon are dimmer than femp" -> Fact("glon", "dimmer", "femp"), for every such clause in ``text``."""
    return [Fact(m.group(1).lower(), m.group(2).lower(), m.group(3).lower()) for m in _STATEMENT.finditer(text)]


def oracle_augmentations(ds: Dataset) -> list[Document]:
    """Articles stating each fact's converse, as often as the fact itself was stated."""
    rng = random.Random(f"simple_reversals-oracle-{ds.seed}")
    stated = {f for d in ds.documents for f in d.facts}
    n = int(ds.config.get("articles_per_fact", 10))
    out = []
    for j, f in enumerate(x for x in ds.knowledge if x not in stated):
        for k, frame in enumerate(rng.sample(TRAIN_FRAMES, n)):
            out.append(Document(id=f"oracle-sr{j:04d}-a{k}", text=_sentence(frame, f), kind="article",
                                facts=[f], meta={"oracle": True}))
    return out


FAMILY = Family(
    name="simple_reversals",
    description="100 comparison facts over nonsense nouns, 10 articles each; forced choice on reversals",
    config=SimpleReversalsConfig,
    generate=generate,
    parse_statements=parse_statements,
    oracle_augmentations=oracle_augmentations,
)
