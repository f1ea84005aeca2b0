"""Relations over synthetic tokens [P2, "latent learning", reversal task; from-scratch track].

About 20,000 relations "X contains Y" between synthetic entity tokens (``e40217``: nonsense words
cannot supply tens of thousands of entities, and digits keep them clear of English). The reverse
statement "Y is a subset of X" is trained for 99% of relations and held out for 1%. Training
sequences are of three kinds:

- ``relation``: one trained relation in one direction ("e40217 contains e88120 .");
- ``episode``: an in-context episode, a forward relation followed by its reverse in one sequence
  ("e40217 contains e88120 . e88120 is a subset of e40217 ."), only for relations whose reverse is
  trained: this is what teaches a model to reverse a fact it sees in context;
- ``filler``: random entity tokens stating nothing.

Splits: ``trained`` (recall of trained statements, either direction), ``heldout_reversal`` (the
reverse of a held-out relation, no context: a parametric learner scores 0% in P2), and
``heldout_reversal_in_context`` (the forward fact in the context first: ~100% in P2). No training
sequence contains a held-out reverse statement, nor the two entities of a held-out relation in
reversed order.

Entities fall into containers (the X side) and members (the Y side), so relations never chain and
"contains" needs no transitive closure. Distractors are entities of the answer's side that do not
hold the relation with the subject, and themselves hold it with another entity (hard distractors).
"""

from __future__ import annotations

import random
import re

from pydantic import Field, model_validator

from genmodes.data.families import Family, FamilyConfig
from genmodes.data.types import Dataset, Document, Fact, Question
from genmodes.errors import DataError

FORWARD = "contains"
REVERSE = "is a subset of"
RECALL_SPLITS = ["trained"]


class RelationsConfig(FamilyConfig):
    n_relations: int = Field(20_000, ge=2)
    heldout_fraction: float = Field(0.01, gt=0.0, lt=1.0)
    n_entities: int = Field(10_000, ge=4, le=90_000, description="half containers, half members")
    n_episodes: int = Field(5_000, ge=0)
    n_filler: int = Field(5_000, ge=0)
    filler_min_len: int = Field(6, ge=1)
    filler_max_len: int = Field(16, ge=1)
    n_trained_questions: int = Field(200, ge=0)
    n_choices: int = Field(4, ge=2)

    @model_validator(mode="after")
    def _check(self) -> "RelationsConfig":
        half = self.n_entities // 2
        if self.n_relations > half * (self.n_entities - half) // 2:
            raise ValueError(f"n_relations ({self.n_relations}) is too many for {self.n_entities} entities: "
                             "raise n_entities")
        if self.n_choices > half:
            raise ValueError(f"n_choices ({self.n_choices}) exceeds the {half} entities of a side")
        if self.filler_min_len > self.filler_max_len:
            raise ValueError("filler_min_len is above filler_max_len")
        return self


def forward_text(x: str, y: str) -> str:
    return f"{x} {FORWARD} {y}"


def reverse_text(x: str, y: str) -> str:
    return f"{y} {REVERSE} {x}"


def generate(config: RelationsConfig, seed: int) -> Dataset:
    rng = random.Random(f"relations-{seed}")
    # Five-digit ids, all the same length, so no entity is a prefix of another.
    entities = [f"e{n}" for n in rng.sample(range(10_000, 100_000), config.n_entities)]
    half = config.n_entities // 2
    containers, members = entities[:half], entities[half:]

    pairs: set[tuple[str, str]] = set()
    # Every entity in at least one relation where the count allows, then random pairs.
    order_c, order_m = containers[:], members[:]
    rng.shuffle(order_c)
    rng.shuffle(order_m)
    for i in range(min(config.n_relations, max(len(order_c), len(order_m)))):
        pairs.add((order_c[i % len(order_c)], order_m[i % len(order_m)]))
    if config.n_relations > len(containers) * len(members):
        raise DataError(f"relations: bad setting 'n_relations': {config.n_relations} relations need more "
                        f"entities than n_entities={config.n_entities} allows")
    while len(pairs) < config.n_relations:
        pairs.add((rng.choice(containers), rng.choice(members)))
    relations = sorted(pairs)
    rng.shuffle(relations)
    n_held = max(1, round(config.heldout_fraction * config.n_relations))
    heldout = relations[:n_held]
    trained_rev = relations[n_held:]
    heldout_set = set(heldout)

    docs: list[Document] = []
    fwd_doc: dict[tuple[str, str], str] = {}
    # forward documents in an order independent of which relations are held out
    for k, (x, y) in enumerate(sorted(relations, key=lambda p: rng.random())):
        did = f"rel-f-{k:05d}"
        fwd_doc[(x, y)] = did
        docs.append(Document(id=did, text=forward_text(x, y) + " .", kind="relation",
                             facts=[Fact(x, FORWARD, y)], meta={"direction": "forward"}))
    for k, (x, y) in enumerate(trained_rev):
        docs.append(Document(id=f"rel-r-{k:05d}", text=reverse_text(x, y) + " .", kind="relation",
                             facts=[Fact(y, REVERSE, x)], meta={"direction": "reverse"}))
    for k in range(config.n_episodes):
        x, y = rng.choice(trained_rev)
        docs.append(Document(id=f"rel-e-{k:05d}", text=f"{forward_text(x, y)} . {reverse_text(x, y)} .",
                             kind="episode", facts=sorted([Fact(x, FORWARD, y), Fact(y, REVERSE, x)])))
    held_reversed = {(y, x) for x, y in heldout}
    k, tries = 0, 0
    while k < config.n_filler:
        tries += 1
        if tries > 1000 * (config.n_filler + 1):
            raise DataError("relations: filler sequences cannot avoid the held-out pairs at these sizes; "
                            "lower n_filler, the filler length or heldout_fraction, or raise n_entities")
        toks = [rng.choice(entities) for _ in range(rng.randint(config.filler_min_len, config.filler_max_len))]
        # never a held-out pair in reversed order, even without the relation words
        if any((toks[i], toks[j]) in held_reversed for i in range(len(toks)) for j in range(i + 1, len(toks))):
            continue
        docs.append(Document(id=f"rel-x-{k:05d}", text=" ".join(toks) + " .", kind="filler"))
        k += 1

    members_of: dict[str, set[str]] = {}
    containers_of: dict[str, set[str]] = {}
    for x, y in relations:
        members_of.setdefault(x, set()).add(y)
        containers_of.setdefault(y, set()).add(x)
    used_c = sorted(members_of)  # containers in some relation: each is a hard distractor
    used_m = sorted(containers_of)

    questions: list[Question] = []

    def ask(split: str, x: str, y: str, direction: str, qrng: random.Random, in_context: bool) -> None:
        if direction == "forward":
            context, answer, pool, true = f"{x} {FORWARD}", y, used_m, members_of[x]
            fact = lambda o: Fact(x, FORWARD, o)  # noqa: E731
        else:
            context, answer, pool, true = f"{y} {REVERSE}", x, used_c, containers_of[y]
            fact = lambda o: Fact(y, REVERSE, o)  # noqa: E731
        if in_context:
            context = f"{forward_text(x, y)} . {context}"
        wrong: list[str] = []
        if len(set(pool) - set(true)) < config.n_choices - 1:
            raise DataError(f"relations: too few entities for {config.n_choices} options per question; "
                            "raise n_entities or lower n_choices")
        while len(wrong) < config.n_choices - 1:
            e = qrng.choice(pool)
            if e not in true and e not in wrong:
                wrong.append(e)
        options = [answer] + wrong
        qrng.shuffle(options)
        questions.append(Question(
            id=f"rel-{split}-{len(questions):05d}", split=split, subtype=direction, context=context,
            choices=[" " + e for e in options], answer=options.index(answer), support=[fwd_doc[(x, y)]],
            premises=[Fact(x, FORWARD, y)], choice_facts=[fact(e) for e in options],
            meta={"hard_distractors": True, "in_context": in_context, "heldout": (x, y) in heldout_set}))

    qrng = random.Random(f"relations-{seed}-questions")
    n_t = min(config.n_trained_questions, len(relations))
    for x, y in qrng.sample(relations, n_t):
        direction = "forward" if (x, y) in heldout_set or qrng.random() < 0.5 else "reverse"
        ask("trained", x, y, direction, qrng, False)
    for x, y in heldout:
        ask("heldout_reversal", x, y, "reverse", qrng, False)
    for x, y in heldout:
        ask("heldout_reversal_in_context", x, y, "reverse", qrng, True)

    knowledge = sorted({f for x, y in relations for f in (Fact(x, FORWARD, y), Fact(y, REVERSE, x))})
    return Dataset(
        family="relations", config=config.model_dump(), seed=seed, documents=docs, questions=questions,
        knowledge=knowledge,
        meta={"recall_splits": RECALL_SPLITS, "entities": entities,
              "heldout_relations": [list(p) for p in heldout],
              "vocabulary": sorted(set(entities) | {".", *FORWARD.split(), *REVERSE.split()})})


_FWD = re.compile(r"(e\d+) contains (e\d+)")
_REV = re.compile(r"(e\d+) is a subset of (e\d+)")


def parse_statements(text: str) -> list[Fact]:
    facts = [Fact(x, FORWARD, y) for x, y in _FWD.findall(text)]
    facts += [Fact(y, REVERSE, x) for y, x in _REV.findall(text)]
    return list(dict.fromkeys(facts))


def oracle_augmentations(ds: Dataset) -> list[Document]:
    """The reverse statement of every held-out relation, one per document."""
    return [Document(id=f"rel-aug-{k:05d}", text=reverse_text(x, y) + " .", kind="augmentation",
                     facts=[Fact(y, REVERSE, x)])
            for k, (x, y) in enumerate(ds.meta["heldout_relations"])]


FAMILY = Family(
    name="relations",
    description="P2 relations over synthetic tokens: reversals trained for 99%, held out for 1%; filler, relation and episode sequences",
    config=RelationsConfig,
    generate=generate,
    parse_statements=parse_statements,
    oracle_augmentations=oracle_augmentations,
)
