"""Recall gates: a failure to generalize counts only where the model knows the facts.

P2 reports "trained 100%, held-out 0%": a latent split (a reversal, a syllogism, a held-out category,
a probe) tests generalization from the parameters only if the trained facts are in them. A model
stage that puts the dataset's knowledge into the parameters (``RECALL_GATE``: fine-tuning,
augmentation, from scratch, RL) records its recall accuracy on the dataset's recall splits, scored
on the built model with no context (``ModelStageInfo.recall_*``). Against the study's threshold
(``recall_gate``, default 0.9) that makes the cell's gate: ``pass`` (knows the facts) or ``fail``
(did not learn them, or recall was not scored), on every latent row of the cell; recall rows, cells
whose model learned nothing (pretrained, a baseline) and runs recorded before gates carry none.

Torch-free: the runner's summary, the report and the exports read gates from the cell records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from genmodes.conditions.base import ModelStageInfo
from genmodes.experiments.records import CellRecord

DEFAULT_THRESHOLD = 0.9
PASS, FAIL = "pass", "fail"
NOT_A_TEST = "not a test"


@dataclass(frozen=True)
class Gate:
    """One cell's gate: its recall accuracy (None: not scored) on ``splits``, against ``threshold``."""

    recall: float | None
    splits: tuple[str, ...]
    threshold: float
    questions: int | None = None

    @property
    def passed(self) -> bool:
        return self.recall is not None and self.recall >= self.threshold

    @property
    def verdict(self) -> str:
        return PASS if self.passed else FAIL

    def applies_to(self, split: str) -> bool:
        """A latent split: every split but the recall splits (they are the gate's own measure)."""
        return split not in self.splits

    def label(self) -> str:
        """What the report says beside the cell's latent results."""
        if self.recall is None:
            return f"recall not scored — {NOT_A_TEST}"
        if self.passed:
            return f"knows the facts: {_pct(self.recall)}"
        return f"did not learn them: {_pct(self.recall)} — {NOT_A_TEST}"


def _pct(x: float) -> str:
    s = f"{100 * x:.1f}"
    return (s.rstrip("0").rstrip(".") if "." in s else s) + "%"


def info_gate(model_info: ModelStageInfo | None, threshold: float) -> Gate | None:
    """The gate a model stage's record declares (None: no gate applies)."""
    if model_info is None or model_info.recall_splits is None:
        return None
    return Gate(model_info.recall_accuracy if model_info.recall_splits else None, tuple(model_info.recall_splits),
                threshold, model_info.recall_questions)


def cell_gate(record: CellRecord, threshold: float) -> Gate | None:
    """A finished cell's gate, from its model stage's record."""
    model = (record.stages or {}).get("model")
    return info_gate(ModelStageInfo.read(model), threshold) if model is not None else None


def cell_gates(records: Iterable[CellRecord], threshold: float) -> dict[str, Gate]:
    """Cell id -> gate, for the cells a gate applies to."""
    out = {}
    for r in records:
        g = cell_gate(r, threshold)
        if g is not None:
            out[r.cell] = g
    return out


def group_gate(split: str, cells: Iterable[str], gates: Mapping[str, Gate]) -> str:
    """``summary.csv``'s ``gate`` of a row pooling ``cells`` (its seeds): ``pass`` when every cell's
    gate passes, ``fail`` when one does not, empty where no gate applies (a recall split, an ungated
    condition)."""
    gs = [gates[c] for c in dict.fromkeys(cells) if c in gates and gates[c].applies_to(split)]
    if not gs:
        return ""
    return PASS if all(g.passed for g in gs) else FAIL


def merged(gates: Iterable[Gate]) -> Gate | None:
    """One gate for several cells of a condition (its seeds): the weakest seed's (the lowest recall;
    not scored if any seed's was not); None when there is none."""
    gs = list(gates)
    if not gs:
        return None
    if any(g.recall is None for g in gs):
        return next(g for g in gs if g.recall is None)
    return min(gs, key=lambda g: g.recall)


def export_metadata(record: CellRecord, threshold: float) -> dict[str, Any]:
    """What an export of the cell says of its gate (empty when none applies): the recall, its splits,
    the threshold and the verdict, and which splits it covers (the latent ones)."""
    g = cell_gate(record, threshold)
    if g is None:
        return {}
    return {"recall_gate": {"threshold": threshold, "recall": g.recall, "recall_splits": list(g.splits),
                            "recall_questions": g.questions, "verdict": g.verdict, "label": g.label(),
                            "applies_to": "every split but the recall splits"}}


def split_gate(record: CellRecord, threshold: float, split: str) -> str:
    """One row's gate as ``summary.csv`` writes it (pass, fail, or empty)."""
    g = cell_gate(record, threshold)
    return g.verdict if g is not None and g.applies_to(split) else ""


def run_threshold(run_dir: Any) -> float:
    """The study's ``recall_gate`` as its run folder's config.yaml holds it (the default if absent)."""
    from pathlib import Path

    import yaml

    try:
        raw = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
        value = raw.get("recall_gate", DEFAULT_THRESHOLD) if isinstance(raw, dict) else DEFAULT_THRESHOLD
        return float(value)
    except (OSError, yaml.YAMLError, TypeError, ValueError):
        return DEFAULT_THRESHOLD
