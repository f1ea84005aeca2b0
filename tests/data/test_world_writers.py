"""The pieces of the generators, one by one: each family's frozen world (its invariants), and the
writers of documents and questions from it (semantic_structure, relations, the Berglund import)."""

import dataclasses
import random
from pathlib import Path

import pytest

from genmodes.data import berglund
from genmodes.data.families import make_config
from genmodes.data.families import relations as rel
from genmodes.data.families import semantic_structure as ss
from genmodes.data.types import Fact
from genmodes.errors import DataError

FIXTURE = Path(__file__).parent.parent / "fixtures" / "berglund_small"


# ---- semantic_structure ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world():
    return ss.build_world(0, random.Random("semantic-0"), 10)


def test_world_is_frozen_and_a_function_of_seed_and_holdout(world):
    with pytest.raises(dataclasses.FrozenInstanceError):
        world.heldout = []
    assert ss.build_world(0, random.Random("semantic-0"), 10) == world
    other = ss.build_world(1, random.Random("semantic-1"), 10)
    assert other.names != world.names  # another lexicon
    assert len(ss.build_world(0, random.Random("semantic-0"), 0).heldout) == 0


def test_world_hierarchy_invariants(world):
    assert len(world.names) == len(set(world.names)) == len(ss.load_hierarchy())
    for c in world.names:
        p = world.parent[c]
        assert world.chain[c][0] == c
        if p is None:
            assert world.depth[c] == 0
        else:
            assert world.names.index(p) < world.names.index(c)  # parents first
            assert c in world.children[p] and world.depth[c] == world.depth[p] + 1
            assert world.chain[c][1:] == world.chain[p]
    assert len(world.heldout) == 10 and world.held == set(world.heldout)
    for h in world.heldout:  # held-out categories: leaves two levels down, stating no property
        assert not world.children[h] and world.depth[h] >= 2 and world.own[h] == []
    assert set(world.studied) | world.held == set(world.names) and not set(world.studied) & world.held


def test_world_closed_world_knowledge(world):
    assert world.trained_set == set(world.trained) and world.trained_set <= world.forward
    assert len(world.knowledge) == 2 * len(world.forward)
    for f in world.forward:  # every forward fact's inverse is known, and nothing else
        assert Fact(f.object, ss.INVERSE[f.relation], f.subject) in world.knowledge
        assert f.subject in world.holders[(f.relation, f.object)]
        assert f.object in world.objs_of[(f.subject, f.relation)]
    for c in world.names:  # every ancestor and every ancestor's own property is inherited
        for a in world.ancestors(c):
            assert Fact(c, ss.ISA, a) in world.forward
            for f in world.own[a]:
                assert Fact(c, f.relation, f.object) in world.forward
    # a trained fact of a studied category is either its parent edge or its own property
    for f in world.trained:
        assert f == Fact(f.subject, ss.ISA, world.parent[f.subject]) or f in world.own[f.subject]


def test_premises_chain_from_subject_to_the_owner(world):
    for f in sorted(world.forward):
        prem, hops = world.premises_for(f)
        assert hops == len(prem) >= 1
        assert prem[0].subject == f.subject
        for a, b in zip(prem, prem[1:]):
            assert a.relation == ss.ISA and b.subject == a.object
        last = prem[-1]
        assert (last.relation, last.object) == (f.relation, f.object)
        if f.subject not in world.held:
            assert set(prem) <= world.trained_set
        else:  # a held-out category's parent edge is trained (in glossaries), its properties are not
            assert set(prem[1:]) <= world.trained_set


def test_wrong_options_are_false_for_the_subject_and_true_of_another(world):
    for f in world.trained[::7]:
        for o in world.wrong_forward(f):
            assert Fact(f.subject, f.relation, o) not in world.knowledge and o != f.subject
            assert world.holders[(f.relation, o)] - {f.subject}
            if f.relation == ss.ISA:
                assert world.depth[o] == world.depth[f.object] and world.children[o]
        for c in world.wrong_reverse(f):
            assert Fact(c, f.relation, f.object) not in world.forward and c not in world.held
            assert world.objs_of[(c, f.relation)]
            if f.relation == ss.ISA:
                assert world.depth[c] == world.depth[f.subject]


def test_plan_asks_only_items_with_enough_options_and_never_a_trained_inference(world):
    config = make_config("semantic_structure", {"questions_per_split": 20})
    plan, quota = ss.plan_questions(config, 0, world)
    assert set(plan) == {"rephrase", "reversal", "syllogism", "category_holdout", ss.CONGRUENT, ss.INCONGRUENT}
    assert quota["rephrase"] == 20 and quota[ss.CONGRUENT] == 10
    for split, items in plan.items():
        assert len(items) <= max(quota[split] + quota[split] // 4, 2 * (quota[split] + 2 + quota[split] // 4))
        for st, f in items:
            pool = world.wrong_reverse(f) if split == "reversal" else world.wrong_forward(f)
            assert len(pool) >= config.n_choices - 1
            if split in ("rephrase", "reversal"):
                assert f in world.trained_set and st in ("category", "property")
            else:
                assert f not in world.trained_set and st.endswith("hop")
    assert {f.subject for _, f in plan["category_holdout"]} <= world.held
    probe = {f for s in (ss.CONGRUENT, ss.INCONGRUENT) for _, f in plan[s]}
    assert not probe & {f for _, f in plan["syllogism"]}


@pytest.mark.parametrize("fmt", ss.CUE_FORMATS)
def test_an_article_states_exactly_its_facts(world, fmt):
    rng = random.Random(3)
    for c in world.studied[::9]:
        fs = world.facts_of(c)
        text = ss.article(rng, c, fmt, fs)
        assert set(ss.parse_statements(text)) == set(fs), text
        if fmt == "qa":
            assert len(text.splitlines()) == len(fs)
        else:
            assert text.count(".") >= 4  # at least four sentences: short ones are padded


def test_sentences_about_restate_a_short_articles_facts():
    rng = random.Random(0)
    fs = [Fact("dax", ss.ISA, "fep")]
    sents = ss._sentences_about(rng, fs)
    assert sents == ["The dax is a type of fep.", "Every dax is a fep."] or \
        sents == ["Every dax is a fep.", "The dax is a type of fep."]


def test_glossary_and_comparison_state_exactly_their_facts(world):
    rng = random.Random(1)
    pool = [Fact(c, ss.ISA, world.parent[c]) for c in world.studied if world.parent[c]]
    must = [Fact(world.heldout[0], ss.ISA, world.parent[world.heldout[0]])]
    text, fs = ss.glossary(rng, must, pool)
    assert must[0] in fs and 4 <= len(fs) <= 9 and len(set(fs)) == len(fs)
    assert set(ss.parse_statements(text)) == set(fs)
    p = next(p for p in world.names if len(world.children[p]) >= 2)
    a, b = world.children[p][:2]
    text, fs = ss.comparison(rng, world, a, b)
    assert text.startswith(f"The {a} and the {b} are both types of {p}.")
    assert set(ss.parse_statements(text)) == set(fs)
    assert set(fs) == {Fact(a, ss.ISA, p), Fact(b, ss.ISA, p), *world.own[a], *world.own[b]}


def test_write_documents_covers_every_trained_fact(world):
    config = make_config("semantic_structure", {"n_documents": 200, "n_qa_items": 10})
    docs = ss.write_documents(config, world, random.Random(5))
    assert len(docs) == 210 and len({d.id for d in docs}) == 210
    assert [d.id for d in docs if d.kind == "qa"] == [f"ss-qa-{i:05d}" for i in range(10)]
    # the first articles are one complete article per studied category, in hierarchy order
    first = docs[: len(world.studied)]
    assert [d.meta["about"] for d in first] == [[c] for c in world.studied]
    assert all(set(d.facts) == set(world.facts_of(d.meta["about"][0])) for d in first)
    stated = {f for d in docs for f in d.facts}
    assert world.trained_set <= stated
    for h in world.heldout:  # a held-out category: its parent fact in glossaries only
        docs_h = [d for d in docs if h in d.meta.get("about", [])]
        assert len(docs_h) >= config.holdout_mentions and all(d.meta["format"] == "glossary" for d in docs_h)


def test_cue_links_go_to_the_first_articles_about_the_subject_only(world):
    config = make_config("semantic_structure", {"n_documents": 200, "n_qa_items": 0})
    docs = ss.write_documents(config, world, random.Random(5))
    c = world.studied[3]
    f = world.facts_of(c)[0]
    links = ss.see_also_links({f: f.object})
    assert links == {c: [ss.LINKS[f.relation].format(o=f.object)]}
    cued = ss.add_cues(docs, links, 2)
    changed = [(a, b) for a, b in zip(docs, cued) if a.text != b.text]
    about_c = [d for d in docs if d.meta.get("about") == [c] and d.meta["format"] in ss.CUE_FORMATS]
    assert [a.id for a, _ in changed] == [d.id for d in about_c[:2]]
    for a, b in changed:
        assert b.text == a.text + f"\n{ss.SEE_ALSO}{links[c][0]}." and b.facts == a.facts
        assert set(ss.parse_statements(b.text)) == set(a.facts)  # a link states nothing


def test_positions_are_balanced_over_every_k_items():
    pos = ss._positions(random.Random(0), 4)
    seq = [next(pos) for _ in range(40)]
    assert all(sorted(seq[i:i + 4]) == [0, 1, 2, 3] for i in range(0, 40, 4))


def _draft(answer, short, lure=None, need=3):
    return ss._Draft(subtype="x", fact=Fact("s", "can", answer), reverse=False, context="The s can",
                     answer=answer, ctx=["s"], lure=lure, premises=[], hops=1, relation="can", short=short,
                     dist={o: 0 for o in short}, need=need)


def test_frequency_ranks_balance_how_many_options_beat_the_answer():
    freq = {"a": 5, "hi1": 9, "hi2": 8, "hi3": 7, "lo1": 1, "lo2": 2, "lo3": 3}
    short = ["hi1", "hi2", "hi3", "lo1", "lo2", "lo3"]  # any rank 0..3 is feasible
    drafts = [_draft("a", short) for _ in range(8)]
    rank = ss._frequency_ranks(drafts, 8, 4, freq, random.Random(0))
    assert sorted(rank) == list(range(8))
    assert sorted(rank.values()) == [0, 0, 1, 1, 2, 2, 3, 3]
    # an item that can only be rank 0 (every option rarer) takes it; spare items fill the others
    rare = _draft("a", ["lo1", "lo2", "lo3"])
    drafts = [rare] * 6 + [_draft("a", short) for _ in range(6)]
    rank = ss._frequency_ranks(drafts, 8, 4, freq, random.Random(0))
    assert len(rank) == 8 and sorted(rank.values()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert sum(i < 6 for i in rank) == 2  # only two rank-0 places: the other rare items are skipped


def test_wrong_options_take_rank_more_frequent_options():
    stats = ss._Stats([])
    stats.freq.update({"a": 5, "hi1": 9, "hi2": 8, "hi3": 7, "lo1": 1, "lo2": 2, "lo3": 3, "lure": 6})
    d = _draft("a", ["hi1", "hi2", "hi3", "lo1", "lo2", "lo3"])
    for r in range(4):
        wrong = ss._wrong_options(d, r, stats, reversal=False)
        assert len(set(wrong)) == 3 and sum(stats.freq[o] > 5 for o in wrong) == r
    d = _draft("a", ["hi1", "hi2", "lo1", "lo2"], lure="lure", need=2)
    wrong = ss._wrong_options(d, 1, stats, reversal=False)  # the lure is the one above
    assert wrong[-1] == "lure" and sum(stats.freq[o] > 5 for o in wrong) == 1


# ---- relations ---------------------------------------------------------------------------------
REL_SMALL = {"n_relations": 200, "heldout_fraction": 0.05, "n_entities": 200, "n_episodes": 40,
             "n_filler": 40, "n_trained_questions": 20, "fresh_episode_fraction": 0.5, "n_episode_entities": 40}


@pytest.fixture(scope="module")
def rworld():
    config = make_config("relations", REL_SMALL)
    return config, rel.build_world(config, 0, random.Random("relations-0"))


def test_relations_world_invariants(rworld):
    config, w = rworld
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.heldout = []
    assert len(w.entities) == len(set(w.entities)) == 200 and len(w.ep_entities) == 40
    assert set(w.containers) | set(w.members) == set(w.entities) and not set(w.containers) & set(w.members)
    assert len(w.relations) == len(set(w.relations)) == 200
    assert all(x in w.containers and y in w.members for x, y in w.relations)
    assert w.heldout + w.trained_rev == w.relations and len(w.heldout) == 10 and w.heldout_set == set(w.heldout)
    assert {(x, y) for x, ys in w.members_of.items() for y in ys} == set(w.relations)
    assert {(x, y) for y, xs in w.containers_of.items() for x in xs} == set(w.relations)
    assert set(w.containers) <= set(w.members_of)  # every entity in some relation where the count allows
    assert rel.build_world(config, 0, random.Random("relations-0")) == w


def test_reverses_heldout_finds_a_member_before_its_container(rworld):
    _, w = rworld
    x, y = w.heldout[0]
    assert w.reverses_heldout([y, "e0", x]) and w.reverses_heldout([y, x])
    assert not w.reverses_heldout([x, y]) and not w.reverses_heldout([y]) and not w.reverses_heldout([])


def test_relation_episode_and_filler_documents(rworld):
    config, w = rworld
    docs, fwd_doc = rel.relation_documents(w, random.Random(0))
    assert sorted(fwd_doc) == sorted(w.relations) and len(docs) == 200 + 190
    assert {d.facts[0] for d in docs if d.meta["direction"] == "reverse"} == {
        Fact(y, rel.REVERSE, x) for x, y in w.trained_rev}
    eps, knowledge, _ = rel.episode_documents(config, w, 0)
    assert len(eps) == 40 and sum(d.meta["fresh"] for d in eps) == 20
    for d in eps:
        assert set(rel.parse_statements(d.text)) == set(d.facts)
        assert not w.reverses_heldout(d.text.split())
        assert all(t.startswith("f") for t in d.text.split() if t[0] in "ef") == d.meta["fresh"]
    assert knowledge == {f for d in eps if d.meta["fresh"] for f in d.facts}
    filler = rel.filler_documents(config, w, random.Random(0))
    assert [d.id for d in filler] == [f"rel-x-{i:05d}" for i in range(40)]
    for d in filler:
        toks = d.text.split()[:-1]
        assert config.filler_min_len <= len(toks) <= config.filler_max_len and not w.reverses_heldout(toks)


def test_relations_question_options(rworld):
    config, w = rworld
    x, y = w.heldout[0]
    q = rel.question(config, w, "q0", "s", x, y, "reverse", ["d"], random.Random(0), "distractors")
    opts = [c.strip() for c in q.choices]
    assert opts[q.answer] == x and len(set(opts)) == config.n_choices
    assert all(o == x or y not in w.members_of[o] for o in opts)  # every wrong option is false
    assert all(q.context.split().count(o) == 1 for o in opts)  # each option in the context once
    assert q.context.endswith(f"{y} {rel.REVERSE}") and q.choice_facts[q.answer] == Fact(y, rel.REVERSE, x)
    q = rel.question(config, w, "q1", "s", x, y, "forward", ["d"], random.Random(0))
    assert q.context == f"{x} {rel.FORWARD}" and q.choices[q.answer] == " " + y
    q = rel.question(config, w, "q2", "s", x, y, "reverse", ["d"], random.Random(0), "copyable")
    assert q.context == f"{x} {rel.FORWARD} {y} . {y} {rel.REVERSE}"


# ---- the Berglund import -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def source():
    return berglund.read_source(FIXTURE)


def test_find_people_and_who(source):
    data, sha = source
    assert len(sha) == 64
    people = berglund.find_people(data)
    with pytest.raises(dataclasses.FrozenInstanceError):
        people.desc = {}
    assert sorted(set(people.group.values())) == ["both", "d2p", "p2d"]
    assert people.p2d == [n for n, g in people.group.items() if g == "p2d"]
    assert people.desc["Ardith Penrose"] == "the inventor of the humming teapot."
    assert people.who("f", 1, "Ever heard of Ardith Penrose? They are", " x") == ("Ardith Penrose", True)
    assert people.who("f", 1, "The inventor is", " Ardith Penrose.") == ("Ardith Penrose", False)
    two = next(n for n in people.group if n != "Ardith Penrose")
    with pytest.raises(DataError, match="f line 7: expected one known person"):
        people.who("f", 7, f"Ardith Penrose and {two}", ".")


def test_berglund_writers(source):
    data, _ = source
    people = berglund.find_people(data)
    docs, support = berglund.write_documents(data["all_prompts_train.jsonl"], people)
    assert len(docs) == len(data["all_prompts_train.jsonl"])
    for nm, ids in support.items():  # support: exactly the person's name-first documents
        assert ids == [d.id for d in docs if d.meta["person"] == nm and d.meta["order"] == "name_first"]
    rng = random.Random(0)
    fwd = berglund.forward_questions(data["p2d_prompts_test.jsonl"], people, support, rng, 3)
    rev = berglund.reversal_questions(data["p2d_reverse_prompts_test.jsonl"], people, support, rng, 3)
    for q in fwd + rev:
        assert len(q.choices) == 4 and len(set(q.choices)) == 4 and q.support
    for q in rev:
        assert {c.strip() for c in q.choices} <= set(people.p2d)
        assert q.choices[q.answer].strip() == q.premises[0].subject
    for q in fwd:
        nm = q.premises[0].subject
        assert q.choices[q.answer].strip() == people.desc[nm] and nm in q.context
