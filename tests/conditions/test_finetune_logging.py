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


# ------------------------------------------------------------------------------------------ accuracies

RUN = {"name": "logged", "model": "tiny-random", "seeds": [0],
       "datasets": [{"name": "sr", "family": "simple_reversals", "settings": {"n_facts": 3, "articles_per_fact": 2}}]}


def _run(tmp_path, report_to):
    from genmodes.experiments.config import parse_config
    from genmodes.experiments.runner import Runner

    cfg = parse_config({**RUN, "conditions": [
        {"name": "finetune", "settings": {**FAST, "report_to": report_to}},
        {"name": "rag", "kind": "retrieval", "settings": {"method": "oracle", "k": 1, "finetune": {**FAST, "report_to": report_to}}},
        {"name": "pretrained"}]})
    out = tmp_path / "run"
    summary = Runner(cfg, out, progress=False, log=lambda m: None).run()
    return out, summary


def test_cell_accuracies_go_to_tensorboard_beside_the_loss(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, summary = _run(tmp_path, ["tensorboard"])
    for cond in ("finetune", "rag"):
        acc = EventAccumulator(str(out / "cells" / f"sr__{cond}__s0" / "tensorboard"))
        acc.Reload()
        for row in (r for r in summary if r["condition"] == cond):
            (point,) = acc.Scalars(f"eval/{row['split']}/accuracy")
            assert point.value == pytest.approx(row["accuracy"]) and point.step == FAST["steps"]
            assert len(acc.Scalars(f"eval/{row['split']}/accuracy_norm")) == 1
    # the cell that trained has its loss curve in the same folder; rag reused the checkpoint
    trained = EventAccumulator(str(out / "cells" / "sr__finetune__s0" / "tensorboard"))
    trained.Reload()
    assert len(trained.Scalars("train/loss")) == FAST["steps"]
    assert not (out / "cells" / "sr__pretrained__s0" / "tensorboard").exists()  # it asked for nothing


def test_cell_accuracies_go_to_wandb(tmp_path, monkeypatch):
    """W&B is not installed here: a stand-in module records what genmodes hands it."""
    import importlib.machinery
    import sys
    import types

    runs = []

    class Run:
        def __init__(self, **kw):
            self.kw, self.logged, self.finished = kw, [], False
            runs.append(self)

        def log(self, data, step=None):
            self.logged.append((step, dict(data)))

        def finish(self):
            self.finished = True

    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    fake.init = lambda **kw: Run(**kw)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    out, summary = _run(tmp_path, "wandb")
    cells = {r.kw["name"]: r for r in runs if r.kw["name"].startswith("sr__")}
    assert set(cells) == {"sr__finetune__s0", "sr__rag__s0"} and all(r.finished for r in runs)
    for cond in ("finetune", "rag"):
        run = cells[f"sr__{cond}__s0"]
        assert run.kw["config"]["condition"] == cond
        ((step, logged),) = run.logged
        assert step == FAST["steps"]
        for row in (r for r in summary if r["condition"] == cond):
            assert logged[f"eval/{row['split']}/accuracy"] == pytest.approx(row["accuracy"])
    # the training run (named after the stage) got the loss of every step
    train = [r for r in runs if r.kw["name"] == "finetune"]
    assert len(train) == 1 and [s for s, _ in train[0].logged] == [1, 2, 3]
