"""Accuracies to TensorBoard / W&B, for a condition whose model stage asks (``report_to``).

A fine-tuning stage logs its loss and learning rate at every step while it trains
(``genmodes.training.finetune``). No model stage scores questions while it trains, so
the accuracies logged here are the cell's final ones: after the cell is scored, each split's accuracy
(the scorer's choice, and its length-normalised variant) at the step where training ended, beside the
loss curve. A cell that reused another cell's checkpoint logs its accuracies in its own folder.

- TensorBoard: ``eval/<split>/accuracy`` and ``eval/<split>/accuracy_norm`` in the cell's
  ``tensorboard/`` folder (the one the loss curve is in when the cell trained).
- W&B: one run per cell, named by the cell id, with the same keys and the cell's dataset, condition
  and seed in its config (the training run, named after the stage, holds the loss).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable


def report_to(condition: Any) -> list[str]:
    """The ``report_to`` destinations of a resolved condition's model stage (none for a baseline)."""
    return list(getattr(condition.model_settings, "report_to", None) or [])


def split_accuracies(rows: Iterable[Any]) -> dict[str, dict[str, float]]:
    """Per split (in order of appearance): accuracy, normalised accuracy and question count of scored
    rows (anything with ``split``, ``correct`` and ``correct_norm``)."""
    by: dict[str, list[Any]] = {}
    for r in rows:
        by.setdefault(r.split, []).append(r)
    return {sp: {"accuracy": sum(r.correct for r in rs) / len(rs),
                 "accuracy_norm": sum(r.correct_norm for r in rs) / len(rs), "n": float(len(rs))}
            for sp, rs in by.items()}


def log_cell_accuracy(condition: Any, workdir: Path, cell_id: str, rows: Iterable[Any],
                      info: dict[str, Any], config: dict[str, Any]) -> dict[str, float]:
    """Log a scored cell's per-split accuracies where its model stage's ``report_to`` asks; returns
    what was logged (empty when nothing asks). ``info``: the cell's info (its ``steps`` place the
    point at the end of the loss curve); ``config``: what names the cell in W&B."""
    where = report_to(condition)
    if not where:
        return {}
    step = int(info.get("steps") or 0)
    metrics = {f"eval/{sp}/{k}": v for sp, m in split_accuracies(rows).items()
               for k, v in m.items() if k != "n"}
    if "tensorboard" in where:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(Path(workdir) / "tensorboard"))
        try:
            for key, value in metrics.items():
                writer.add_scalar(key, value, step)
        finally:
            writer.close()
    if "wandb" in where:
        import wandb

        run = wandb.init(project=os.environ.get("WANDB_PROJECT", "genmodes"), name=cell_id, dir=str(workdir),
                         config=config, reinit=True)
        try:
            run.log(metrics, step=step)
        finally:
            run.finish()
    return metrics
