"""Exports: a Hugging Face DatasetDict, and an lm-evaluation-harness task scored by lm-eval itself."""

import os

import pytest
import yaml

from genmodes.cli import main
from genmodes.data.families import make_dataset
from genmodes.data.io import save_dataset

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def saved(tmp_path):
    ds = make_dataset("simple_reversals", seed=0, overrides={"n_facts": 4, "articles_per_fact": 2})
    save_dataset(ds, tmp_path / "ds")
    return ds, tmp_path / "ds"


def _hub_rows(ds, q_meta_keys):
    fact = lambda f: None if f is None else {"subject": f.subject, "relation": f.relation, "object": f.object}  # noqa: E731
    return {sp: [{"id": q.id, "split": q.split, "subtype": q.subtype, "context": q.context, "choices": q.choices,
                  "answer": q.answer, "support": q.support, "premises": [fact(f) for f in q.premises],
                  "choice_facts": [fact(f) for f in q.choice_facts],
                  **({"meta": {k: q.meta.get(k) for k in q_meta_keys}} if q_meta_keys else {})}
                 for q in ds.split(sp)] for sp in ds.splits}


@pytest.mark.parametrize("family, overrides", [("simple_reversals", {"n_facts": 4, "articles_per_fact": 2}),
                                               ("codebook", {})])
def test_hub_export_loads_with_load_dataset_offline(family, overrides, tmp_path, capsys):
    import datasets

    from genmodes.data.io import content_hash, dataset_files

    ds = make_dataset(family, seed=0, overrides=overrides)
    save_dataset(ds, tmp_path / "ds")
    dest = tmp_path / "hub"
    assert main(["data", "export", str(tmp_path / "ds"), "--to", "hf", str(dest)]) == 0
    assert "Creating parquet" not in capsys.readouterr().err
    cache = str(tmp_path / "cache")
    qd = datasets.load_dataset(str(dest), "questions", cache_dir=cache)
    assert list(qd) == ds.splits
    meta_keys = sorted({k for q in ds.questions for k in q.meta})
    want = _hub_rows(ds, meta_keys)
    for sp in ds.splits:
        got = qd[sp].to_list()
        if meta_keys:
            for r in got:
                r["meta"] = {k: r["meta"][k] for k in meta_keys}
        assert got == want[sp]
    feats = qd[ds.splits[0]].features
    assert feats["answer"] == datasets.Value("int64")  # choices differ per question: an index
    assert feats["premises"].feature["subject"] == datasets.Value("string")
    assert ("meta" in feats) == bool(meta_keys)
    docs = datasets.load_dataset(str(dest), "documents", split="train", cache_dir=cache)
    assert docs["id"] == [d.id for d in ds.documents] and docs["text"] == [d.text for d in ds.documents]
    assert docs[0]["facts"] == [{"subject": f.subject, "relation": f.relation, "object": f.object}
                                for f in ds.documents[0].facts]
    card = (dest / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert [c["config_name"] for c in header["configs"]] == ["questions", "documents"]
    assert [f["split"] for f in header["configs"][0]["data_files"]] == ds.splits
    assert header["license"] == "apache-2.0" and family in header["tags"]
    assert content_hash(dataset_files(ds)) in card and f"seed: {ds.seed}" in card
    assert ("arXiv:2505.00661" if family == "simple_reversals" else "arXiv:2509.16189") in card
    # a re-export replaces; an unrelated folder is refused
    assert main(["data", "export", str(tmp_path / "ds"), "--to", "hf", str(dest)]) == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("x")
    assert main(["data", "export", str(tmp_path / "ds"), "--to", "hf", str(tmp_path / "other")]) == 2
    assert (tmp_path / "other" / "x").read_text() == "x"


def test_hub_export_fixed_choices_make_the_answer_a_class_label(tmp_path):
    import datasets

    from genmodes.experiments.export import to_hf

    ds = make_dataset("simple_reversals", seed=0, overrides={"n_facts": 4, "articles_per_fact": 2})
    for q in ds.questions:
        q.choices, q.answer, q.choice_facts = [" true", " false"], q.answer % 2, [None, None]
    to_hf(ds, tmp_path / "hub")
    qd = datasets.load_dataset(str(tmp_path / "hub"), "questions", cache_dir=str(tmp_path / "cache"))
    feat = qd["forward"].features["answer"]
    assert isinstance(feat, datasets.ClassLabel) and feat.names == [" true", " false"]
    assert qd["forward"]["answer"] == [q.answer for q in ds.split("forward")]
    assert qd["forward"][0]["choice_facts"] == [None, None]


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


@pytest.mark.slow
def test_lm_eval_export_runs_in_lm_eval(saved, tmp_path, capsys):
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    ds, path = saved
    dest = tmp_path / "lmeval"
    assert main(["data", "export", str(path), "--to", "lm-eval", str(dest)]) == 0
    printed = capsys.readouterr().out
    assert "genmodes_simple_reversals_reversal" in printed and "--batch_size " in printed
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


# ------------------------------------------------------------------------------------------ a condition of a run

RUN_CONFIG = {
    "name": "lmeval-conditions", "model": "tiny-random", "seeds": [1],
    "datasets": [{"family": "simple_reversals", "settings": {"n_facts": 6, "articles_per_fact": 2},
                  "max_per_split": 4}],
    "conditions": [{"name": "pretrained"},
                   {"name": "finetune", "settings": {"steps": 2, "batch_size": 2, "seq_len": 64}},
                   {"name": "lora", "kind": "finetune",
                    "settings": {"method": "lora", "steps": 2, "batch_size": 2, "seq_len": 64, "lr": 0.05}},
                   {"name": "in_context"},
                   {"name": "rag", "kind": "retrieval", "settings": {"method": "bm25", "k": 2}},
                   {"name": "rag_ft", "kind": "retrieval",
                    "settings": {"method": "oracle", "k": 1, "finetune": {"steps": 2, "batch_size": 2, "seq_len": 64}}}],
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    import torch

    from genmodes.experiments.config import parse_config
    from genmodes.experiments.runner import Runner

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("lmrun") / "run"
    Runner(parse_config(RUN_CONFIG), out, progress=False, log=lambda m: None).run()
    rows = [__import__("json").loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    return out, rows


@pytest.mark.slow
def test_every_condition_scores_the_same_in_lm_eval(finished_run, tmp_path, capsys):
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    run, rows = finished_run
    conds = [c["name"] for c in RUN_CONFIG["conditions"]]
    model_args, batch = {}, {}
    for cond in conds:
        dest = tmp_path / cond
        assert main(["data", "export", str(run), "--condition", cond, "--to", "lm-eval", str(dest)]) == 0
        printed = capsys.readouterr().out
        model_args[cond] = printed.split("--model_args ", 1)[1].split(" ", 1)[0]
        batch[cond] = int(printed.split("--batch_size ", 1)[1].split()[0])
    # the printed batch size fills genmodes' token budget: a long in-context prefix gets smaller batches
    assert batch["in_context"] < batch["pretrained"] and all(1 <= b <= 64 for b in batch.values())
    assert ",peft=" in model_args["lora"] and str(run / "shared") in model_args["lora"]
    assert f"pretrained={run / 'shared'}" in model_args["finetune"]  # the run's own checkpoint
    assert "Use the following documents to answer." in (tmp_path / "rag" / "data" / "reversal.jsonl").read_text()
    # one task index for all (building it scans every lm-eval task: seconds each time)
    manager = TaskManager(include_path=[str(tmp_path / c) for c in conds])
    for cond in conds:
        mine = {r["question_id"]: r for r in rows if r["condition"] == cond}
        assert len(mine) == 8  # the run's max_per_split subsample: 4 per split
        res = lm_eval.simple_evaluate(model="hf", model_args=model_args[cond],
                                      tasks=[f"genmodes_simple_reversals_{cond}"], task_manager=manager,
                                      device="cpu", batch_size=batch[cond], log_samples=True)
        seen = 0
        for samples in res["samples"].values():
            for s in samples:
                lls = [r[0][0] for r in s["resps"]]
                r = mine[s["doc"]["id"]]
                assert max(range(len(lls)), key=lambda i: lls[i]) == r["chosen"], (cond, s["doc"]["id"])
                assert lls == pytest.approx([c["logprob"] for c in r["scores"]], abs=2e-3), cond
                seen += 1
        assert seen == len(mine)


def test_condition_export_refuses_an_unfinished_or_unknown_cell(finished_run, tmp_path, capsys):
    run, _ = finished_run
    assert main(["data", "export", str(run), "--condition", "nope", "--to", "lm-eval", str(tmp_path / "x")]) == 2
    assert "no condition 'nope' (have: pretrained, finetune" in capsys.readouterr().err
    assert main(["data", "export", str(run), "--condition", "in_context", "--seed", "0", "--to", "lm-eval",
                 str(tmp_path / "x")]) == 2
    assert "no seed 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_models_prints_where_converted_models_live(tmp_path, tiny, capsys):
    model, tok = tiny
    assert main(["models", "--cache", str(tmp_path)]) == 0
    assert f"Converted models: none yet in {tmp_path / 'models'}" in capsys.readouterr().out
    model.save_pretrained(tmp_path / "models" / "x-fp32")
    (tmp_path / "models" / "not-a-model").mkdir()
    assert main(["models", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"  {tmp_path / 'models' / 'x-fp32'}\n" in out and "not-a-model" not in out
