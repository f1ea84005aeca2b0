"""The retrieval context stage: oracle / bm25 / dense memories, recall@k, the context placed before
each question, and retrieval on top of a fine-tuned checkpoint (model stage finetune)."""

from __future__ import annotations

import pytest

from genmodes import conditions
from genmodes.conditions import Condition, pretrained, resolve
from genmodes.conditions.base import DEFAULT_INSTRUCTION, CellContext
from genmodes.conditions.retrieval import Settings, hit_at_k, recall_at_k, retrieve
from genmodes.data.families import make_dataset
from genmodes.data.types import Dataset, Document, Question
from genmodes.errors import ConfigError


@pytest.fixture(scope="module")
def sr():
    return make_dataset("simple_reversals", 0, {"n_facts": 8, "articles_per_fact": 2})  # 16 docs


@pytest.fixture(scope="module")
def rc():
    # 20 people x 3 paraphrases (+ set B both orders): 75 documents; each question's support is the 3
    # training paraphrases of its person.
    return make_dataset("reversal_curse", 0, {"n_people_a": 10, "n_people_d": 5, "n_people_b": 5,
                                              "n_paraphrases": 3, "n_test_paraphrases": 2})


def prepare(ctx, settings):
    """Model stage pretrained, then this retrieval."""
    return conditions.prepare(ctx, Condition("retrieval", "pretrained", pretrained.Settings(), "retrieval", settings))


def _ctx(ds, tmp_path, seed=0):
    return CellContext("tiny-random", ds, seed, tmp_path / "cell", shared_dir=tmp_path / "shared", progress=False)


# -- oracle -------------------------------------------------------------------------------------------

def test_oracle_has_all_support_and_exactly_k_distractors(sr):
    got = retrieve(sr, Settings(method="oracle", k=3), seed=0)
    doc_ids = {d.id for d in sr.documents}
    assert set(got) == {q.id for q in sr.questions}
    for q in sr.questions:
        ids = got[q.id]
        assert len(ids) == len(set(ids)), "no document twice"
        assert set(q.support) <= set(ids)
        distractors = [i for i in ids if i not in q.support]
        assert len(distractors) == 3
        assert set(distractors) <= doc_ids


def test_oracle_is_seeded(sr):
    s = Settings(method="oracle", k=3)
    assert retrieve(sr, s, seed=0) == retrieve(sr, s, seed=0)
    assert retrieve(sr, s, seed=0) != retrieve(sr, s, seed=1)


def test_oracle_shuffles_support_among_distractors(sr):
    shuffled = retrieve(sr, Settings(method="oracle", k=3), seed=0)
    positions = {shuffled[q.id].index(q.support[0]) for q in sr.questions}
    assert len(positions) > 1, "the support document must not sit at a fixed position"
    ordered = retrieve(sr, Settings(method="oracle", k=3, shuffle=False), seed=0)
    for q in sr.questions:
        assert ordered[q.id][:len(q.support)] == q.support
        assert sorted(ordered[q.id]) == sorted(shuffled[q.id]), "shuffling changes order, not content"


def test_oracle_k0_is_support_only(sr):
    got = retrieve(sr, Settings(method="oracle", k=0, shuffle=False), seed=0)
    assert all(got[q.id] == q.support for q in sr.questions)
    got = retrieve(sr, Settings(method="oracle", k=0), seed=3)
    assert all(sorted(got[q.id]) == sorted(q.support) for q in sr.questions)


def test_oracle_with_few_documents_takes_all_others():
    docs = [Document(id=f"d{i}", text=f"text {i}.") for i in range(3)]
    q = Question(id="q", split="s", subtype="", context="c", choices=[" a", " b"], answer=0, support=["d1"])
    ds = Dataset("toy", {}, 0, docs, [q], [])
    assert sorted(retrieve(ds, Settings(method="oracle", k=10), seed=0)["q"]) == ["d0", "d1", "d2"]


# -- recall@k -----------------------------------------------------------------------------------------

def test_recall_at_k_hand_made():
    def q(qid, split, support):
        return Question(id=qid, split=split, subtype="", context="c", choices=[" a", " b"], answer=0, support=support)

    qs = [q("q1", "rev", ["a", "b"]), q("q2", "rev", ["c"]), q("q3", "fwd", ["d", "e", "f", "g"]), q("q4", "fwd", [])]
    retrieved = {"q1": ["a", "x", "y"], "q2": ["z"], "q3": ["d", "e", "f", "x"], "q4": ["a"]}
    overall, by_split = recall_at_k(qs, retrieved)
    assert overall == pytest.approx((0.5 + 0.0 + 0.75) / 3)  # q4 has no support: not counted
    assert by_split == pytest.approx({"rev": 0.25, "fwd": 0.75})
    assert recall_at_k([q("q5", "x", [])], {"q5": ["a"]}) == (None, {})
    overall, by_split = hit_at_k(qs, retrieved)
    assert overall == pytest.approx(2 / 3)
    assert by_split == pytest.approx({"rev": 0.5, "fwd": 1.0})


# -- bm25 / dense -------------------------------------------------------------------------------------

def test_bm25_finds_the_support_of_reversal_questions(rc, tmp_path):
    p = prepare(_ctx(rc, tmp_path), Settings(method="bm25", k=3))
    assert p.info.recall_at_k_by_split["reversal"] >= 0.8
    retrieved = p.retrieved
    assert all(len(ids) == 3 for ids in retrieved.values())
    hits = [any(s in retrieved[q.id] for s in q.support) for q in rc.split("reversal")]
    assert sum(hits) / len(hits) >= 0.9
    assert p.info.hit_at_k_by_split["reversal"] == pytest.approx(sum(hits) / len(hits))


def test_bm25_k_larger_than_corpus_returns_every_document(sr):
    got = retrieve(sr, Settings(method="bm25", k=100), seed=0)
    assert all(sorted(ids) == sorted(d.id for d in sr.documents) for ids in got.values())


@pytest.mark.slow
def test_dense_loads_offline_and_retrieves(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    small = make_dataset("reversal_curse", 0, {"n_people_a": 8, "n_people_d": 2, "n_people_b": 2,
                                               "n_paraphrases": 2, "n_test_paraphrases": 1})
    assert len(small.documents) <= 40
    got = retrieve(small, Settings(method="dense", k=3), seed=0)
    assert all(len(ids) == 3 for ids in got.values())
    overall, _ = recall_at_k(small.questions, got)
    assert overall >= 0.7


# -- prepare: the context and the report --------------------------------------------------------------

def test_question_context_puts_retrieved_documents_before_the_question(sr, tmp_path):
    p = prepare(_ctx(sr, tmp_path), Settings(method="oracle", k=2))
    index = sr.doc_index()
    for q in sr.questions:
        text = p.context_for(q)
        assert text.startswith(DEFAULT_INSTRUCTION) and text.endswith(q.context)
        block = text[: len(text) - len(q.context)]
        ids = p.retrieved[q.id]
        starts = [block.index(index[i].text.strip()) for i in ids]
        assert starts == sorted(starts), "documents appear in retrieved order"
    assert p.prefix == ""


def test_info_reports_recall_compute_and_time(sr, tmp_path):
    p = prepare(_ctx(sr, tmp_path), Settings(method="oracle", k=2, instruction="Docs:\n"))
    info = p.info
    assert p.model_info.train_seconds == 0.0 and info.retrieval_seconds >= 0.0
    assert info.recall_at_k == 1.0 and set(info.recall_at_k_by_split) == set(sr.splits)
    assert info.hit_at_k == 1.0
    blocks = [p.context_for(q)[: -len(q.context)] for q in sr.questions]
    n = [len(p.tokenizer(b, add_special_tokens=False).input_ids) for b in blocks]
    assert info.mean_context_tokens == pytest.approx(sum(n) / len(n))
    assert all(b.startswith("Docs:\n") for b in blocks)
    import json

    json.dumps(info.model_dump(mode="json"))  # goes to the report as JSON


def test_prepared_scores_with_the_scorer(sr, tmp_path):
    from genmodes.scoring import Scorer

    p = prepare(_ctx(sr, tmp_path), Settings(method="bm25", k=2))
    qs = sr.questions[:3]
    scores = Scorer(p.model, p.tokenizer).score([(p.context_for(q), q.choices) for q in qs], prefix=p.prefix)
    assert len(scores) == 3 and all(len(s) == len(q.choices) for s, q in zip(scores, qs))


# -- settings -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, key", [({"k": -1}, "k"), ({"method": "bm25", "k": 0}, "k"),
                                      ({"method": "dense", "k": 0}, "k"), ({"method": "grep"}, "method"),
                                      ({"topk": 3}, "topk")])
def test_bad_settings_name_the_key(bad, key):
    with pytest.raises(ConfigError, match=f"bad setting '{key}'"):
        resolve("retrieval", bad)


def test_shuffle_defaults():
    assert Settings(method="oracle").shuffled and not Settings(method="bm25", k=1).shuffled
    assert Settings(method="dense", k=1, shuffle=True).shuffled


# -- retrieval + finetune -----------------------------------------------------------------------------

def test_retrieval_with_finetune_reuses_the_finetune_checkpoint(sr, tmp_path):
    import torch

    ft_settings = {"steps": 2, "batch_size": 2, "seq_len": 64}
    plain = conditions.prepare(_ctx(sr, tmp_path), resolve("finetune", ft_settings))
    both = resolve("retrieval", {"method": "oracle", "k": 1, "finetune": ft_settings})
    assert (both.model, both.context) == ("finetune", "retrieval")
    p = conditions.prepare(_ctx(sr, tmp_path), both)
    assert p.model_info.reused is True and plain.model_info.reused is False
    assert p.model_info.checkpoint == plain.model_info.checkpoint
    assert p.model_info.train_seconds == pytest.approx(plain.model_info.train_seconds)
    a, b = plain.model.state_dict(), p.model.state_dict()
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert p.info.recall_at_k == 1.0
    # each stage keeps its own record: the model stage's method (full) beside retrieval's (oracle)
    assert p.info.method == "oracle" and p.model_info.method == "full"


def test_finetune_settings_are_validated():
    with pytest.raises(ConfigError, match="bad setting 'finetune.no_such_setting'"):
        resolve("retrieval", {"finetune": {"no_such_setting": 1}})
    with pytest.raises(ConfigError, match=r"conditions\[0\]\.context\.k: .*at least 1"):
        resolve(model={"kind": "finetune"}, context={"kind": "retrieval", "method": "bm25", "k": 0},
                where="conditions[0]")
    with pytest.raises(ConfigError, match="'max_support' is an oracle setting"):
        resolve("retrieval", {"method": "bm25", "max_support": 1})
