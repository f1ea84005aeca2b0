"""The audit: passes on every family at published size, fails on each kind of broken dataset."""

import copy

import pytest

from genmodes.data.audit import audit_dataset
from genmodes.data.families import FAMILY_MODULES, make_dataset
from genmodes.data.types import Dataset, Document, Fact, Question


@pytest.mark.parametrize("name", list(FAMILY_MODULES))
def test_every_family_passes_its_audit_at_default_size(name):
    ds = make_dataset(name, seed=0)
    rep = audit_dataset(ds)
    assert rep.ok, rep.violations[:5]
    assert {r.split for r in rep.rows} == set(ds.splits)
    assert set(ds.meta.get("recall_splits", [])) <= set(ds.splits)
    assert any(not r.recall for r in rep.rows), "a family needs at least one held-out split"


def _tiny() -> Dataset:
    """Two facts, one document each, a held-out reversal question per fact."""
    docs = [Document("d0", "Did you know that femp are brighter than glon.", facts=[Fact("femp", "brighter", "glon")]),
            Document("d1", "It turns out that yomp are heavier than troff.", facts=[Fact("yomp", "heavier", "troff")])]
    qs = [
        Question("q0", "reversal", "senses", "glon are", [" dimmer than femp.", " brighter than femp."], 0,
                 support=["d0"], premises=[Fact("femp", "brighter", "glon")],
                 choice_facts=[Fact("glon", "dimmer", "femp"), Fact("glon", "brighter", "femp")]),
        Question("q1", "reversal", "size", "troff are", [" heavier than yomp.", " lighter than yomp."], 1,
                 support=["d1"], premises=[Fact("yomp", "heavier", "troff")],
                 choice_facts=[Fact("troff", "heavier", "yomp"), Fact("troff", "lighter", "yomp")]),
    ]
    know = [Fact("femp", "brighter", "glon"), Fact("glon", "dimmer", "femp"),
            Fact("yomp", "heavier", "troff"), Fact("troff", "lighter", "yomp")]
    return Dataset("test", {}, 0, docs, qs, know, meta={"recall_splits": [], "entities": ["femp", "glon", "yomp", "troff"]})


def test_clean_tiny_dataset_passes():
    assert audit_dataset(_tiny()).ok


def test_leaked_answer_text_is_caught():
    ds = _tiny()
    ds.documents.append(Document("d2", "A note:   GLON are dimmer\nthan femp. The end."))
    rep = audit_dataset(ds)
    assert len(rep.violations) == 1 and "appears in document d2" in rep.violations[0]
    assert [r.violations for r in rep.rows] == [1]


def test_leaked_answer_fact_is_caught():
    ds = _tiny()
    ds.documents[1].facts.append(Fact("glon", "dimmer", "femp"))
    assert any("answer fact" in v for v in audit_dataset(ds).violations)


def test_recall_splits_may_state_their_answer():
    ds = _tiny()
    ds.documents.append(Document("d2", "glon are dimmer than femp.", facts=[Fact("glon", "dimmer", "femp")]))
    assert not audit_dataset(ds).ok
    ds.meta["recall_splits"] = ["reversal"]
    assert audit_dataset(ds).ok


def test_missing_support_document_is_caught():
    ds = _tiny()
    ds.questions[0].support = ["d0", "d9"]
    assert any("support document 'd9' does not exist" in v for v in audit_dataset(ds).violations)
    ds = _tiny()
    ds.questions[0].support = ["d1"]
    assert any("premise" in v and "not stated" in v for v in audit_dataset(ds).violations)


def test_two_correct_options_are_caught():
    ds = _tiny()
    ds.knowledge.append(Fact("glon", "brighter", "femp"))
    assert any("choices [0, 1] are true" in v for v in audit_dataset(ds).violations)
    ds = _tiny()
    ds.questions[1].answer = 0  # the answer is false, the other option true
    assert any("choices [1] are true" in v for v in audit_dataset(ds).violations)


def test_fake_hard_distractor_is_caught():
    ds = _tiny()
    ds.questions[0].meta["hard_distractors"] = True
    assert any("not a hard distractor" in v for v in audit_dataset(ds).violations)
    # a real one: some other subject holds ("brighter", "femp")
    ds.knowledge.append(Fact("blick", "brighter", "femp"))
    assert audit_dataset(ds).ok


def test_duplicates_and_english_entities_are_caught():
    ds = _tiny()
    ds.questions.append(copy.deepcopy(ds.questions[0]))
    ds.documents.append(Document("d0", "x"))
    ds.meta["entities"] += ["glon", "house"]
    v = audit_dataset(ds).violations
    assert any("duplicate question id 'q0'" in x for x in v)
    assert any("duplicate document id 'd0'" in x for x in v)
    assert any("duplicate entity 'glon'" in x for x in v)
    assert any("'house' is an English word" in x for x in v)


@pytest.mark.slow
def test_audit_of_20k_documents():
    """A large clean dataset passes; the same one with every answer first fails on position."""
    rel = ["bigger", "smaller"]  # half the facts each way: neither comparative is the usual answer
    docs = [Document(f"d{i}", f"Report {i}: word{i % 500} are {rel[i // 10 % 2]} than thing{i} in the valley.",
                     facts=[Fact(f"word{i % 500}", rel[i // 10 % 2], f"thing{i}")]) for i in range(20_000)]

    def question(i: int, first: bool) -> Question:
        fwd = rel[i // 10 % 2]
        rev = rel[1 - i // 10 % 2]
        opts = [f" {rev} than word{i % 500}.", f" {fwd} than word{i % 500}."]
        facts = [Fact(f"thing{i}", rev, f"word{i % 500}"), Fact(f"thing{i}", fwd, f"word{i % 500}")]
        k = 0 if first or (i // 5) % 2 == 0 else 1
        if k:
            opts, facts = opts[::-1], facts[::-1]
        return Question(f"q{i}", "reversal", f"s{i % 5}", f"thing{i} are", opts, k, support=[f"d{i}"],
                        premises=docs[i].facts, choice_facts=facts)

    for first in (False, True):
        qs = [question(i, first) for i in range(0, 20_000, 5)]
        know = [f for d in docs for f in d.facts] + [q.choice_facts[q.answer] for q in qs]
        rep = audit_dataset(Dataset("big", {}, 0, docs, qs, know, meta={"recall_splits": []}))
        if first:
            assert any("the position baseline gets 100.0%" in v for v in rep.violations)
        else:
            assert rep.ok, rep.violations[:3]
