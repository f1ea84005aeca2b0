"""simple_reversals, simple_syllogisms, reversal_curse: determinism, sizes, parsing, oracle augmentations."""

import pytest

from genmodes.data.audit import audit_dataset
from genmodes.data.families import get_family, make_dataset
from genmodes.data.families.simple_syllogisms import unique_conclusion_forms, valid
from genmodes.data.io import dataset_files
from genmodes.data.nonsense import is_english
from genmodes.errors import DataError

MINE = ["simple_reversals", "simple_syllogisms", "reversal_curse"]


@pytest.mark.parametrize("name", MINE)
def test_same_seed_same_bytes_other_seed_other_bytes(name):
    a, b, c = (dataset_files(make_dataset(name, seed=s)) for s in (1, 1, 2))
    assert a == b
    assert a["documents.jsonl"] != c["documents.jsonl"] and a["questions.jsonl"] != c["questions.jsonl"]


def test_published_sizes():
    sr = make_dataset("simple_reversals")
    assert len(sr.documents) == 1000 and len(sr.split("reversal")) == 100 and sr.chance("reversal") == 0.5
    syl = make_dataset("simple_syllogisms")
    assert len(syl.documents) == 69 and len(syl.split("syllogism")) == 69
    assert syl.chance("syllogism") == 0.25 and abs(syl.chance("trained") - 1 / 6) < 1e-9
    rc = make_dataset("reversal_curse")
    assert len(rc.documents) == 3600 and len(rc.split("reversal")) == 300 and rc.chance("reversal") == 0.25


@pytest.mark.parametrize("name", MINE)
def test_entities_are_nonsense_and_distinct(name):
    ents = make_dataset(name).meta["entities"]
    assert len(ents) == len(set(ents))
    assert not [w for w in ents if is_english(w)]
    assert all(4 <= len(w) <= 5 for w in ents)


def test_simple_reversal_choices_differ_only_in_the_comparative():
    ds = make_dataset("simple_reversals")
    for q in ds.questions:
        a, b = q.choices
        assert a.split(" than ")[1] == b.split(" than ")[1] and a != b
        assert a.split()[0] != b.split()[0]  # the first word differs: no shared first token decides it
    rev = ds.split("reversal")[0]
    fwd_fact = rev.premises[0]
    assert rev.choice_facts[rev.answer].subject == fwd_fact.object
    assert {q.subtype for q in ds.questions} == {"size", "senses", "physical", "character"}


@pytest.mark.parametrize("name", MINE)
def test_parse_statements_recovers_every_document_fact(name):
    fam = get_family(name)
    ds = make_dataset(name, seed=5)
    for d in ds.documents[:300]:
        assert set(d.facts) <= set(fam.parse_statements(d.text)), d.text


def test_parse_examples():
    from genmodes.data.families.simple_reversals import parse_statements as pr
    from genmodes.data.families.simple_syllogisms import parse_statements as ps

    assert [f.to_list() for f in pr("So glon are dimmer than femp, and yomp are more dangerous than troff.")] == [
        ["glon", "dimmer", "femp"], ["yomp", "more dangerous", "troff"]]
    assert [f.to_list() for f in ps("All troff are yomp. Some glon are not troff.")] == [
        ["troff", "all", "yomp"], ["glon", "some not", "troff"]]
    # symmetric statements are one fact whichever way they are worded
    assert ps("Some yomp are glon.") == ps("Some glon are yomp.") and ps("No yomp are glon.") == ps("No glon are yomp.")


@pytest.mark.parametrize("name", MINE)
def test_oracle_augmentations_state_exactly_the_held_out_answers(name):
    fam = get_family(name)
    ds = make_dataset(name, seed=0)
    aug = fam.oracle_augmentations(ds)
    assert aug and all(d.meta.get("oracle") for d in aug)
    recall = set(ds.meta["recall_splits"])
    held = {q.choice_facts[q.answer] for q in ds.questions if q.split not in recall}
    assert held <= {f for d in aug for f in d.facts} <= set(ds.knowledge)
    for d in aug[:50]:
        assert set(d.facts) <= set(fam.parse_statements(d.text))
    # and the audit notices if someone trains on them
    ds.documents += aug
    assert any("answer fact" in v for v in audit_dataset(ds).violations)


def test_solver_barbara_and_invalid_forms():
    barbara = [("all", "M", "P"), ("all", "S", "M")]
    assert valid(barbara, ("all", "S", "P"))
    assert not valid(barbara, ("all", "P", "S"))
    assert not valid(barbara, ("some", "S", "P"))  # empty S allowed by default
    assert valid(barbara, ("some", "S", "P"), existential_import=True)
    assert valid([("no", "M", "P"), ("all", "S", "M")], ("no", "P", "S"))  # Celarent, converted
    assert valid([("all", "M", "P"), ("some", "S", "M")], ("some", "P", "S"))  # Darii
    # undistributed middle: nothing follows
    undistributed = [("all", "P", "M"), ("all", "S", "M")]
    assert not any(valid(undistributed, (q, x, y)) for q in ("all", "some", "no") for x, y in (("S", "P"), ("P", "S")))
    assert not valid([("some", "M", "P"), ("some", "S", "M")], ("some", "S", "P"), existential_import=True)


def test_kept_forms_have_exactly_one_valid_choice():
    from collections import Counter

    from genmodes.data.families.simple_syllogisms import BALANCED_FORMS, choice_statements, conclusion, form_label

    forms = unique_conclusion_forms(False)
    moods = Counter(conclusion(f)[0] for f in forms)
    assert moods == {"all": 2, "some": 4, "no": 4, "some not": 12}  # Barbara; the textbook's 4 + 4 + 6 in both wordings
    for f in forms:  # the solver's claim, checked again on both option sets
        for with_all in ((True, False) if conclusion(f)[0] != "all" else (True,)):
            sts = choice_statements("S", "P", with_all=with_all)
            assert sum(valid(list(f), st) for st in sts) == 1, f
    assert BALANCED_FORMS <= {form_label(f) for f in forms}
    # with existential import an All or No conclusion also makes a particular one valid: none is unique
    assert {conclusion(f, True)[0] for f in unique_conclusion_forms(True)} == {"some", "some not"}
    ei = make_dataset("simple_syllogisms", overrides={"existential_import": True})
    assert {q.subtype for q in ei.split("syllogism")} <= {"some", "some not"}
    with pytest.raises(DataError, match="existential_import"):
        make_dataset("simple_syllogisms", overrides={"existential_import": True, "moods": ["no"]})


def test_syllogisms_are_balanced():
    """Every option of the test is the answer a quarter of the time; moods 1:1:2; no "All" answer."""
    from collections import Counter

    ds = make_dataset("simple_syllogisms", seed=0, overrides={"n_examples": 400})
    qs = ds.split("syllogism")
    assert {len(q.choices) for q in qs} == {4} and all(q.context.endswith(" are:") for q in qs)
    assert Counter(q.subtype for q in qs) == {"some": 100, "no": 100, "some not": 200}
    kinds = Counter(q.choices[q.answer].split()[0] + (" not" if " not " in q.choices[q.answer] else "") for q in qs)
    assert kinds == {"Some": 100, "No": 100, "Some not": 200}
    assert not any(c.startswith(" All") for q in qs for c in q.choices)
    assert max(Counter(q.answer for q in qs).values()) < 0.3 * len(qs)
    # the recall split keeps the six statements and asks for "All" premises too
    assert any(q.choices[q.answer].startswith(" All") for q in ds.split("trained"))


def test_barbara_only_syllogisms_fail_the_audit():
    """The old family (every answer "All S are P") is a shortcut: the audit names the baselines."""
    ds = make_dataset("simple_syllogisms", overrides={"moods": ["all"]})
    assert {q.choices[q.answer].split()[0] for q in ds.split("syllogism")} == {"All"}
    rep = audit_dataset(ds)
    assert any(v.startswith("syllogism: the bigram baseline gets 100.0%") for v in rep.violations)
    ok = audit_dataset(make_dataset("simple_syllogisms"))
    assert ok.ok, ok.violations


def test_reversal_curse_small_config_and_distractors():
    ds = make_dataset("reversal_curse", seed=0, overrides={"n_people_a": 6, "n_people_b": 2, "n_people_d": 2,
                                                         "n_paraphrases": 5, "n_test_paraphrases": 2})
    assert len(ds.documents) == 6 * 5 + 2 * 10 + 2 * 5 and len(ds.split("reversal")) == 12
    assert audit_dataset(ds).ok
    a_names = {p["name"] for p in ds.meta["people"] if p["group"] == "A"}
    for q in ds.split("reversal"):
        names = [c.strip(" .") for c in q.choices]
        assert set(names) <= a_names and len(set(names)) == 4
        assert len({n[0] for n in names}) == 4  # distinct first letters: no shared first token
    with pytest.raises(DataError, match="n_paraphrases"):
        make_dataset("reversal_curse", overrides={"n_paraphrases": 99})
