"""Relations family [P2]: held-out reversals never occur in any training sequence."""

import json
import re

import pytest

from genmodes.data.audit import audit_dataset
from genmodes.data.families import get_family, make_dataset
from genmodes.data.families.relations import FORWARD, REVERSE, parse_statements
from genmodes.data.types import Fact
from genmodes.errors import DataError

SMALL = {"n_relations": 200, "heldout_fraction": 0.05, "n_entities": 200, "n_episodes": 50,
         "n_filler": 50, "n_trained_questions": 30}


@pytest.fixture(scope="module")
def ds():
    return make_dataset("relations", seed=0)


@pytest.fixture(scope="module")
def small():
    return make_dataset("relations", seed=0, overrides=SMALL)


def dump(d):
    return json.dumps([[x.to_json() for x in d.documents], [q.to_json() for q in d.questions],
                       [f.to_list() for f in d.knowledge], d.meta], sort_keys=True)


def test_same_seed_same_output_and_different_seed_differs():
    assert dump(make_dataset("relations", 2, SMALL)) == dump(make_dataset("relations", 2, SMALL))
    assert dump(make_dataset("relations", 2, SMALL)) != dump(make_dataset("relations", 3, SMALL))


def test_default_sizes(ds):
    kinds = {}
    for d in ds.documents:
        kinds[d.kind] = kinds.get(d.kind, 0) + 1
    assert kinds == {"relation": 20_000 + 19_800, "episode": 5_000, "filler": 5_000}
    assert {s: len(ds.split(s)) for s in ds.splits} == {
        "trained": 200, "heldout_reversal": 200, "heldout_reversal_in_context": 200}
    assert all(ds.chance(s) == pytest.approx(0.25) for s in ds.splits)


def test_small_sizes(small):
    assert {s: len(small.split(s)) for s in small.splits} == {
        "trained": 30, "heldout_reversal": 10, "heldout_reversal_in_context": 10}


@pytest.mark.parametrize("which", ["small", "ds"])
def test_audit_passes(which, request):
    assert audit_dataset(request.getfixturevalue(which)).violations == []


@pytest.mark.parametrize("which", ["small", "ds"])
def test_heldout_reversals_never_in_any_training_sequence(which, request):
    d = request.getfixturevalue(which)
    held = [tuple(p) for p in d.meta["heldout_relations"]]
    assert len(held) == round(d.config["heldout_fraction"] * d.config["n_relations"])
    # as statements
    joined = "\n".join(t.text for t in d.documents)
    for x, y in held:
        assert f"{y} {REVERSE} {x}" not in joined
    stated = {f for t in d.documents for f in t.facts}
    assert not any(Fact(y, REVERSE, x) in stated for x, y in held)
    # nor the two entities in reversed order anywhere in one sequence
    later = {}
    for x, y in held:
        later.setdefault(y, set()).add(x)
    for t in d.documents:
        toks = t.text.split()
        for i, w in enumerate(toks):
            assert not (w in later and later[w] & set(toks[i + 1:])), t.id
    # and every forward direction is trained
    assert all(Fact(x, FORWARD, y) in stated for x, y in held)


def test_episodes_pair_forward_and_reverse_of_trained_reversals_only(ds):
    held = {tuple(p) for p in ds.meta["heldout_relations"]}
    for d in ds.documents:
        if d.kind == "episode":
            m = re.fullmatch(r"(e\d+) contains (e\d+) \. (e\d+) is a subset of (e\d+) \.", d.text)
            assert m and m[1] == m[4] and m[2] == m[3]
            assert (m[1], m[2]) not in held


EPISODES = {**SMALL, "n_episodes": 40, "episode_facts": 3, "fresh_episode_fraction": 0.5, "n_episode_entities": 100}


def test_multi_fact_and_fresh_episodes():
    d = make_dataset("relations", 0, EPISODES)
    plain = make_dataset("relations", 0, SMALL)
    trained = {(f.subject, f.object) for x in plain.documents if x.kind == "relation" for f in x.facts
               if f.relation == FORWARD and x.meta["direction"] == "forward"}
    reverse_trained = {(f.object, f.subject) for x in plain.documents if x.kind == "relation"
                       for f in x.facts if f.relation == REVERSE}
    eps = [x for x in d.documents if x.kind == "episode"]
    assert sum(x.meta["fresh"] for x in eps) == 20
    for x in eps:
        fwd = re.findall(r"(\w+) contains (\w+) \.", x.text)
        rev = re.findall(r"(\w+) is a subset of (\w+) \.", x.text)
        # three forward facts, then the reverse of each (in some order), each member once
        assert len(fwd) == 3 and sorted((b, a) for a, b in rev) == sorted(fwd)
        assert x.text.index(" is a subset of ") > x.text.rindex(" contains ")
        assert len({b for _, b in fwd}) == 3
        if x.meta["fresh"]:  # episode-only entities, never in another kind of document
            assert all(a.startswith("f") and b.startswith("f") for a, b in fwd)
        else:
            assert set(fwd) <= reverse_trained
    ents = {e for x in d.documents if x.kind != "episode" for e in x.text.split() if e.startswith("f")}
    assert not ents
    # the rest of the dataset does not depend on the episode settings
    assert [x.text for x in d.documents if x.kind == "relation"] == \
        [x.text for x in plain.documents if x.kind == "relation"]
    assert [q.to_json() for q in d.questions] == [q.to_json() for q in plain.questions]
    assert trained
    assert audit_dataset(d).violations == []
    for x in d.documents:
        assert sorted(parse_statements(x.text)) == x.facts, x.id


def test_questions(ds):
    docs = ds.doc_index()
    held = {tuple(p) for p in ds.meta["heldout_relations"]}
    knowledge = set(ds.knowledge)
    for q in ds.split("heldout_reversal") + ds.split("heldout_reversal_in_context"):
        x = q.choices[q.answer].strip()
        y = q.context.split()[-5]
        assert (x, y) in held and q.context.endswith(f"{y} {REVERSE}")
        assert docs[q.support[0]].facts == [Fact(x, FORWARD, y)]
        if q.split.endswith("in_context"):
            shown = re.findall(r"(e\d+) contains (e\d+) \.", q.context)
            # the fact, and one true fact about each wrong option: every option in the context once
            assert (x, y) in shown and len(shown) == len(q.choices)
            assert sorted(a for a, _ in shown) == sorted(c.strip() for c in q.choices)
            assert all(Fact(a, FORWARD, b) in knowledge for a, b in shown)
            assert [b for _, b in shown].count(y) == 1
        else:
            assert q.context == f"{y} {REVERSE}"
    stated = {f for d in ds.documents for f in d.facts}
    assert all(q.choice_facts[q.answer] in stated for q in ds.split("trained"))
    assert {q.subtype for q in ds.split("trained")} == {"forward", "reverse"}


def copy_baseline(q):
    """Pick the first option that occurs in the question's context (chance if none does)."""
    toks = q.context.split()
    inside = [i for i, c in enumerate(q.choices) if c.strip() in toks]
    return 1.0 if inside[:1] == [q.answer] else (1 / len(q.choices) if not inside else 0.0)


def test_copying_an_option_from_the_context_is_chance_unless_the_split_says_copyable():
    d = make_dataset("relations", 0, {**SMALL, "heldout_fraction": 0.5, "copyable_split": True})
    qs = d.split("heldout_reversal_in_context")
    assert len(qs) == 100
    # every option is in the context, so copying gets exactly the first-listed option: ~chance
    assert sum(map(copy_baseline, qs)) / len(qs) <= 0.25 + 0.10
    cp = d.split("heldout_reversal_in_context_copyable")
    assert sum(map(copy_baseline, cp)) / len(cp) == 1.0
    plain = make_dataset("relations", 0, {**SMALL, "heldout_fraction": 0.5})
    assert [q.to_json() for q in plain.questions] == [q.to_json() for q in d.questions if "copyable" not in q.split]


def test_entities_are_distinct_synthetic_tokens(ds):
    ents = ds.meta["entities"]
    assert len(set(ents)) == len(ents) == 10_000
    assert all(re.fullmatch(r"e\d{5}", e) for e in ents)


def test_parse_and_oracle_augmentations(small):
    for d in small.documents:
        assert sorted(parse_statements(d.text)) == d.facts, d.id
    aug = get_family("relations").oracle_augmentations(small)
    answers = {q.choice_facts[q.answer] for q in small.split("heldout_reversal")}
    assert {f for d in aug for f in d.facts} == answers
    assert all(parse_statements(d.text) == d.facts for d in aug)


def test_bad_config_is_one_clear_error():
    with pytest.raises(DataError, match="n_relations"):
        make_dataset("relations", 0, {"n_relations": 1000, "n_entities": 20})


@pytest.mark.parametrize("overrides", [
    {"n_relations": 12, "n_entities": 12, "n_filler": 30, "heldout_fraction": 0.25},
    {"n_relations": 500, "n_entities": 20},
])
def test_impossible_sizes_fail_with_a_clear_error_instead_of_hanging(overrides):
    with pytest.raises(DataError, match="relations"):
        make_dataset("relations", 0, overrides)


def test_shortcut_baselines_at_chance_on_the_in_context_split_and_copyable_one_exempt_by_name():
    from genmodes.data.baselines import evaluate

    d = make_dataset("relations", 0, {**SMALL, "heldout_fraction": 0.25, "copyable_split": True,
                                      "episode_facts": 4, "episode_facts_min": 1, "fresh_episode_fraction": 0.5,
                                      "n_episode_entities": 40})
    rows = {(r.split, r.method): r for r in evaluate(d)}
    ic = [r for (s, _), r in rows.items() if s == "heldout_reversal_in_context"]
    assert ic and not any(r.offence for r in ic)
    assert rows[("heldout_reversal_in_context", "overlap")].accuracy <= 0.25 + 0.10
    # the copyable variant is what its name says: overlap (copying) answers it, by declared design
    cp = rows[("heldout_reversal_in_context_copyable", "overlap")]
    assert cp.accuracy == 1.0 and cp.exempt and not cp.offence
    assert audit_dataset(d).violations == []


def test_episode_queries_keep_the_other_facts_as_distractors():
    d = make_dataset("relations", 0, {**EPISODES, "episode_queries": 1})
    full = make_dataset("relations", 0, EPISODES)
    for x, y in zip([x for x in d.documents if x.kind == "episode"],
                    [x for x in full.documents if x.kind == "episode"]):
        fwd = re.findall(r"(\w+) contains (\w+) \.", x.text)
        rev = re.findall(r"(\w+) is a subset of (\w+) \.", x.text)
        assert len(fwd) == 3 and len(rev) == 1 and (rev[0][1], rev[0][0]) in fwd
        # the same episode facts as with every reverse queried; the query is the first of those reverses
        assert x.text.split(" is a subset of ")[0] == y.text.split(" is a subset of ")[0]
        assert re.findall(r"contains (\w+) \.", x.text) == re.findall(r"contains (\w+) \.", y.text)
        assert sorted(parse_statements(x.text)) == x.facts  # an unqueried reverse is not stated
    assert audit_dataset(d).violations == []


def test_episode_split_reads_new_pairs_of_episode_entities_from_the_context():
    d = make_dataset("relations", 0, {**EPISODES, "episode_split": True})
    plain = make_dataset("relations", 0, EPISODES)
    qs = [q for q in d.questions if q.split == "episode_in_context"]
    assert len(qs) == len([q for q in d.questions if q.split == "heldout_reversal"])
    stated = {(f.subject, f.object) for x in d.documents for f in x.facts if f.relation == FORWARD}
    know = set(d.knowledge)
    for q in qs:
        member = q.context.split()[-5]
        facts = re.findall(r"(\w+) contains (\w+) \.", q.context)
        answer = q.choices[q.answer].strip()
        assert (answer, member) in facts and (answer, member) not in stated  # only the context has it
        assert sorted(a for a, _ in facts) == sorted(c.strip() for c in q.choices)  # each option once
        assert [b for _, b in facts].count(member) == 1
        assert all(c.strip().startswith("f") for c in q.choices) and not q.support
        assert [f in know for f in q.choice_facts] == [i == q.answer for i in range(len(q.choices))]
    # the other splits and every document are those of the dataset without the split
    assert [q.to_json() for q in d.questions if q.split != "episode_in_context"] == \
        [q.to_json() for q in plain.questions]
    assert [x.to_json() for x in d.documents] == [x.to_json() for x in plain.documents]
    assert audit_dataset(d).violations == []
    with pytest.raises(DataError, match="episode_split"):
        make_dataset("relations", 0, {**SMALL, "episode_split": True})


def test_fresh_episodes_over_the_relations_own_entities_are_stories_outside_knowledge():
    d = make_dataset("relations", 0, {**EPISODES, "fresh_entities": "both"})
    plain = make_dataset("relations", 0, EPISODES)
    true = {(f.subject, f.object) for f in d.knowledge if f.relation == FORWARD}
    held_members = {y for _, y in d.meta["heldout_relations"]}
    stories = [x for x in d.documents if x.meta.get("story")]
    assert stories and all(x.meta["fresh"] for x in stories)
    assert len(stories) < sum(x.meta.get("fresh", False) for x in d.documents)  # half of them
    for x in stories:
        fwd = re.findall(r"(\w+) contains (\w+) \.", x.text)
        assert all(a.startswith("e") and b.startswith("e") for a, b in fwd)
        assert not set(fwd) & true and not {b for _, b in fwd} & held_members
    assert [q.to_json() for q in d.questions] == [q.to_json() for q in plain.questions]
    assert audit_dataset(d).violations == []
    with pytest.raises(DataError, match="episode_split"):
        make_dataset("relations", 0, {**EPISODES, "fresh_entities": "relation", "episode_split": True})


def test_the_calibration_ladder_is_the_in_context_reading_splits_the_dataset_has():
    base = dict(n_relations=16, n_entities=32, heldout_fraction=0.5, n_episodes=8, n_filler=0, n_trained_questions=4,
                fresh_episode_fraction=1.0, n_episode_entities=40)
    ladder = lambda **on: make_dataset("relations", 0, {**base, **on}).meta.get("calibration_splits")  # noqa: E731
    assert ladder() is None
    assert ladder(lookup_split=True) == {"lookup_in_context": 0.95}
    assert ladder(episode_split=True) == {"episode_in_context": 0.95}
    both = make_dataset("relations", 0, {**base, "lookup_split": True, "episode_split": True})
    assert list(both.meta["calibration_splits"]) == ["lookup_in_context", "episode_in_context"]
    assert set(both.meta["calibration_splits"]) <= set(both.splits)


PRACTICE = {**SMALL, "n_episodes": 60, "episode_facts": 3, "fresh_episode_fraction": 1.0, "n_episode_entities": 60,
            "episode_forward_queries": 0.5, "n_repeats": 80, "repeat_relation_entities": 0.5}


def test_practice_over_the_relations_own_entities_copies_no_member_when_asked():
    plain = make_dataset("relations", 0, PRACTICE)
    d = make_dataset("relations", 0, {**PRACTICE, "story_share": 0.4, "story_forward_queries": False,
                                      "repeat_relation_pool": "containers"})
    containers = {f.subject for f in d.knowledge if f.relation == FORWARD}
    own = [x for x in d.documents if x.meta.get("relation_entities")]
    assert own and all(set(x.text.split()) <= containers for x in own)
    plain_own = [x for x in plain.documents if x.meta.get("relation_entities")]
    assert any(not set(x.text.split()) <= containers for x in plain_own)  # the default draws members too
    stories = [x for x in d.documents if x.meta.get("story")]
    fresh = [x for x in d.documents if x.meta.get("fresh") and x.kind == "episode"]
    assert 0.2 < len(stories) / len(fresh) < 0.6
    # a story asks reverse queries only (its members are never the word read); other practice both ways
    # (every fact is asked: a forward query states its fact a second time)
    asked_forward = lambda x: x.text.count(FORWARD) > x.text.count(REVERSE)  # noqa: E731
    assert not any(asked_forward(x) for x in stories)
    assert any(asked_forward(x) for x in fresh if not x.meta.get("story"))
    assert audit_dataset(d).violations == []
    # the defaults leave the dataset as it was, and its config as it was dumped
    assert dump(make_dataset("relations", 0, {**PRACTICE, "story_share": None, "story_forward_queries": True,
                                              "repeat_relation_pool": "both"})) == dump(plain)
    assert "story_share" not in plain.config


def test_story_split_reads_over_the_relations_own_entities_where_memory_cannot_answer():
    d = make_dataset("relations", 0, {**PRACTICE, "story_share": 0.4, "story_split": True, "lookup_split": True,
                                      "episode_split": True})
    assert list(d.meta["calibration_splits"]) == ["lookup_in_context", "episode_in_context", "story_in_context"]
    true = {(f.subject, f.object) for f in d.knowledge if f.relation == FORWARD}
    relations = {(x, y) for x, y in re.findall(r"(\w+) contains (\w+) \.", " ".join(
        x.text for x in d.documents if x.kind != "episode"))}
    held_members = {y for _, y in d.meta["heldout_relations"]}
    qs = [q for q in d.questions if q.split == "story_in_context"]
    assert len(qs) == len(d.meta["heldout_relations"])
    for q in qs:
        shown = re.findall(r"(\w+) contains (\w+) \.", q.context)
        member = q.context.split()[-len(REVERSE.split()) - 1]
        options = [c.strip() for c in q.choices]
        assert sorted(options) == sorted(c for c, _ in shown) and (options[q.answer], member) in shown
        assert not set(shown) & relations and member not in held_members  # no relation, no held-out member
        assert not any((c, member) in relations for c in options)  # memory cannot pick any option
        assert all((c, member) not in true for i, c in enumerate(options) if i != q.answer)
    assert audit_dataset(d).violations == []
    with pytest.raises(DataError, match="story_split"):
        make_dataset("relations", 0, {**EPISODES, "story_split": True})
