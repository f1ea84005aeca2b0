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

from genmodes.data.families import Family, FamilyConfig, drills
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
    OMIT_AT_DEFAULT = ("repeat_reversed", "repeat_relation_entities", "repeat_relation_pool", "story_share",
                       "story_forward_queries", "story_split")

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
    lookup_split: bool = Field(False, description="add lookup_in_context: facts over new pairs of episode-only "
                               "entities, then one of them asked forward (MQAR-style recall in this format)")
    episode_forward_queries: float = Field(0.0, ge=0.0, le=1.0, description="share of an episode's queries asked "
                                           "forward (a fact restated: its member read from the context) instead "
                                           "of reversed")
    n_repeats: int = Field(0, ge=0, description="repeat drills: a random run of episode-only entities, then the "
                           "same run again (the second run is read from the first)")
    repeat_min_len: int = Field(3, ge=1)
    repeat_max_len: int = Field(12, ge=1)
    repeat_reversed: float = Field(0.0, ge=0.0, le=1.0, description="share of repeat drills whose second run is "
                                   "the first reversed (each word read as the one before it: the direction a "
                                   "reversal in context needs)")
    repeat_relation_entities: float = Field(0.0, ge=0.0, le=1.0, description="share of repeat drills over the "
                                            "relations' own entities (never a member of a held-out relation), so "
                                            "reading the context is practised on the entities the test asks about")
    repeat_relation_pool: Literal["both", "containers"] = Field(
        "both", description="entities of the drills over the relations' own (repeat_relation_entities): containers "
                            "and members, or containers only (a drill that copies members aligns their output with "
                            "their input embedding, which made held-out reversals answerable from the parameters "
                            "in a small model: docs/log)")
    story_share: float | None = Field(None, ge=0.0, le=1.0, description="share of fresh episodes over the "
                                      "relations' own entities (None: fresh_entities' share, 0, 1 or 1/2)")
    story_forward_queries: bool = Field(True, description="fresh episodes over the relations' own entities ask "
                                        "forward queries too (episode_forward_queries); False: reverse only, so no "
                                        "practice copies a member (see repeat_relation_pool)")
    story_split: bool = Field(False, description="add story_in_context, the ladder's third rung: facts over new "
                              "pairs of the relations' own entities (never a relation), one asked reversed; reading "
                              "reaches the entities the test asks about (needs practice over them)")
    balanced_distractors: bool = Field(True, description="in-context splits draw their distractor facts with the "
                                       "target's training status (held-out among held-out, fresh among fresh); "
                                       "False: the earlier form (a trained relation per wrong option)")

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
        held = max(1, round(self.heldout_fraction * self.n_relations))
        if self.balanced_distractors and held < 2 * self.n_choices:
            raise ValueError(f"balanced_distractors needs at least {2 * self.n_choices} held-out relations (their "
                             f"facts are one another's distractors), got {held}: raise heldout_fraction or "
                             "n_relations, or set balanced_distractors false")
        if self.repeat_min_len > self.repeat_max_len:
            raise ValueError("repeat_min_len is above repeat_max_len")
        if self.repeat_max_len > self.n_episode_entities and self.n_repeats:
            raise ValueError(f"repeat_max_len ({self.repeat_max_len}) exceeds the {self.n_episode_entities} "
                             "episode-only entities a drill draws from without repeats")
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
                             facts=[Fact(x, FORWARD, y)], meta={"direction": "forward", "targets": [FWD_OBJECT]}))
    for k, (x, y) in enumerate(w.trained_rev):
        docs.append(Document(id=f"rel-r-{k:05d}", text=reverse_text(x, y) + " .", kind="relation",
                             facts=[Fact(y, REVERSE, x)], meta={"direction": "reverse", "targets": [REV_OBJECT]}))
    return docs, fwd_doc


# Word positions of what a statement's subject determines: the member of "x contains y .", the
# container of "y is a subset of x ." (a training setting can put the loss on these words only).
FWD_OBJECT = 2
REV_OBJECT = 5
FWD_LEN = 4  # words of "x contains y ."
REV_LEN = 6  # words of "y is a subset of x ."


def episode_text(forward: list[tuple[str, str]], queries: list[tuple[str, str, str]]) -> tuple[str, list[int]]:
    """Forward statements, then the queries (``(x, y, direction)``; reverse: "y is a subset of x .",
    forward: the fact restated), and the word positions the context determines (each query's answer).
    "a contains b . c contains d . d is a subset of c . ..." """
    words = [w for x, y in forward for w in (forward_text(x, y) + " .").split()]
    targets = []
    for x, y, direction in queries:
        if direction == "forward":
            targets.append(len(words) + FWD_OBJECT)
            words += (forward_text(x, y) + " .").split()
        else:
            targets.append(len(words) + REV_OBJECT)
            words += (reverse_text(x, y) + " .").split()
    return " ".join(words), targets


def _episode_pairs(config: RelationsConfig, w: World, erng: random.Random, n_facts: int,
                   fresh: bool, story: tuple[list[str], list[str]] | None = None,
                   qrng: random.Random | None = None
                   ) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]], str, list[int]]:
    """One episode's relations, its queries ``(x, y, direction)``, its text and the word positions
    its context determines (a trained episode never reverses a held-out pair). ``story``:
    (containers, members) of the relations' own entities to pair at random, never into a relation.
    ``qrng`` draws each query's direction (``episode_forward_queries``), from its own stream so that
    the default leaves the episodes as they were."""
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
        forward = config.episode_forward_queries if story is None or config.story_forward_queries else 0.0
        queries = [(x, y, "forward" if forward and qrng is not None and qrng.random() < forward else "reverse")
                   for x, y in rev]
        text, targets = episode_text(pairs, queries)
        if fresh or not w.reverses_heldout(text.split()):
            return pairs, queries, text, targets
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
    if config.story_share is not None:
        share = config.story_share
    stories = {k for k in sorted(fresh_at) if share and prng.random() < share}
    story_pool = tuple(relation_pools(w))
    if stories and config.episode_facts > min(len(story_pool[0]), len(story_pool[1])):
        raise DataError("relations: bad setting 'fresh_entities': too few members outside the held-out relations")
    docs: list[Document] = []
    knowledge: set[Fact] = set()
    fresh_pairs: set[tuple[str, str]] = set()
    qrng = random.Random(f"relations-{seed}-episode-query-directions")
    for k in range(config.n_episodes):
        n_facts = config.episode_facts
        if config.episode_facts_min is not None and config.episode_facts_min < n_facts:
            n_facts = erng.randint(config.episode_facts_min, n_facts)
        pairs, queries, text, targets = _episode_pairs(config, w, erng, n_facts, k in fresh_at,
                                                       story_pool if k in stories else None, qrng)
        rev = [(x, y) for x, y, d in queries if d == "reverse"]
        facts = sorted({Fact(x, FORWARD, y) for x, y in pairs} | {Fact(y, REVERSE, x) for x, y in rev})
        if k in fresh_at and k not in stories:
            fresh_pairs.update(pairs)
            # an unqueried fact's reverse still holds: knowledge is what is true, facts what is stated
            knowledge.update(Fact(y, REVERSE, x) for x, y in pairs)
            knowledge.update(facts)
        docs.append(Document(id=f"rel-e-{k:05d}", text=text, kind="episode", facts=facts,
                             meta={"fresh": k in fresh_at, "targets": targets,
                                   **({"story": True} if k in stories else {})}))
    return docs, knowledge, fresh_pairs


def repeat_documents(config: RelationsConfig, w: World, seed: int) -> list[Document]:
    """Repeat drills: a run of distinct entities, then the same run again (or reversed, for a
    ``repeat_reversed`` share). Every word of the second run but its first is read from the first run
    (the targets): the densest practice in reading the context, which lets induction-like lookup form
    early; the reversed drills practise reading a word's predecessor, which a reversal in context
    needs (docs/log has the measurements). They state nothing. Over episode-only entities, or for a
    ``repeat_relation_entities`` share over the relations' own (:func:`relation_pools`)."""
    pools = relation_pools(w)
    own = pools[0] if config.repeat_relation_pool == "containers" else [e for pool in pools for e in pool]

    def choose(rng: random.Random) -> tuple[Sequence[str], dict[str, bool]]:
        if config.repeat_relation_entities and rng.random() < config.repeat_relation_entities:
            return own, {"relation_entities": True}
        return w.ep_entities, {}
    return drills.repeat_documents(config.n_repeats, random.Random(f"relations-{seed}-repeats"), choose,
                                   config.repeat_min_len, config.repeat_max_len, config.repeat_reversed, "rel-d-")


def relation_pools(w: World) -> list[list[str]]:
    """The relations' own entities that practice may use (containers; members of no held-out relation):
    with the held-out members left out, no practice sequence, however its entities are drawn or
    rebound in training, puts a held-out pair in reversed order."""
    held_m = {y for _, y in w.heldout}
    return [list(w.containers), [m for m in w.members if m not in held_m]]


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
        docs.append(Document(id=f"rel-x-{len(docs):05d}", text=" ".join(toks) + " .", kind="filler",
                             meta={"targets": []}))  # nothing in a filler is determined
    return docs


def question(config: RelationsConfig, w: World, qid: str, split: str, x: str, y: str, direction: str,
             support: list[str], qrng: random.Random, in_context: str = "") -> Question:
    """The item asking (x contains y) in ``direction``; ``in_context``: "" (none), "copyable" (the
    forward fact before the question) or "distractors" (it among one true fact per wrong option)."""
    if direction == "forward":
        context, answer, pool, true, subject, rel = f"{x} {FORWARD}", y, w.used_members(), w.members_of[x], x, FORWARD
    else:
        context, answer, pool, true, subject, rel = f"{y} {REVERSE}", x, w.used_containers(), w.containers_of[y], y, REVERSE
    balanced = in_context == "distractors" and config.balanced_distractors
    if balanced:  # wrong options are the containers of other held-out relations, shown with them
        shown = _heldout_distractors(config, w, x, y, qrng)
        wrong = [a for a, _ in shown[1:]]
    else:
        wrong = _wrong_options(config, pool, true, qrng)
    options = [answer] + wrong
    qrng.shuffle(options)
    if in_context == "copyable":
        context = f"{forward_text(x, y)} . {context}"
    elif in_context:
        if not balanced:  # one true fact per wrong option, so each option is in the context once
            shown = [(x, y)] + [(o, qrng.choice(sorted(w.members_of[o]))) for o in wrong]
        qrng.shuffle(shown)
        context = " ".join(forward_text(a, b) + " ." for a, b in shown) + " " + context
    return Question(
        id=qid, split=split, subtype=direction, context=context,
        choices=[" " + e for e in options], answer=options.index(answer), support=support,
        premises=[Fact(x, FORWARD, y)], choice_facts=[Fact(subject, rel, e) for e in options],
        meta={"hard_distractors": True, "in_context": bool(in_context), "heldout": (x, y) in w.heldout_set})


def _wrong_options(config: RelationsConfig, pool: list[str], true: frozenset[str], qrng: random.Random) -> list[str]:
    wrong: list[str] = []
    if len(set(pool) - set(true)) < config.n_choices - 1:
        raise DataError(f"relations: too few entities for {config.n_choices} options per question; "
                        "raise n_entities or lower n_choices")
    while len(wrong) < config.n_choices - 1:
        e = qrng.choice(pool)
        if e not in true and e not in wrong:
            wrong.append(e)
    return wrong


def _heldout_distractors(config: RelationsConfig, w: World, x: str, y: str, qrng: random.Random
                         ) -> list[tuple[str, str]]:
    """The held-out relation (x, y) and one other held-out relation per wrong option: every fact in
    the context has its forward direction trained and its reverse held out, so neither memory nor
    unfamiliarity tells the target's fact from the others. Distinct containers and members, and no
    wrong option holds the relation with y (one true option)."""
    cands = sorted({(a, b) for a, b in w.heldout if a != x and b != y and y not in w.members_of[a]})
    for _try in range(1000):
        picked = qrng.sample(cands, config.n_choices - 1) if len(cands) >= config.n_choices - 1 else []
        if picked and len({a for a, _ in picked}) == len(picked) and len({b for _, b in picked}) == len(picked):
            return [(x, y)] + picked
    raise DataError(f"relations: too few held-out relations for {config.n_choices} options with familiarity-"
                    "balanced distractors; raise heldout_fraction or n_relations, or set balanced_distractors "
                    "false")


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
    docs += episodes + filler_documents(config, w, rng) + repeat_documents(config, w, seed)
    questions = write_questions(config, w, seed, fwd_doc)
    fresh = bool(fresh_pairs) or config.n_repeats > 0  # documents over episode-only entities
    # practice over the relations' own entities: stories, drills (rebound among those entities only)
    own_practice = any(d.meta.get("story") or d.meta.get("relation_entities") for d in docs)
    ep_half = config.n_episode_entities // 2
    ep_c, ep_m = w.ep_entities[:ep_half], w.ep_entities[ep_half:]
    known = set(fresh_pairs)
    for on, split, direction in ((config.lookup_split, "lookup_in_context", "forward"),
                                 (config.episode_split, "episode_in_context", "reverse")):
        if not on:
            continue
        if not fresh:
            raise DataError(f"relations: bad setting '{split.split('_')[0]}_split': it needs practice over "
                            "episode-only entities (fresh episodes with fresh_entities episode or both, or repeats)")
        episode_knowledge |= _fresh_context_questions(config, seed, ep_c, ep_m, known, len(w.heldout), questions,
                                                      split, direction)
    if config.story_split:
        if not own_practice:
            raise DataError("relations: bad setting 'story_split': it needs practice over the relations' own entities "
                            "(story_share or fresh_entities relation/both, or repeat_relation_entities)")
        # the stated pairs are no relation (true in the question's own context, as a story's are in its
        # episode); no option is the asked member's real container, so memory cannot pick the answer
        first = len(questions)
        episode_knowledge |= _fresh_context_questions(config, seed, *relation_pools(w), set(w.relations) | known, len(w.heldout),
                                 questions, "story_in_context", "reverse")
        for q in questions[first:]:
            q.meta.update(episode_entities=False, story=True)
    knowledge = sorted({f for x, y in w.relations for f in (Fact(x, FORWARD, y), Fact(y, REVERSE, x))}
                       | episode_knowledge)
    return Dataset(
        family="relations", config=config.model_dump(), seed=seed, documents=docs, questions=questions,
        knowledge=knowledge,
        meta={"recall_splits": RECALL_SPLITS,
              # the calibration ladder: in-context reading over entities training never binds (gates retrieval)
              **({"calibration_splits": {s: 0.95 for s, on in (("lookup_in_context", config.lookup_split),
                                                              ("episode_in_context", config.episode_split),
                                                              ("story_in_context", config.story_split)) if on}}
                 if config.lookup_split or config.episode_split or config.story_split else {}),
              "shortcut_exempt": {
                  "heldout_reversal": {"cooccurrence": COOCCURRENCE_EXEMPTION},
                  "heldout_reversal_in_context_copyable": {
                      "cooccurrence": COOCCURRENCE_EXEMPTION,
                      **{m: COPYABLE_EXEMPTION for m in ("overlap", "answer_form")}}},
              "entities": w.entities + (w.ep_entities if fresh else []),
              "heldout_relations": [list(p) for p in w.heldout],
              # training may draw new bindings for documents marked fresh: a permutation of each pool
              **({"rebind_pools": [ep_c, ep_m] + (relation_pools(w) if own_practice else [])} if fresh else {}),
              "vocabulary": sorted(set(w.entities) | (set(w.ep_entities) if fresh else set())
                                   | {".", *FORWARD.split(), *REVERSE.split()})})


def _fresh_context_questions(config: RelationsConfig, seed: int, ep_c: list[str], ep_m: list[str],
                             known: set[tuple[str, str]], n: int, questions: list[Question],
                             split: str, direction: str) -> set[Fact]:
    """Questions whose context is ``n_choices`` facts over new pairs of episode-only entities (distinct
    containers and members, no pair in any training document or earlier question), then one fact asked:

    - ``episode_in_context`` (``direction`` reverse): "y is a subset of" -> x, the options the
      containers in the context; P2's in-context reversal, about entities the parameters cannot know.
    - ``lookup_in_context`` (forward): "x contains" -> y, the options the members in the context:
      MQAR-style recall in the relations' own format, the first rung of the calibration ladder.

    Every option is in the context once and every fact has the same (no) training status, so neither
    copying an option seen nor familiarity picks the answer; only reading the context about the asked
    entity does. No training document holds the pairs, so there is no support to retrieve: an oracle
    context is the question's own. The shown facts are true in their episode: they join the
    knowledge (and ``known``), so no later question reuses a pair."""
    rng = random.Random(f"relations-{seed}-{split}")
    k = config.n_choices
    if min(len(ep_c), len(ep_m)) < k:
        raise DataError(f"relations: {split} needs at least {k} episode-only containers and members; "
                        "raise n_episode_entities")
    knowledge: set[Fact] = set()
    for _ in range(n):
        for _try in range(1000):
            shown = list(zip(rng.sample(ep_c, k), rng.sample(ep_m, k)))
            x, y = shown[0]
            crossed = [(c, y) for c, _ in shown[1:]] if direction == "reverse" else [(x, m) for _, m in shown[1:]]
            if not any(p in known for p in shown + crossed):
                break
        else:
            raise DataError(f"relations: too few episode-only entities for {split}; raise n_episode_entities")
        # a wrong option must stay false: no later question may state its pair
        known.update(shown + crossed)
        knowledge.update(f for a, b in shown for f in (Fact(a, FORWARD, b), Fact(b, REVERSE, a)))
        if direction == "reverse":
            options, answer = [c for c, _ in shown], x
            ask, choice_facts = f" {y} {REVERSE}", lambda o: Fact(y, REVERSE, o)
        else:
            options, answer = [m for _, m in shown], y
            ask, choice_facts = f" {x} {FORWARD}", lambda o: Fact(x, FORWARD, o)
        rng.shuffle(options)
        rng.shuffle(shown)
        context = " ".join(forward_text(a, b) + " ." for a, b in shown) + ask
        questions.append(Question(
            id=f"rel-{split}-{len(questions):05d}", split=split, subtype=direction,
            context=context, choices=[" " + e for e in options], answer=options.index(answer), support=[],
            premises=[], choice_facts=[choice_facts(o) for o in options],
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
