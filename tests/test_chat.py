"""Scoring inside a chat template (``scoring.chat_template``), recorded in the run's config."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from genmodes.chat import template_parts, wrap
from genmodes.cli import main
from genmodes.errors import ConfigError

TEMPLATE = ("{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture
def chat_model_dir(tmp_path):
    from genmodes.models import tiny_random

    model, tok = tiny_random(seed=0)
    tok.chat_template = TEMPLATE
    model.save_pretrained(tmp_path / "chat-model")
    tok.save_pretrained(tmp_path / "chat-model")
    return tmp_path / "chat-model"


def test_template_is_split_around_the_message(tiny):
    _, tok = tiny
    with pytest.raises(ConfigError, match="has no chat template"):
        template_parts(tok)
    tok.chat_template = TEMPLATE
    try:
        assert template_parts(tok) == ("<|user|>", "<|end|><|assistant|>")
        prefix, ctx = wrap(tok, "DOCS ", lambda q: f"Q{q}")
        assert prefix + ctx(1) == tok.apply_chat_template([{"role": "user", "content": "DOCS Q1"}], tokenize=False,
                                                          add_generation_prompt=True)
    finally:
        tok.chat_template = None


def test_run_scores_inside_the_template_and_records_it(chat_model_dir, tmp_path, capsys):
    from genmodes.models import load_model
    from genmodes.scoring import Scorer

    torch.set_num_threads(1)
    cfg = {"name": "chat", "model": str(chat_model_dir), "seeds": [0],
           "datasets": [{"family": "simple_reversals", "settings": {"n_facts": 3, "articles_per_fact": 2},
                         "max_per_split": 2}],
           "conditions": [{"name": "in_context"}], "scoring": {"chat_template": True}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    # on CPU in fp32: the reference below is computed there
    assert main(["run", str(tmp_path / "c.yaml"), "--out", str(out), "--no-report", "--device", "cpu"]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["scoring"]["chat_template"] is True
    row = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    model, tok = load_model(str(chat_model_dir), device="cpu")
    from genmodes.data.families import make_dataset

    ds = make_dataset("simple_reversals", 0, {"n_facts": 3, "articles_per_fact": 2})
    q = next(q for q in ds.questions if q.id == row["question_id"])
    from genmodes.conditions.base import render_documents

    docs = render_documents(ds.documents)
    want = Scorer(model, tok).score([(q.context + "<|end|><|assistant|>", q.choices)], prefix="<|user|>" + docs)[0]
    assert [s["logprob"] for s in row["scores"]] == pytest.approx([s.logprob for s in want], abs=1e-4)
    plain = Scorer(model, tok).score([(q.context, q.choices)], prefix=docs)[0]
    assert [s.logprob for s in plain] != pytest.approx([s.logprob for s in want], abs=1e-4)
    # the lm-eval export of this run carries the same template text
    assert main(["data", "export", str(out), "--condition", "in_context", "--to", "lm-eval", str(tmp_path / "lm")]) == 0
    exported = json.loads((tmp_path / "lm" / "data" / f"{q.split}.jsonl").read_text().splitlines()[0])
    assert exported["context"].startswith("<|user|>Use the following documents")
    assert exported["context"].endswith("<|end|><|assistant|>")


def test_chat_template_on_a_model_without_one_is_one_line(tmp_path, capsys):
    cfg = {"name": "chat", "model": "tiny-random", "datasets": [{"family": "simple_reversals",
           "settings": {"n_facts": 3, "articles_per_fact": 2}}], "conditions": [{"name": "pretrained"}],
           "scoring": {"chat_template": True}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "genmodes: error: scoring.chat_template: this model's tokenizer has no chat template" in err
