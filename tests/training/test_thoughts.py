"""What a thought may hold: the gold premises in the documents' wording, recall drills that state
only trained facts, another question's thought; every one read back by the family's parser."""

from __future__ import annotations

import pytest

from genmodes.data.families import get_family, make_dataset
from genmodes.training.thoughts import (DRILL, audit_thought, demonstration, oracle_thought, recall_drills,
                                        shuffled_order)

SEMANTIC = {"subtrees": ["canine", "feline"], "n_documents": 1, "n_qa_items": 0, "holdout_mentions": 1,
            "n_holdout_categories": 3, "questions_per_split": 30, "probe_questions_per_split": 0}
REVERSAL = {"n_people_a": 5, "n_people_d": 3, "n_people_b": 2, "n_paraphrases": 2, "n_test_paraphrases": 2}


@pytest.fixture(scope="module", params=["semantic_structure", "reversal_curse"])
def ds(request):
    return make_dataset(request.param, seed=0, overrides=SEMANTIC if request.param == "semantic_structure"
                        else REVERSAL)


def test_every_fact_renders_as_a_sentence_the_parser_reads_back(ds):
    fam = get_family(ds.family)
    for f in ds.knowledge:
        assert fam.parse_statements(fam.render_fact(f)) == [f], f


def test_oracle_thought_states_every_premise_and_only_true_facts(ds):
    for q in ds.questions:
        thought = oracle_thought(ds, q)
        audit = audit_thought(ds, q, thought)
        assert audit["retrieval"] == "stated" and audit["false"] == 0, (q.id, thought)


def test_recall_drills_state_only_the_trained_facts_of_their_topic(ds):
    fam = get_family(ds.family)
    trained = {f for d in ds.documents for f in d.facts}
    drills = recall_drills(ds)
    topics = [d.meta["topic"] for d in drills]
    assert len(topics) == len(set(topics)) == len({f.subject for f in trained})
    for d in drills:
        head = DRILL.format(topic=d.meta["topic"]) + " "
        assert d.text.startswith(head)
        stated = fam.parse_statements(d.text[len(head):])
        # exactly the documents' facts about the topic: no inference, no other subject's fact
        assert set(stated) == set(d.facts) == {f for f in trained if f.subject == d.meta["topic"]}
        assert "\n" not in d.text  # one line: a thought's stop rule would cut it otherwise


def test_no_drill_states_a_held_out_answer():
    ds = make_dataset("semantic_structure", seed=0, overrides=SEMANTIC)
    text = " ".join(d.text for d in recall_drills(ds))
    for q in ds.questions:
        if q.split in ("syllogism", "category_holdout", "reversal"):
            assert get_family(ds.family).render_fact(q.choice_facts[q.answer]) not in text


def test_demonstration_is_two_drills_and_seeded():
    ds = make_dataset("semantic_structure", seed=0, overrides=SEMANTIC)
    demo = demonstration(ds, 2, seed=3)
    assert demo == demonstration(ds, 2, seed=3) and demo.count(DRILL.split(" {")[0]) == 2
    assert demo.endswith("\n\n")


def test_shuffled_order_gives_every_question_another_of_its_split():
    ds = make_dataset("semantic_structure", seed=0, overrides=SEMANTIC)
    order = shuffled_order(ds.questions, seed=1)
    assert order == shuffled_order(ds.questions, seed=1) and order != shuffled_order(ds.questions, seed=2)
    split_of = {q.id: q.split for q in ds.questions}
    for qid, other in order.items():
        assert other != qid and split_of[other] == split_of[qid]
    for split in ds.splits:  # a permutation: every thought is used once
        ids = [q.id for q in ds.split(split)]
        assert sorted(order[i] for i in ids) == sorted(ids)


def test_answer_drills_ask_a_trained_fact_after_recalling_its_subject(ds):
    from genmodes.training.thoughts import ANSWER_CUE, RECALL_INSTRUCTION, THOUGHT_LEAD

    fam = get_family(ds.family)
    trained = {f for d in ds.documents for f in d.facts}
    drills = recall_drills(ds, form="answer", seed=0)
    assert drills and drills == recall_drills(ds, form="answer", seed=0)
    for d in drills:
        stem, rest = d.text.split(" ...\n" + RECALL_INSTRUCTION + THOUGHT_LEAD + " ", 1)
        thought, answer = rest.split(ANSWER_CUE, 1)
        assert set(fam.parse_statements(thought)) == set(d.facts) == {f for f in trained if f.subject == d.meta["topic"]}
        # the question is one of the recalled, trained facts, answered with its object
        asked = fam.parse_statements(answer)
        assert len(asked) == 1 and asked[0] in d.facts and answer.startswith(stem)
    assert recall_drills(ds, form="none") == []


def test_rehearse_drills_are_answer_drills_under_a_cue_of_their_own(ds):
    from genmodes.training.thoughts import (ANSWER_CUE, RECALL_INSTRUCTION, REHEARSE_INSTRUCTION, REHEARSE_LEAD,
                                            THOUGHT_LEAD)

    answer = recall_drills(ds, form="answer", seed=0)
    rehearse = recall_drills(ds, form="rehearse", seed=0)
    assert len(rehearse) == len(answer) and rehearse
    for a, r in zip(answer, rehearse):
        # the same facts and the same asked fact, with the thinking prompt swapped for the rehearsal's cue
        assert r.facts == a.facts and r.meta["format"] == "rehearse"
        assert RECALL_INSTRUCTION not in r.text and THOUGHT_LEAD.strip() not in r.text
        assert r.text == a.text.replace(RECALL_INSTRUCTION + THOUGHT_LEAD, REHEARSE_INSTRUCTION + REHEARSE_LEAD)
        assert ANSWER_CUE in r.text


def test_chain_drilled_dataset_gets_recall_drills_too_only_when_set():
    from genmodes.conditions.finetune import Settings, drills

    ds = make_dataset("semantic_structure", seed=0, overrides=SEMANTIC)
    both = Settings(recall_drills="rehearse", chain_drills=["practice"], recall_drills_on_chain=True)
    chain_only = Settings(recall_drills="rehearse", chain_drills=["practice"])
    got = drills(ds, both, name="practice")
    chains = drills(ds, chain_only, name="practice")
    assert {d.meta["format"] for d in chains} == {"chain"}
    assert [d for d in got if d.meta["format"] == "chain"] == chains
    rehearsals = [d for d in got if d.meta["format"] == "rehearse"]
    assert [d.text for d in rehearsals] == [d.text for d in recall_drills(ds, form="rehearse", seed=ds.seed)]
    assert len({d.id for d in got}) == len(got)  # no two drills share an id
    # another dataset gets the recall drills alone; off, the setting leaves the dump as it was
    assert {d.meta["format"] for d in drills(ds, both, name="other")} == {"rehearse"}
    assert "recall_drills_on_chain" not in chain_only.model_dump()
    assert both.model_dump()["recall_drills_on_chain"] is True


def test_two_topic_drills_recall_a_second_subject_drawn_at_random(ds):
    """The thought of a two-topic drill states its topic's facts, then every fact of one other
    subject; the second subject is drawn over all the others (seeded), so it names no link a question
    needs; the question is still one of the first topic's facts."""
    from genmodes.training.thoughts import ANSWER_CUE, RECALL_INSTRUCTION, THOUGHT_LEAD

    fam = get_family(ds.family)
    trained = {f for d in ds.documents for f in d.facts}
    drills = recall_drills(ds, form="two_topics", seed=0)
    assert drills and drills == recall_drills(ds, form="two_topics", seed=0)
    assert [d.meta["topic"] for d in drills] == [d.meta["topic"] for d in recall_drills(ds, form="answer", seed=0)]
    seconds = [d.meta["second_topic"] for d in drills]
    assert len(set(seconds)) > len(drills) // 4  # spread over the subjects, not one favourite
    for d in drills:
        topic, second = d.meta["topic"], d.meta["second_topic"]
        assert second != topic
        stem, rest = d.text.split(" ...\n" + RECALL_INSTRUCTION + THOUGHT_LEAD + " ", 1)
        thought, answer = rest.split(ANSWER_CUE, 1)
        own = {f for f in trained if f.subject == topic}
        other = {f for f in trained if f.subject == second}
        assert set(fam.parse_statements(thought)) == set(d.facts) == own | other
        asked = fam.parse_statements(answer)
        assert len(asked) == 1 and asked[0] in own
        assert "\n" not in thought
    assert [d.meta["second_topic"] for d in recall_drills(ds, form="two_topics", seed=1)] != seconds


def test_no_two_topic_drill_states_a_held_out_answer():
    ds = make_dataset("semantic_structure", seed=0, overrides=SEMANTIC)
    text = " ".join(d.text for d in recall_drills(ds, form="two_topics"))
    for q in ds.questions:
        if q.split in ("syllogism", "category_holdout", "reversal"):
            assert get_family(ds.family).render_fact(q.choice_facts[q.answer]) not in text


def test_chain_drills_recall_up_the_chain_then_answer_an_inference_the_thought_implies():
    """A chain drill is a worked example: the thought states the topic's link ("X is a type of Y"),
    Y's facts, Y's link and its object's facts; the fact asked is true, stated by no document, and
    follows from the thought (a stated fact of a linked subject carried over to X). It names only
    trained facts in the thought; a subject gets at most two drills, seeded."""
    from genmodes.training.thoughts import ANSWER_CUE, CHAIN_QUESTIONS, RECALL_INSTRUCTION, THOUGHT_LEAD

    ds = make_dataset("semantic_structure", seed=0, overrides=SEMANTIC)
    fam = get_family(ds.family)
    trained = {f for d in ds.documents for f in d.facts}
    subjects = {f.subject for f in trained}
    drills = recall_drills(ds, form="chain", seed=0)
    assert drills == recall_drills(ds, form="chain", seed=0)
    inferred = 0
    per_topic: dict[str, int] = {}
    for d in drills:
        topic = d.meta["topic"]
        per_topic[topic] = per_topic.get(topic, 0) + 1
        _, rest = d.text.split(" ...\n" + RECALL_INSTRUCTION + THOUGHT_LEAD + " ", 1)
        thought, answer = rest.split(ANSWER_CUE, 1)
        stated = fam.parse_statements(thought)
        assert stated == list(d.facts) and set(stated) <= trained
        (asked,) = fam.parse_statements(answer)
        assert asked.subject == topic and asked in set(ds.knowledge)
        links = [f for f in trained if f.subject == topic and f.object in subjects]
        if links:
            assert stated[0] in links  # the thought starts with the link
            linked = stated[0].object
            assert {f for f in trained if f.subject == linked} <= set(stated)  # then what it links to
        if asked not in trained:
            inferred += 1
            assert any(g.subject != topic and (g.relation, g.object) == (asked.relation, asked.object) for g in stated)
    assert inferred > len(drills) // 2
    assert max(per_topic.values()) == CHAIN_QUESTIONS and set(per_topic) == subjects
    assert [d.text for d in recall_drills(ds, form="chain", seed=1)] != [d.text for d in drills]


def test_chain_drills_train_the_inferences_a_latent_split_asks():
    """Why a dataset with chain drills is scored on its recall splits only: its drills answer
    syllogism questions of the same dataset (see finetune's chain_drills check)."""
    ds = make_dataset("semantic_structure", seed=0, overrides=SEMANTIC)
    text = " ".join(d.text for d in recall_drills(ds, form="chain"))
    answers = [get_family(ds.family).render_fact(q.choice_facts[q.answer]) for q in ds.questions
               if q.split == "syllogism"]
    assert any(a in text for a in answers)
