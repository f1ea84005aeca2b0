"""Exports: a Hugging Face DatasetDict, and an lm-evaluation-harness task scored by lm-eval itself."""

import json
import os

import pytest

from genmodes.cli import main
from genmodes.data.families import make_dataset
from genmodes.data.io import save_dataset

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def saved(tmp_path):
    ds = make_dataset("simple_reversals", seed=0, overrides={"n_facts": 4, "articles_per_fact": 2})
    save_dataset(ds, tmp_path / "ds")
    return ds, tmp_path / "ds"


def test_hf_export_loads_back(saved, tmp_path, capsys):
    import datasets

    ds, path = saved
    assert main(["data", "export", str(path), "--to", "hf", str(tmp_path / "hf")]) == 0
    dd = datasets.load_from_disk(str(tmp_path / "hf"))
    assert set(dd) == {"documents", "forward", "reversal"}
    assert dd["documents"].num_rows == len(ds.documents)
    row = dd["reversal"][0]
    q = ds.split("reversal")[0]
    assert row["context"] == q.context and row["choices"] == q.choices and row["answer"] == q.answer
    assert json.loads(row["choice_facts"]) == [f.to_list() for f in q.choice_facts]
    # re-export replaces; exporting over an unrelated folder is refused
    assert main(["data", "export", str(path), "--to", "hf", str(tmp_path / "hf")]) == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("x")
    assert main(["data", "export", str(path), "--to", "hf", str(tmp_path / "other")]) == 2


def _tiny_llama(path, texts):
    """A 2-layer random Llama with a BPE tokenizer trained on ``texts``: no downloads."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                     pad_token="</s>")
    hf_tok.save_pretrained(path)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(hf_tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
                      pad_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(path)


def test_lm_eval_export_runs_in_lm_eval(saved, tmp_path, capsys):
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    ds, path = saved
    dest = tmp_path / "lmeval"
    assert main(["data", "export", str(path), "--to", "lm-eval", str(dest)]) == 0
    assert "genmodes_simple_reversals_reversal" in capsys.readouterr().out
    yaml_text = (dest / "genmodes_simple_reversals_reversal.yaml").read_text()
    assert 'target_delimiter: ""' in yaml_text and "output_type: multiple_choice" in yaml_text
    model_dir = tmp_path / "tiny"
    _tiny_llama(str(model_dir), [d.text for d in ds.documents] + [q.context + c for q in ds.questions for c in q.choices])
    res = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={model_dir},dtype=float32", tasks=["genmodes_simple_reversals_reversal"],
        task_manager=TaskManager(include_path=str(dest)), device="cpu", batch_size=4)
    r = res["results"]["genmodes_simple_reversals_reversal"]
    assert 0.0 <= r["acc,none"] <= 1.0
    # lm-eval saw our contexts and choices unchanged: context + choice, no extra space
    sample = res["samples"]["genmodes_simple_reversals_reversal"][0] if "samples" in res else None
    if sample is not None:
        ctx, cont = sample["arguments"][0]
        q = next(q for q in ds.split("reversal") if q.context == ctx)
        assert cont in q.choices
