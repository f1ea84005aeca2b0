"""in_context fits the rendered document block and the longest question + choice into the model's
window (issue 17), and counts the questions whose support did not fit."""

from __future__ import annotations

import random

import pytest

from genmodes.conditions import in_context, pretrained
from genmodes.conditions.base import CellContext, render_documents
from genmodes.data.types import Dataset, Document, Question
from genmodes.errors import ConfigError
from genmodes.scoring import Scorer, encode_pair, encode_prefix, split_prefix

WINDOW = 8192  # tiny-random's max_position_embeddings (byte tokens)


def edge_dataset(n_docs: int = 60, seed: int = 0) -> Dataset:
    """~18k bytes of documents (over twice tiny-random's window) and questions whose context + choice
    run to ~700 bytes, well past the old constant reserve of 256 tokens."""
    rng = random.Random(seed)
    docs = [Document(f"d{i}", f"Fact {i}: " + " ".join(f"w{i}x{rng.randrange(10**6)}" for _ in range(30 + i % 7)) + ".")
            for i in range(n_docs)]
    questions = []
    for j in range(12):
        ctx = f"Question {j}, with a long preamble " + "about what the documents state " * (4 + 3 * j) + ":"
        choices = [" yes", " no", " " + "a long answer " * (2 + 3 * j)]
        support = [f"d{(5 * j + k) % n_docs}" for k in range(2)] if j < 10 else []
        questions.append(Question(f"q{j}", "test", "", ctx, choices, 0, support=support))
    return Dataset("edge", {}, seed, docs, questions, [])


def prepare(tmp_path, ds, **settings):
    ctx = CellContext(model_spec="tiny-random", dataset=ds, seed=0, workdir=tmp_path)
    return in_context.apply(ctx, pretrained.build(ctx, pretrained.Settings()), in_context.Settings(**settings))


@pytest.mark.slow
def test_block_and_every_scored_row_fit_the_window(tmp_path):
    ds = edge_dataset()
    p = prepare(tmp_path, ds)
    info = p.info
    longest = info.longest_question_choice_tokens
    assert longest > 256  # the old constant reserve would have let rows run past the window
    pre = encode_prefix(p.tokenizer, p.prefix)
    assert info.prefix_tokens == len(pre) <= info.budget_tokens
    assert info.window_tokens == WINDOW
    # as scored: the block's trailing blank line goes before each question (scoring.split_prefix)
    tail = split_prefix(p.prefix)[1]
    assert tail == "\n\n"
    rows = [len(pre) + sum(map(len, encode_pair(p.tokenizer, tail + q.context, c)))
            for q in ds.questions for c in q.choices]
    assert max(rows) == len(pre) + longest <= WINDOW
    # At the edge: the block is full up to about one document of the window.
    assert len(pre) + longest > WINDOW - max(len(d.text) for d in ds.documents) - 4
    assert 0 < info.documents_in_context < len(ds.documents)
    # The scorer takes it: finite scores for every choice at the window's edge.
    scores = Scorer(p.model, p.tokenizer).score([(q.context, q.choices) for q in ds.questions], prefix=p.prefix)
    assert all(s.logprob == s.logprob and s.logprob > -1e9 for qs in scores for s in qs)


def test_questions_without_support_are_counted(tmp_path):
    ds = edge_dataset()
    p = prepare(tmp_path, ds)
    by_id = ds.doc_index()
    # Independently of the condition's bookkeeping: which supporting documents' texts are in the block.
    missing = [q.id for q in ds.questions if q.support and not any(by_id[d].text in p.prefix for d in q.support)]
    assert 0 < len(missing) < 10  # some questions lost their support, some kept it
    assert p.info.questions_without_support == len(missing)
    assert p.info.questions_without_support_ids == missing


def test_explicit_budget_over_the_window_is_clipped_to_it(tmp_path, capsys):
    # issue 13: a budget sweep runs one config on models of different windows; past a model's
    # window (minus the longest question + choice) the budget is clipped, said on stderr and in info
    ds = edge_dataset()
    p = prepare(tmp_path, ds, budget_tokens=8100)
    info = p.info
    assert info.budget_clipped is True and info.budget_tokens_requested == 8100
    assert info.budget_tokens == 8192 - info.longest_question_choice_tokens
    assert info.prefix_tokens + info.longest_question_choice_tokens <= 8192
    assert "budget_tokens 8100 does not fit tiny-random's 8192-token window" in capsys.readouterr().err
    # a reserve too small for the questions is still an error: the rows would not fit
    with pytest.raises(ConfigError, match="window by"):
        prepare(tmp_path, ds, reserve=10)


def test_everything_fits_keeps_every_document(tmp_path):
    ds = edge_dataset(n_docs=5)
    p = prepare(tmp_path, ds)
    assert p.info.documents_in_context == 5 and p.info.questions_without_support == 0
    assert p.prefix == render_documents(ds.documents)


@pytest.mark.slow
def test_rendered_block_fits_where_per_document_counts_fall_short(smollm_tokenizer):
    """SmolLM2's BPE splits the separator before a word ("\\n\\nThe" is three tokens where "\\n\\n" and
    "The" alone are two), so documents counted one by one underestimate the block."""
    tok = smollm_tokenizer
    rng = random.Random(1)
    docs = [Document(f"d{i}", f"The {rng.choice(['quiet', 'bright', 'old'])} city of Zor{i} lies by the sea.")
            for i in range(400)]
    per_doc = sum(len(tok(d.text, add_special_tokens=False).input_ids) for d in docs)
    sep = len(tok("\n\n", add_special_tokens=False).input_ids)
    assert len(encode_prefix(tok, render_documents(docs))) > per_doc + sep * (len(docs) + 1)
    for budget in (500, 1234, 3000):
        kept = in_context.select_documents(docs, tok, budget, seed=0)
        n = in_context.block_tokens(tok, kept)
        assert n <= budget
        assert n > budget - 40  # filled: within about two documents of the budget
        assert kept == [d for d in docs if d in kept]  # original order


@pytest.fixture(scope="module")
def smollm_tokenizer():
    from genmodes.models import load_model

    return load_model("smollm2-135m")[1]
