"""Fine-tuning logs to TensorBoard / wandb (``report_to``), besides the run folder's own curves."""

from __future__ import annotations

import importlib.util

import pytest

from genmodes.conditions import resolve
from genmodes.conditions.base import CellContext
from genmodes.conditions.finetune import build, checkpoint_dir
from genmodes.data.families import make_dataset
from genmodes.errors import ConfigError

FAST = {"steps": 3, "batch_size": 2, "seq_len": 64}


def ctx_for(tmp_path) -> CellContext:
    ds = make_dataset("simple_reversals", 0, {"n_facts": 3, "articles_per_fact": 2})
    return CellContext(model_spec="tiny-random", dataset=ds, seed=0, workdir=tmp_path / "cell",
                       shared_dir=tmp_path / "shared", device="cpu", progress=False)


def test_tensorboard_gets_every_step_of_the_loss_curve(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ctx = ctx_for(tmp_path)
    settings = resolve("finetune", {**FAST, "report_to": "tensorboard"}).model_settings
    assert settings.report_to == ["tensorboard"]
    info = build(ctx, settings).info
    acc = EventAccumulator(str(ctx.workdir / "tensorboard"))
    acc.Reload()
    loss = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    assert [s for s, _ in loss] == [s for s, _ in info.loss_curve] == [1, 2, 3]
    assert [v for _, v in loss] == pytest.approx([v for _, v in info.loss_curve], abs=1e-4)
    assert len(acc.Scalars("train/learning_rate")) == 3


def test_report_to_does_not_change_the_checkpoint(tmp_path):
    ctx = ctx_for(tmp_path)
    texts = [d.text for d in ctx.dataset.documents]
    plain = resolve("finetune", FAST).model_settings
    assert plain.report_to == []
    logged = resolve("finetune", {**FAST, "report_to": ["tensorboard"]}).model_settings \
        if importlib.util.find_spec("tensorboard") else plain
    assert checkpoint_dir(ctx, plain, texts) == checkpoint_dir(ctx, logged, texts)


def test_unknown_or_missing_logger_is_a_config_error():
    with pytest.raises(ConfigError, match="report_to"):
        resolve("finetune", {"report_to": ["mlflow"]}).model_settings
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(ConfigError, match="'wandb' is not installed"):
            resolve("finetune", {"report_to": "wandb"}).model_settings
    with pytest.raises(ConfigError, match="report_to"):  # nested in retrieval's finetune settings too
        resolve("retrieval", {"finetune": {"report_to": ["mlflow"]}})
