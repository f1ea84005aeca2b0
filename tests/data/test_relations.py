"""Relations family [P2]: held-out reversals never occur in any training sequence."""

import json
import re
import time

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
    t = time.perf_counter()
    d = make_dataset("relations", seed=0)
    assert time.perf_counter() - t < 10
    return d


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


def test_questions(ds):
    docs = ds.doc_index()
    held = {tuple(p) for p in ds.meta["heldout_relations"]}
    for q in ds.split("heldout_reversal") + ds.split("heldout_reversal_in_context"):
        x = q.choices[q.answer].strip()
        y = q.context.split()[-5]
        assert (x, y) in held and q.context.endswith(f"{y} {REVERSE}")
        assert docs[q.support[0]].facts == [Fact(x, FORWARD, y)]
        if q.split.endswith("in_context"):
            assert q.context == f"{x} {FORWARD} {y} . {y} {REVERSE}"
        else:
            assert q.context == f"{y} {REVERSE}"
    stated = {f for d in ds.documents for f in d.facts}
    assert all(q.choice_facts[q.answer] in stated for q in ds.split("trained"))
    assert {q.subtype for q in ds.split("trained")} == {"forward", "reverse"}


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
