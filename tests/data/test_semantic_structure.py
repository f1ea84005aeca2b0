"""Semantic structure family [P1]: validity of every split, leaks, hard distractors, category holdout."""

import json
import re

import pytest

from genmodes.data.audit import audit_dataset
from genmodes.data.baselines import MARGIN, Baselines, credit, evaluate
from genmodes.data.families import get_family, make_config, make_dataset
from genmodes.data.families.semantic_structure import (CONGRUENT, INCONGRUENT, ISA, SEE_ALSO, load_hierarchy,
                                                       parse_statements)
from genmodes.data.types import Fact
from genmodes.errors import DataError

SMALL = {"n_documents": 300, "n_qa_items": 20, "questions_per_split": 40}
PAPER_CPU = {"n_documents": 400, "n_qa_items": 50, "questions_per_split": 40}  # configs/paper_cpu.yaml


@pytest.fixture(scope="module")
def ds():
    return make_dataset("semantic_structure", seed=0)


def test_hierarchy_resource_is_about_110_categories_with_1_to_6_properties():
    cats = load_hierarchy()
    assert 100 <= len(cats) <= 130
    assert all(1 <= len(c["properties"]) <= 6 for c in cats)
    assert {c["name"] for c in cats if c["parent"] is None} == {"animal", "object"}


def test_same_seed_same_output_and_different_seed_differs():
    a = make_dataset("semantic_structure", 3, SMALL)
    b = make_dataset("semantic_structure", 3, SMALL)
    c = make_dataset("semantic_structure", 4, SMALL)
    dump = lambda d: json.dumps([[x.to_json() for x in d.documents], [q.to_json() for q in d.questions],  # noqa: E731
                                 [f.to_list() for f in d.knowledge], d.meta], sort_keys=True)
    assert dump(a) == dump(b)
    assert dump(a) != dump(c)


def test_default_sizes_and_chance(ds):
    sizes = {s: len(ds.split(s)) for s in ds.splits}
    assert sizes["rephrase"] == sizes["reversal"] == sizes["syllogism"] == 300
    assert 30 <= sizes["category_holdout"] <= 300
    assert sizes[CONGRUENT] == sizes[INCONGRUENT] == 150
    assert 2200 <= sum(d.kind == "article" for d in ds.documents) <= 2300
    assert sum(d.kind == "qa" for d in ds.documents) == 300
    for s in ds.splits:
        assert ds.chance(s) == pytest.approx(0.25)
    assert ds.meta["recall_splits"] == ["rephrase"]
    assert ds.meta["probe_splits"] == [CONGRUENT, INCONGRUENT]
    assert set(ds.meta["shortcut_exempt"]) == {"reversal", CONGRUENT, INCONGRUENT}


def test_small_config_sizes():
    d = make_dataset("semantic_structure", 1, SMALL)
    assert len(d.documents) == 320
    assert all(len(d.split(s)) == 40 for s in ("rephrase", "reversal", "syllogism", "category_holdout"))
    assert len(d.split(CONGRUENT)) == len(d.split(INCONGRUENT)) == 20
    d = make_dataset("semantic_structure", 1, SMALL | {"probe_questions_per_split": 0})
    assert not d.split(CONGRUENT) and not d.split(INCONGRUENT)
    assert not any(SEE_ALSO in doc.text for doc in d.documents)


def test_audit_passes(ds):
    rep = audit_dataset(ds)
    assert rep.violations == []


@pytest.mark.parametrize("seed", [0, 1])
def test_audit_passes_at_paper_cpu_size(seed):
    rep = audit_dataset(make_dataset("semantic_structure", seed, PAPER_CPU))
    assert rep.violations == []


def _most_general(ds):
    """Accuracy of "pick the least deep category" on each split's "is a type of" items: the
    shortcut of answers near the root among mid-level distractors."""
    depth = {}
    for f in ds.knowledge:
        if f.relation == ISA:
            depth[f.subject] = depth.get(f.subject, 0) + 1
    out = {}
    for split in ds.splits:
        qs = [q for q in ds.split(split) if q.choice_facts[q.answer].relation == ISA]
        if qs:
            scores = [[-depth.get(c.strip(" ."), 0) for c in q.choices] for q in qs]
            out[split] = (sum(credit(s, q.answer) for s, q in zip(scores, qs)) / len(qs), len(qs))
    return out


@pytest.mark.parametrize("size", ["default", "paper_cpu"])
def test_no_shortcut_beats_chance_by_10_points_on_held_out_splits(ds, size):
    """Issue 8 part 4: no baseline over the training text (co-occurrence, frequency, bigram,
    length, position, answer form) nor "most general" beats chance + 10 on a held-out split,
    significance aside; the exemptions are the reversal's co-occurrence and the congruent probe's."""
    d = ds if size == "default" else make_dataset("semantic_structure", 0, PAPER_CPU)
    probes = set(d.meta["probe_splits"])
    for r in evaluate(d):
        if r.held_out and r.exempt is None and r.split not in probes:
            assert r.accuracy <= r.chance + MARGIN, (r.split, r.method, r.accuracy)
        if r.split in probes and r.method != "cooccurrence" and size == "default":
            # the incongruent probe's lure is its most familiar option, so "least familiar" rules one
            # option out of four: one in three, its exemption says, and no more
            limit = 1 / 3 if (r.exempt and r.method == "familiarity") else r.chance
            assert r.accuracy <= limit + MARGIN, (r.split, r.method, r.accuracy)
    for split, (acc, n) in _most_general(d).items():
        assert acc == pytest.approx(0.25), (split, n)  # every option at the answer's depth: all tie
    # what the exemption covers is reported, not hidden: an associative learner passes reversals
    rev = next(r for r in evaluate(d, ["cooccurrence"]) if r.split == "reversal")
    assert rev.exempt and rev.accuracy > 0.5


def test_wrong_options_co_occur_about_as_often_as_the_answer(ds):
    b = Baselines(ds)
    for split in ("syllogism", "category_holdout"):
        close = total = 0
        for q in ds.split(split):
            sc = b.score("cooccurrence", q)
            a = sc[q.answer]
            for i, x in enumerate(sc):
                if i != q.answer:
                    total += 1
                    close += abs(x - a) <= max(1, a / 10)
        assert close >= 0.85 * total, (split, close, total)


def test_is_a_type_of_options_share_the_answers_depth_and_no_option_is_a_context_word(ds):
    kn = set(ds.knowledge)
    depth = {}
    for f in kn:
        if f.relation == ISA:
            depth[f.subject] = depth.get(f.subject, 0) + 1
    n_isa = 0
    for q in ds.questions:
        opts = [c.strip(" .") for c in q.choices]
        ctx = set(re.findall(r"[a-z]+", q.context.lower()))
        assert not ctx & set(opts), q.id
        if q.meta["relation"] in (ISA, "has type"):
            n_isa += 1
            assert len({depth.get(o, 0) for o in opts}) == 1, (q.id, opts)
    assert n_isa > 100


def test_answer_positions_balanced(ds):
    for split in ds.splits:
        counts = [sum(q.answer == i for q in ds.split(split)) for i in range(4)]
        assert max(counts) - min(counts) <= 1, (split, counts)


def test_cooccurrence_probe_congruent_favours_answer_incongruent_a_lure(ds):
    """Every congruent item: the answer co-occurs with the question's words most; every incongruent
    item: the cue (a wrong option) does, the answer less. Same inference kinds in both splits."""
    b = Baselines(ds)
    kn = set(ds.knowledge)
    stated = {f for d in ds.documents for f in d.facts}
    linked = {}  # article subject -> words of its See-also lines, which state no fact
    for d in ds.documents:
        links = [line for line in d.text.split("\n") if line.startswith(SEE_ALSO)]
        if links:
            assert parse_statements("\n".join(links)) == [] and len(d.meta["about"]) == 1, d.id
            linked.setdefault(d.meta["about"][0], set()).update(re.findall(r"[a-z]+", " ".join(links)))
    for split in (CONGRUENT, INCONGRUENT):
        for q in ds.split(split):
            sc = b.score("cooccurrence", q)
            cue = q.choices.index(f" {q.meta['cue']}.")
            assert [i for i, x in enumerate(sc) if x == max(sc)] == [cue], q.id
            assert (cue == q.answer) == (split == CONGRUENT), q.id
            ans = q.choice_facts[q.answer]
            assert ans in kn and ans not in stated and q.meta["hops"] >= 2
            assert q.meta["cue"] in linked[ans.subject], q.id
    sub = {s: {q.subtype.split("_")[0] for q in ds.split(s)} for s in (CONGRUENT, INCONGRUENT)}
    assert sub[CONGRUENT] == sub[INCONGRUENT]
    hops = {s: sum(q.meta["hops"] for q in ds.split(s)) / len(ds.split(s)) for s in (CONGRUENT, INCONGRUENT)}
    assert abs(hops[CONGRUENT] - hops[INCONGRUENT]) < 0.5
    # probe facts are not syllogism facts
    syl = {q.choice_facts[q.answer] for q in ds.split("syllogism")}
    assert not syl & {q.choice_facts[q.answer] for s in (CONGRUENT, INCONGRUENT) for q in ds.split(s)}


def test_exactly_one_choice_true_and_distractors_hard(ds):
    kn = set(ds.knowledge)
    holders = {}
    for f in kn:
        holders.setdefault((f.relation, f.object), set()).add(f.subject)
    for q in ds.questions:
        assert [i for i, f in enumerate(q.choice_facts) if f in kn] == [q.answer], q.id
        assert q.meta["hard_distractors"] is True
        for i, f in enumerate(q.choice_facts):
            if i != q.answer:
                assert holders[(f.relation, f.object)] - {f.subject}, (q.id, f)
        word = q.choices[q.answer].strip(" .")
        assert word in (q.choice_facts[q.answer].subject, q.choice_facts[q.answer].object)


def test_closed_world_has_every_inherited_property(ds):
    """A wrong option must be truly false: no category may inherit it."""
    kn = set(ds.knowledge)
    lex = ds.meta["lexicon"]
    cats = {c["name"]: c for c in load_hierarchy()}
    held = set(ds.meta["heldout_categories"])
    for name, c in cats.items():
        w = lex["categories"][name]
        a = c["parent"]
        while a is not None:
            assert Fact(w, ISA, lex["categories"][a]) in kn
            for rel, o in cats[a]["properties"]:
                assert Fact(w, rel, lex["properties"][o]) in kn
            a = cats[a]["parent"]
        for rel, o in c["properties"]:
            assert (Fact(w, rel, lex["properties"].get(o, "")) in kn) == (w not in held)


def test_no_heldout_answer_in_training(ds):
    texts = [" ".join(d.text.lower().split()) for d in ds.documents]
    stated = {f for d in ds.documents for f in d.facts}
    for q in ds.questions:
        if q.split == "rephrase":
            continue
        ans = " ".join(q.answer_text.lower().split())
        assert not any(ans in t for t in texts), q.id
        assert q.choice_facts[q.answer] not in stated, q.id


def test_category_holdout_only_parent_fact_trained(ds):
    held = ds.meta["heldout_categories"]
    assert len(held) == 10
    kn = set(ds.knowledge)
    for h in held:
        parent = [f.object for f in kn if f.subject == h and f.relation == ISA]
        mentions = [d for d in ds.documents if re.search(rf"\b{h}\b", d.text)]
        assert len(mentions) >= 5
        for d in mentions:
            facts = [f for f in d.facts if h in (f.subject, f.object)]
            assert len(facts) == 1 and facts[0].relation == ISA and facts[0].subject == h, d.id
            assert facts[0].object in parent
            # every statement naming h is that one fact (a QA item may ask "What is the h?")
            for sent in re.split(r"(?<=[.?:])\s+|\n", d.text):
                if re.search(rf"\b{h}\b", sent) and not sent.endswith("?"):
                    assert parse_statements(sent) == [facts[0]], sent
    qs = ds.split("category_holdout")
    assert {q.choice_facts[q.answer].subject for q in qs} == set(held)
    # at the default size every inherited fact of a held-out category is asked, but "is a type of
    # <root>" (a root has no same-depth alternative to offer as a distractor)
    stated = {f for d in ds.documents for f in d.facts}
    roots = {c["name"] for c in load_hierarchy() if c["parent"] is None}
    root_words = {ds.meta["lexicon"]["categories"][r] for r in roots}
    inherited = {f for f in kn if f.subject in held and not (f.relation == ISA and f.object in root_words)} - stated
    assert {q.choice_facts[q.answer] for q in qs} == inherited


def test_syllogisms_have_two_or_more_hops_with_premise_chains(ds):
    for q in ds.split("syllogism") + ds.split("category_holdout") + ds.split(CONGRUENT) + ds.split(INCONGRUENT):
        hops = q.meta["hops"]
        assert hops >= 2 and len(q.premises) == hops and q.subtype.endswith(f"_{hops}hop")
        ans = q.choice_facts[q.answer]
        isa = [p for p in q.premises if p.relation == ISA]
        assert isa[0].subject == ans.subject
        for a, b in zip(isa, isa[1:]):
            assert a.object == b.subject
        if ans.relation == ISA:
            assert isa[-1].object == ans.object
        else:
            assert q.premises[-1] == Fact(isa[-1].object, ans.relation, ans.object)
    assert {q.meta["hops"] for q in ds.split("syllogism")} >= {2, 3, 4}


def test_reversals_ask_trained_facts_object_first(ds):
    stated = {f for d in ds.documents for f in d.facts}
    for q in ds.split("reversal"):
        assert q.premises[0] in stated
        assert q.context.startswith("One ")
        assert q.subtype in ("category", "property")
    assert {q.subtype for q in ds.split("reversal")} == {"category", "property"}


def test_every_premise_is_in_a_document_and_parsing_recovers_document_facts(ds):
    stated = {f for d in ds.documents for f in d.facts}
    assert all(p in stated for q in ds.questions for p in q.premises)
    for d in ds.documents:
        assert sorted(parse_statements(d.text)) == d.facts, d.id


def test_articles_have_4_to_20_sentences(ds):
    for d in ds.documents:
        if d.kind != "article":
            continue
        body = d.text.split("\n", 1)[1] if d.meta["format"] in ("encyclopedia", "bullets", "glossary") else d.text
        assert 4 <= len(re.findall(r"[.?]", body)) <= 20, d.text


def test_all_words_are_nonsense(ds):
    from genmodes.data.nonsense import is_english

    ents = set(ds.meta["entities"])
    assert len(ents) == len(ds.meta["entities"]) > 250
    assert not any(is_english(w) for w in ents)
    for f in ds.knowledge:
        assert f.subject in ents and f.object in ents


def test_oracle_augmentations_state_true_unstated_facts(ds):
    aug = get_family("semantic_structure").oracle_augmentations(ds)
    kn = set(ds.knowledge)
    stated = {f for d in ds.documents for f in d.facts}
    got = {f for d in aug for f in d.facts}
    assert got <= kn and not (got & stated)
    for q in ds.questions:
        if q.split != "rephrase":
            assert q.choice_facts[q.answer] in got, q.id
    for d in aug:
        assert d.kind == "augmentation"
        assert set(parse_statements(d.text)) == set(d.facts)


def test_bad_setting_is_one_clear_error():
    from genmodes.errors import DataError

    with pytest.raises(DataError, match="n_choice"):
        make_dataset("semantic_structure", 0, {"n_choice": 3})


def test_subtrees_keep_the_named_categories_their_descendants_and_ancestors():
    from genmodes.data.families.semantic_structure import subtree_categories

    kept = [c["name"] for c in subtree_categories(["canine", "bird"])]
    assert kept[:3] == ["animal", "mammal", "canine"]  # ancestors first, in hierarchy order
    assert {"dog", "poodle", "wolf", "fox", "robin", "penguin"} <= set(kept)
    assert not {"feline", "cat", "object", "fish"} & set(kept)
    small = make_dataset("semantic_structure", seed=0, overrides={
        "subtrees": ["canine"], "n_documents": 1, "n_qa_items": 0, "holdout_mentions": 1,
        "n_holdout_categories": 2, "questions_per_split": 20, "probe_questions_per_split": 0})
    lex = small.meta["lexicon"]["categories"]
    assert set(lex) == {"animal", "mammal", "canine", "dog", "poodle", "beagle", "collie", "wolf", "fox"}
    assert {f.subject for f in small.knowledge if f.relation == "is a type of"} <= set(lex.values())
    from genmodes.data.audit import audit_dataset

    assert audit_dataset(small).ok
    with pytest.raises(DataError, match="no category 'dragon'"):
        make_dataset("semantic_structure", seed=0, overrides={"subtrees": ["dragon"]})
    # unset, the config dumps as it did before the setting existed (content hashes unchanged)
    assert "subtrees" not in make_config("semantic_structure", {}).model_dump()
