"""Relations over synthetic tokens [P2, "latent learning", reversal task; from-scratch track].

About 20,000 relations "X contains Y" between synthetic entity tokens (``e40217``: nonsense words
cannot supply tens of thousands of entities, and digits keep them clear of English). The reverse
statement "Y is a subset of X" is trained for 99% of relations and held out for 1%. Training
sequences are of three kinds:

- ``relation``: one trained relation in one direction ("e40217 contains e88120 .");
- ``episode``: an in-context episode: ``episode_facts`` forward relations (or a uniform number from
  ``episode_facts_min`` to ``episode_facts``), then the reverse of each
  in a new order ("a contains b . c contains d . d is a subset of c . b is a subset of a ."). This is
  what teaches a model to reverse a fact it sees in context. An episode's relations are trained
  relations whose reverse is trained, or, for a ``fresh_episode_fraction`` of episodes, random
  pairs of a separate pool of episode-only entities (``n_episode_entities``, ids ``f12345``): those
  pairs exist nowhere else, so the reverse can only be read from the context, never recalled
  from the parameters; with trained relations it can be recalled, which leaves a small model
  little reason to learn the in-context route (measured in docs/RESULTS.md, "levers");
- ``filler``: random entity tokens stating nothing.

``fresh_entities: relation`` (or ``both``: half the fresh episodes) builds fresh episodes from the
relations' own entities, in random pairs that are no relation (a story that holds only inside its
episode, kept out of ``knowledge``); members of held-out relations never take part. Fresh episodes
over episode-only entities teach reading the context about those entities; whether that carries
over to the entities of the relations, which the test asks about, is what ``episode_in_context``
against ``heldout_reversal_in_context`` measures.

``episode_queries: k`` keeps only the first k reverses of an episode (after shuffling): with all of
them, the last reverse is given away by elimination (the one container not yet used), and a 1-fact
episode by copying the only container; with fewer queries than facts the other facts stay in the
episode as distractors, the form of the in-context test question. Measured (docs/RESULTS.md,
"Levers on one GPU"): no setting of these made a small model pick the right fact among several
(10-34% on both in-context splits, chance 25%); with one query per episode of 1-4 or 2-4 facts the
models pick by recency (the queried fact is mostly among the last), with exactly 4 facts by neither
recency nor content.

Splits: ``trained`` (recall of trained statements, either direction), ``heldout_reversal`` (the
reverse of a held-out relation, no context: a parametric learner scores 0% in P2), and
``heldout_reversal_in_context``: the forward fact in the context, among one distractor fact per
wrong option (that option's own true relation with another member), shuffled, then the reverse
question (~100% in P2). Every option appears in the context exactly once, so copying "the option
that is in the context" gives chance; the model must find the fact about the question's member.
``copyable_split: true`` adds ``heldout_reversal_in_context_copyable``, the forward fact alone in
the context (the seed's earlier form, answerable by copying the only option in context).
``episode_split: true`` adds ``episode_in_context``, the same question over a new pair of episode-only
entities (never in a training document): reading the context apart from the real entities.
No training sequence contains a held-out reverse statement, nor the two entities of a held-out
relation in reversed order.

Entities fall into containers (the X side) and members (the Y side), so relations never chain and
"contains" needs no transitive closure. Distractors are entities of the answer's side that do not
hold the relation with the subject, and themselves hold it with another entity (hard distractors).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Literal, Sequence

from pydantic import Field, model_validator

from genmodes.data.families import Family, FamilyConfig
from genmodes.data.types import Dataset, Document, Fact, Question
from genmodes.errors import DataError

FORWARD = "contains"
REVERSE = "is a subset of"
RECALL_SPLITS = ["trained"]
COPYABLE_EXEMPTION = "copyable by name: the answer is the only option in the context"
COOCCURRENCE_EXEMPTION = ("a held-out reversal's answer co-occurs with its member in the trained forward "
                          "statement by construction: what an associative learner would get, which a "
                          "parametric model trained on the forward direction does not (the reversal curse)")


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
    episode_facts: int = Field(1, ge=1, description="forward relations per episode, each followed by its reverse")
    episode_facts_min: int | None = Field(None, ge=1, description="if set, each episode has a uniform number of "
                                          "relations in [episode_facts_min, episode_facts]")
    fresh_episode_fraction: float = Field(0.0, ge=0.0, le=1.0,
                                          description="episodes over episode-only entity pairs, not trained relations")
    n_episode_entities: int = Field(2_000, ge=4, le=90_000, description="episode-only entities (fresh episodes)")
    copyable_split: bool = Field(False, description="add heldout_reversal_in_context_copyable (forward fact alone)")
    episode_queries: int | None = Field(None, ge=1, description="reverse statements per episode (None: one per "
                                        "fact); the other facts stay in the episode as distractors")
    fresh_entities: Literal["episode", "relation", "both"] = Field(
        "episode", description="entities of fresh episodes: episode-only ones, the relations' own (in pairs that "
                               "are no relation, outside the held-out relations), or half each")
    episode_split: bool = Field(False, description="add episode_in_context: the in-context question over new "
                                "pairs of episode-only entities (needs fresh episodes)")

    @model_validator(mode="after")
    def _check(self) -> "RelationsConfig":
        half = self.n_entities // 2
        if self.n_relations > half * (self.n_entities - half) // 2:
            raise ValueError(f"n_relations ({self.n_relations}) is too many for {self.n_entities} entities: "
                             "raise n_entities")
        if self.n_choices > half:
            raise ValueError(f"n_choices ({self.n_choices}) exceeds the {half} entities of a side")
        if self.episode_facts_min is not None and self.episode_facts_min > self.episode_facts:
            raise ValueError("episode_facts_min is above episode_facts")
        if self.filler_min_len > self.filler_max_len:
            raise ValueError("filler_min_len is above filler_max_len")
        return self


def forward_text(x: str, y: str) -> str:
    return f"{x} {FORWARD} {y}"


def reverse_text(x: str, y: str) -> str:
    return f"{y} {REVERSE} {x}"


@dataclass(frozen=True)
class World:
    """The entities and relations of one dataset, built once by :func:`build_world`; the documents
    and the questions are written from it."""

    entities: list[str]  # containers then members
    ep_entities: list[str]  # episode-only entities: containers then members
    containers: list[str]
    members: list[str]
    relations: list[tuple[str, str]]  # (container, member), in drawn order
    heldout: list[tuple[str, str]]  # relations whose reverse no training sequence states
    trained_rev: list[tuple[str, str]]  # the others
    members_of: dict[str, frozenset[str]]  # container -> its members
    containers_of: dict[str, frozenset[str]]  # member -> its containers
    heldout_set: frozenset[tuple[str, str]] = field(init=False)
    heldout_containers: dict[str, frozenset[str]] = field(init=False)  # member -> its held-out containers

    def __post_init__(self) -> None:
        later: dict[str, set[str]] = {}
        for x, y in self.heldout:
            later.setdefault(y, set()).add(x)
        object.__setattr__(self, "heldout_set", frozenset(self.heldout))
        object.__setattr__(self, "heldout_containers", {y: frozenset(xs) for y, xs in later.items()})

    def reverses_heldout(self, toks: list[str]) -> bool:
        """A held-out pair's member before its container anywhere in one sequence."""
        later = self.heldout_containers
        return any(t in later and not later[t].isdisjoint(toks[i + 1:]) for i, t in enumerate(toks))

    def used_containers(self) -> list[str]:
        """Containers in some relation, sorted: each is a hard distractor of a reversal."""
        return sorted(self.members_of)

    def used_members(self) -> list[str]:
        return sorted(self.containers_of)


def _ids(prefix: str, config: RelationsConfig) -> Sequence[int]:
    """The numbers an entity ``<prefix><n>`` may take: every five-digit one, or those whose token is in
    the config's vocabulary part."""
    ids = range(10_000, 100_000)
    part = config.vocabulary
    if part is None:
        return ids
    kept = [n for n in ids if part.holds(f"{prefix}{n}")]
    need = config.n_entities if prefix == "e" else config.n_episode_entities
    if need > len(kept):
        raise DataError(f"relations: {need} {'episode-only ' if prefix == 'f' else ''}entities do not fit in "
                        f"{part} ({len(kept):,} ids): ask for fewer entities or fewer vocabulary parts")
    return kept


def build_world(config: RelationsConfig, seed: int, rng: random.Random) -> World:
    """The entities (drawn with ``rng``; episode-only ones from their own stream) and the relations."""
    # Five-digit ids, all the same length, so no entity is a prefix of another.
    entities = [f"e{n}" for n in rng.sample(_ids("e", config), config.n_entities)]
    # drawn from their own stream, so adding fresh episodes leaves every other document unchanged
    erng = random.Random(f"relations-{seed}-episode-entities")
    ep_entities = [f"f{n}" for n in erng.sample(_ids("f", config), config.n_episode_entities)]
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
    members_of: dict[str, set[str]] = {}
    containers_of: dict[str, set[str]] = {}
    for x, y in relations:
        members_of.setdefault(x, set()).add(y)
        containers_of.setdefault(y, set()).add(x)
    return World(entities=entities, ep_entities=ep_entities, containers=containers, members=members,
                 relations=relations, heldout=relations[:n_held], trained_rev=relations[n_held:],
                 members_of={x: frozenset(v) for x, v in members_of.items()},
                 containers_of={y: frozenset(v) for y, v in containers_of.items()})


def relation_documents(w: World, rng: random.Random) -> tuple[list[Document], dict[tuple[str, str], str]]:
    """Every relation forward (in an order drawn independently of which are held out), then the
    reverse of each trained one; and the id of each relation's forward document."""
    docs: list[Document] = []
    fwd_doc: dict[tuple[str, str], str] = {}
    for k, (x, y) in enumerate(sorted(w.relations, key=lambda p: rng.random())):
        did = f"rel-f-{k:05d}"
        fwd_doc[(x, y)] = did
        docs.append(Document(id=did, text=forward_text(x, y) + " .", kind="relation",
                             facts=[Fact(x, FORWARD, y)], meta={"direction": "forward"}))
    for k, (x, y) in enumerate(w.trained_rev):
        docs.append(Document(id=f"rel-r-{k:05d}", text=reverse_text(x, y) + " .", kind="relation",
                             facts=[Fact(y, REVERSE, x)], meta={"direction": "reverse"}))
    return docs, fwd_doc


def episode_text(forward: list[tuple[str, str]], reverse: list[tuple[str, str]]) -> str:
    """Forward statements, then reverse ones: "a contains b . c contains d . d is a subset of c . ..."."""
    return " ".join(forward_text(x, y) + " ." for x, y in forward) + " " + \
        " ".join(reverse_text(x, y) + " ." for x, y in reverse)


def _episode_pairs(config: RelationsConfig, w: World, erng: random.Random, n_facts: int,
                   fresh: bool, story: tuple[list[str], list[str]] | None = None
                   ) -> tuple[list[tuple[str, str]], list[tuple[str, str]], str]:
    """One episode's relations, the ones queried in reverse, and its text (a trained episode never
    reverses a held-out pair). ``story``: (containers, members) of the relations' own entities to
    pair at random, never into a relation."""
    ep_half = config.n_episode_entities // 2
    for _try in range(1000):
        if story is not None:
            pairs = list(zip(erng.sample(story[0], n_facts), erng.sample(story[1], n_facts)))
            if any(y in w.members_of.get(x, frozenset()) for x, y in pairs):
                continue
        elif fresh:  # distinct containers and members, so each reverse has one answer
            pairs = list(zip(erng.sample(w.ep_entities[:ep_half], n_facts),
                             erng.sample(w.ep_entities[ep_half:], n_facts)))
        else:
            pairs = erng.sample(w.trained_rev, n_facts)
            if len({x for x, _ in pairs}) < len(pairs) or len({y for _, y in pairs}) < len(pairs):
                continue
        rev = pairs[:]
        erng.shuffle(rev)
        if config.episode_queries is not None:
            rev = rev[: config.episode_queries]
        text = episode_text(pairs, rev)
        if fresh or not w.reverses_heldout(text.split()):
            return pairs, rev, text
    raise DataError("relations: episodes cannot avoid the held-out pairs at these sizes; "
                    "lower episode_facts or heldout_fraction")


def episode_documents(config: RelationsConfig, w: World, seed: int
                      ) -> tuple[list[Document], set[Fact], set[tuple[str, str]]]:
    """The in-context episodes (their own random stream), the facts of the fresh ones over
    episode-only entities (true, but of those entities: knowledge beyond the relations), and their pairs.
    Fresh episodes over the relations' own entities (``fresh_entities``) are stories, not knowledge."""
    n_fresh = round(config.fresh_episode_fraction * config.n_episodes)
    ep_half = config.n_episode_entities // 2
    if config.episode_facts > len(w.trained_rev) and n_fresh < config.n_episodes:
        raise DataError(f"relations: bad setting 'episode_facts': {config.episode_facts} exceeds the "
                        f"{len(w.trained_rev)} trained reversals")
    if config.episode_facts > ep_half and n_fresh:
        raise DataError(f"relations: bad setting 'episode_facts': {config.episode_facts} exceeds the "
                        f"{ep_half} episode-only containers; raise n_episode_entities")
    erng = random.Random(f"relations-{seed}-episodes")
    fresh_at = set(erng.sample(range(config.n_episodes), n_fresh))
    # fresh episodes over the relations' own entities, in pairs that are no relation (own stream, so
    # the default leaves every document as it was); never a member of a held-out relation, so no story
    # gives a held-out question a second answer; every container may take part, so the options of a
    # question stay alike in frequency (without held-out containers, "the rarest option" would answer)
    prng = random.Random(f"relations-{seed}-episode-pool")
    share = {"episode": 0.0, "relation": 1.0, "both": 0.5}[config.fresh_entities]
    stories = {k for k in sorted(fresh_at) if share and prng.random() < share}
    held_m = {y for _, y in w.heldout}
    story_pool = (list(w.containers), [m for m in w.members if m not in held_m])
    if stories and config.episode_facts > min(len(story_pool[0]), len(story_pool[1])):
        raise DataError("relations: bad setting 'fresh_entities': too few members outside the held-out relations")
    docs: list[Document] = []
    knowledge: set[Fact] = set()
    fresh_pairs: set[tuple[str, str]] = set()
    for k in range(config.n_episodes):
        n_facts = config.episode_facts
        if config.episode_facts_min is not None and config.episode_facts_min < n_facts:
            n_facts = erng.randint(config.episode_facts_min, n_facts)
        pairs, rev, text = _episode_pairs(config, w, erng, n_facts, k in fresh_at,
                                          story_pool if k in stories else None)
        facts = sorted({Fact(x, FORWARD, y) for x, y in pairs} | {Fact(y, REVERSE, x) for x, y in rev})
        if k in fresh_at and k not in stories:
            fresh_pairs.update(pairs)
            # an unqueried fact's reverse still holds: knowledge is what is true, facts what is stated
            knowledge.update(Fact(y, REVERSE, x) for x, y in pairs)
            knowledge.update(facts)
        docs.append(Document(id=f"rel-e-{k:05d}", text=text, kind="episode", facts=facts,
                             meta={"fresh": k in fresh_at, **({"story": True} if k in stories else {})}))
    return docs, knowledge, fresh_pairs


def filler_documents(config: RelationsConfig, w: World, rng: random.Random) -> list[Document]:
    """Random entity sequences stating nothing, never a held-out pair in reversed order (even
    without the relation words)."""
    docs: list[Document] = []
    tries = 0
    while len(docs) < config.n_filler:
        tries += 1
        if tries > 1000 * (config.n_filler + 1):
            raise DataError("relations: filler sequences cannot avoid the held-out pairs at these sizes; "
                            "lower n_filler, the filler length or heldout_fraction, or raise n_entities")
        toks = [rng.choice(w.entities) for _ in range(rng.randint(config.filler_min_len, config.filler_max_len))]
        if w.reverses_heldout(toks):
            continue
        docs.append(Document(id=f"rel-x-{len(docs):05d}", text=" ".join(toks) + " .", kind="filler"))
    return docs


def question(config: RelationsConfig, w: World, qid: str, split: str, x: str, y: str, direction: str,
             support: list[str], qrng: random.Random, in_context: str = "") -> Question:
    """The item asking (x contains y) in ``direction``; ``in_context``: "" (none), "copyable" (the
    forward fact before the question) or "distractors" (it among one true fact per wrong option)."""
    if direction == "forward":
        context, answer, pool, true, subject, rel = f"{x} {FORWARD}", y, w.used_members(), w.members_of[x], x, FORWARD
    else:
        context, answer, pool, true, subject, rel = f"{y} {REVERSE}", x, w.used_containers(), w.containers_of[y], y, REVERSE
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
    if in_context == "copyable":
        context = f"{forward_text(x, y)} . {context}"
    elif in_context:
        # one true fact per wrong option, so each option is in the context once
        shown = [(x, y)] + [(o, qrng.choice(sorted(w.members_of[o]))) for o in wrong]
        qrng.shuffle(shown)
        context = " ".join(forward_text(a, b) + " ." for a, b in shown) + " " + context
    return Question(
        id=qid, split=split, subtype=direction, context=context,
        choices=[" " + e for e in options], answer=options.index(answer), support=support,
        premises=[Fact(x, FORWARD, y)], choice_facts=[Fact(subject, rel, e) for e in options],
        meta={"hard_distractors": True, "in_context": bool(in_context), "heldout": (x, y) in w.heldout_set})


def write_questions(config: RelationsConfig, w: World, seed: int,
                    fwd_doc: dict[tuple[str, str], str]) -> list[Question]:
    questions: list[Question] = []

    def ask(split: str, x: str, y: str, direction: str, qrng: random.Random, in_context: str = "") -> None:
        questions.append(question(config, w, f"rel-{split}-{len(questions):05d}", split, x, y, direction,
                                  [fwd_doc[(x, y)]], qrng, in_context))

    qrng = random.Random(f"relations-{seed}-questions")
    for x, y in qrng.sample(w.relations, min(config.n_trained_questions, len(w.relations))):
        direction = "forward" if (x, y) in w.heldout_set or qrng.random() < 0.5 else "reverse"
        ask("trained", x, y, direction, qrng)
    for x, y in w.heldout:
        ask("heldout_reversal", x, y, "reverse", qrng)
    for x, y in w.heldout:
        ask("heldout_reversal_in_context", x, y, "reverse", qrng, "distractors")
    if config.copyable_split:
        crng = random.Random(f"relations-{seed}-copyable")  # the other splits stay as without it
        for x, y in w.heldout:
            ask("heldout_reversal_in_context_copyable", x, y, "reverse", crng, "copyable")
    return questions


def generate(config: RelationsConfig, seed: int) -> Dataset:
    rng = random.Random(f"relations-{seed}")
    w = build_world(config, seed, rng)
    docs, fwd_doc = relation_documents(w, rng)
    episodes, episode_knowledge, fresh_pairs = episode_documents(config, w, seed)
    docs += episodes + filler_documents(config, w, rng)
    questions = write_questions(config, w, seed, fwd_doc)
    if config.episode_split:
        if not fresh_pairs or config.fresh_entities == "relation":
            raise DataError("relations: bad setting 'episode_split': it needs fresh episodes over episode-only "
                            "entities (fresh_episode_fraction > 0, fresh_entities episode or both)")
        ep_half = config.n_episode_entities // 2
        episode_knowledge |= _episode_questions(config, seed, w.ep_entities[:ep_half], w.ep_entities[ep_half:],
                                                fresh_pairs, len(w.heldout), questions)

    fresh = round(config.fresh_episode_fraction * config.n_episodes) > 0
    knowledge = sorted({f for x, y in w.relations for f in (Fact(x, FORWARD, y), Fact(y, REVERSE, x))}
                       | episode_knowledge)
    return Dataset(
        family="relations", config=config.model_dump(), seed=seed, documents=docs, questions=questions,
        knowledge=knowledge,
        meta={"recall_splits": RECALL_SPLITS,
              "shortcut_exempt": {
                  "heldout_reversal": {"cooccurrence": COOCCURRENCE_EXEMPTION},
                  "heldout_reversal_in_context_copyable": {
                      "cooccurrence": COOCCURRENCE_EXEMPTION,
                      **{m: COPYABLE_EXEMPTION for m in ("overlap", "answer_form")}}},
              "entities": w.entities + (w.ep_entities if fresh else []),
              "heldout_relations": [list(p) for p in w.heldout],
              "vocabulary": sorted(set(w.entities) | (set(w.ep_entities) if fresh else set())
                                   | {".", *FORWARD.split(), *REVERSE.split()})})


def _episode_questions(config: RelationsConfig, seed: int, ep_c: list[str], ep_m: list[str],
                       fresh_pairs: set[tuple[str, str]], n: int, questions: list[Question]) -> set[Fact]:
    """``episode_in_context``: the in-context question of ``heldout_reversal_in_context`` over a new pair
    of episode-only entities, among one true episode fact per wrong option. It separates reading the
    context (the skill the fresh episodes train) from applying it to the entities of the trained
    relations: a model good here and at chance on held-out reversals in context reads its context but
    not around the real entities. No training document holds the pair, so there is no support to
    retrieve: an oracle context is the question's own."""
    rng = random.Random(f"relations-{seed}-episode-split")
    fresh_members: dict[str, list[str]] = {}
    for x, y in sorted(fresh_pairs):
        fresh_members.setdefault(x, []).append(y)
    asked: set[tuple[str, str]] = set()
    wrong_pairs: set[tuple[str, str]] = set()
    knowledge: set[Fact] = set()
    for _ in range(n):
        for _try in range(1000):
            x, y = rng.choice(ep_c), rng.choice(ep_m)
            if (x, y) in fresh_pairs or (x, y) in asked or (x, y) in wrong_pairs:
                continue
            cands = [w for w in ep_c if w != x and (w, y) not in fresh_pairs and (w, y) not in asked
                     and any(m != y for m in fresh_members.get(w, []))]
            if len(cands) < config.n_choices - 1:
                continue
            wrong = rng.sample(cands, config.n_choices - 1)
            shown = [(x, y)] + [(w, rng.choice([m for m in fresh_members[w] if m != y])) for w in wrong]
            if len({m for _, m in shown}) == len(shown):  # one fact per member: one answer
                break
        else:
            raise DataError("relations: too few episode-only entities for episode_in_context; "
                            "raise n_episode_entities or n_episodes")
        asked.add((x, y))
        wrong_pairs.update((w, y) for w in wrong)
        knowledge.update({Fact(x, FORWARD, y), Fact(y, REVERSE, x)})
        options = [x] + wrong
        rng.shuffle(options)
        rng.shuffle(shown)
        context = " ".join(forward_text(a, b) + " ." for a, b in shown) + f" {y} {REVERSE}"
        questions.append(Question(
            id=f"rel-episode_in_context-{len(questions):05d}", split="episode_in_context", subtype="reverse",
            context=context, choices=[" " + e for e in options], answer=options.index(x), support=[],
            premises=[], choice_facts=[Fact(y, REVERSE, o) for o in options],
            meta={"hard_distractors": True, "in_context": True, "heldout": False, "episode_entities": True}))
    return knowledge


_FWD = re.compile(r"([ef]\d+) contains ([ef]\d+)")
_REV = re.compile(r"([ef]\d+) is a subset of ([ef]\d+)")


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
