"""Recall gates: a failure to generalize counts only where the model knows the facts.

P2 reports "trained 100%, held-out 0%": a latent split (a reversal, a syllogism, a held-out category,
a probe) tests generalization from the parameters only if the trained facts are in them. A model
stage that puts the dataset's knowledge into the parameters (``RECALL_GATE``: fine-tuning,
augmentation, from scratch, RL) records its recall accuracy on the dataset's recall splits, scored
on the built model with no context (``ModelStageInfo.recall_*``). Against the study's threshold
(``recall_gate``, default 0.9) that makes the cell's gate: ``pass`` (knows the facts) or ``fail``
(did not learn them, or recall was not scored), on every latent row of the cell; recall rows, cells
whose model learned nothing (pretrained, a baseline) and runs recorded before gates carry none.

The calibration ladder: a result with documents in the context (oracle retrieval, in-context
learning) tests P2's claim that retrieved episodes help only if the model reads its context at all.
A dataset declares its rungs (``meta["calibration_splits"]``, split -> threshold: in-context reading
checks whose own context holds the answer, over entities training never binds); every model's
accuracy on them is recorded (``ModelStageInfo.calibration``), and a cell whose context stage reads
documents (``READS_DOCUMENTS``) fails its gate on every row but the recall and calibration splits when
a rung is below its threshold (or was not scored): *not a test of P2*. Both gates may fail at once. A
model trained without practice (``ModelStageInfo.trained_without_practice``, P2's ablation) is shown on
its ladder but not gated by it: that it does not read is what the ablation measures.

Torch-free: the runner's summary, the report and the exports read gates from the cell records.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from genmodes.conditions.base import ModelStageInfo
from genmodes.experiments.records import CellRecord

DEFAULT_THRESHOLD = 0.9
PASS, FAIL = "pass", "fail"
NOT_A_TEST = "not a test"
NOT_A_TEST_OF_P2 = "not a test of P2"


@dataclass(frozen=True)
class Rung:
    """One rung of the calibration ladder: a split's accuracy (None: not scored) against its threshold."""

    split: str
    accuracy: float | None
    threshold: float

    @property
    def passed(self) -> bool:
        return self.accuracy is not None and self.accuracy >= self.threshold

    def text(self) -> str:
        got = "not scored" if self.accuracy is None else _pct(self.accuracy)
        return f"{self.split} {got} (gate {_pct(self.threshold)})"


@dataclass(frozen=True)
class Gate:
    """One cell's gate: its recall accuracy (None: not scored) on ``splits``, against ``threshold``;
    and, where the cell reads documents in its context, the calibration ladder (``rungs``).
    ``recall_applies`` False: a model that learned nothing of the dataset, gated by its ladder alone."""

    recall: float | None
    splits: tuple[str, ...]
    threshold: float
    questions: int | None = None
    rungs: tuple[Rung, ...] = ()
    recall_applies: bool = True
    # the splits of the model's calibration ladder, gated or not: reading checks, never a latent result
    ladder_splits: tuple[str, ...] = ()

    @property
    def recall_passed(self) -> bool:
        return not self.recall_applies or (self.recall is not None and self.recall >= self.threshold)

    @property
    def calibrated(self) -> bool:
        """Every rung at or above its threshold (True where no ladder applies)."""
        return all(r.passed for r in self.rungs)

    @property
    def passed(self) -> bool:
        return self.recall_passed and self.calibrated

    @property
    def verdict(self) -> str:
        return PASS if self.passed else FAIL

    @property
    def recall_verdict(self) -> str:
        return PASS if self.recall_passed else FAIL

    def failed_rungs(self) -> list[Rung]:
        return [r for r in self.rungs if not r.passed]

    def applies_to(self, split: str) -> bool:
        """A latent split: every split but the recall and calibration splits (the gate's own measures)."""
        return split not in self.splits and split not in self.ladder_splits and all(split != r.split for r in self.rungs)

    def recall_label(self) -> str:
        if self.recall is None:
            return f"recall not scored — {NOT_A_TEST}"
        if self.recall >= self.threshold:
            return f"knows the facts: {_pct(self.recall)}"
        return f"did not learn them: {_pct(self.recall)} — {NOT_A_TEST}"

    def calibration_label(self) -> str:
        failed = self.failed_rungs()
        if failed:
            return f"does not read its context: {', '.join(r.text() for r in failed)} — {NOT_A_TEST_OF_P2}"
        return "reads its context: " + ", ".join(f"{r.split} {_pct(r.accuracy)}" for r in self.rungs)

    def label(self) -> str:
        """What the report says beside the cell's latent results."""
        parts = [self.recall_label()] if self.recall_applies else []
        if self.rungs:
            parts.append(self.calibration_label())
        return "; ".join(parts)


def _pct(x: float) -> str:
    s = f"{100 * x:.1f}"
    return (s.rstrip("0").rstrip(".") if "." in s else s) + "%"


def ladder(model_info: ModelStageInfo | None) -> tuple[Rung, ...]:
    """The calibration rungs a model stage's record holds (every declared split, in declared order)."""
    if model_info is None or not model_info.calibration:
        return ()
    return tuple(Rung(r.split, r.accuracy, r.threshold) for r in model_info.calibration)


def info_gate(model_info: ModelStageInfo | None, threshold: float, reads_documents: bool = False) -> Gate | None:
    """The gate a model stage's record declares (None: no gate applies): its recall gate, and its
    calibration ladder when the cell reads documents in its context."""
    if model_info is None:
        return None
    own = ladder(model_info)
    # the ablation trained without practice: not reading is its result, so its ladder gates nothing
    rungs = own if reads_documents and not model_info.trained_without_practice else ()
    splits = tuple(r.split for r in own)
    if model_info.recall_splits is None:
        return Gate(None, (), threshold, rungs=rungs, recall_applies=False, ladder_splits=splits) if rungs else None
    return Gate(model_info.recall_accuracy if model_info.recall_splits else None, tuple(model_info.recall_splits),
                threshold, model_info.recall_questions, rungs, ladder_splits=splits)


def cell_gate(record: CellRecord, threshold: float) -> Gate | None:
    """A finished cell's gate, from its model stage's record and whether its context stage reads
    documents."""
    from genmodes.conditions import reads_documents

    model = (record.stages or {}).get("model")
    if model is None:
        return None
    return info_gate(ModelStageInfo.read(model), threshold, reads_documents(record.context_stage))


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
    not scored if any seed's was not), with each rung at its weakest seed's accuracy; None when there
    is none."""
    gs = list(gates)
    if not gs:
        return None
    if any(g.recall is None and g.recall_applies for g in gs):
        worst = next(g for g in gs if g.recall is None and g.recall_applies)
    else:
        worst = min(gs, key=lambda g: g.recall if g.recall_applies and g.recall is not None else float("inf"))
    if not any(g.rungs for g in gs):
        return worst
    low: dict[str, Rung] = {}
    for g in gs:
        for r in g.rungs:
            old = low.get(r.split)
            if old is None or (old.accuracy is not None and (r.accuracy is None or r.accuracy < old.accuracy)):
                low[r.split] = r
    return replace(worst, rungs=tuple(low.values()))


def export_metadata(record: CellRecord, threshold: float) -> dict[str, Any]:
    """What an export of the cell says of its gates (empty when none applies): the recall, its splits,
    the threshold and the verdict; the calibration ladder's rungs and verdict where the cell reads
    documents; and which splits they cover (the latent ones)."""
    g = cell_gate(record, threshold)
    if g is None:
        return {}
    out: dict[str, Any] = {}
    if g.recall_applies:
        out["recall_gate"] = {"threshold": threshold, "recall": g.recall, "recall_splits": list(g.splits),
                              "recall_questions": g.questions, "verdict": g.recall_verdict, "label": g.recall_label(),
                              "applies_to": "every split but the recall splits"}
    if g.rungs:
        out["calibration_gate"] = {
            "rungs": [{"split": r.split, "accuracy": r.accuracy, "threshold": r.threshold,
                       "verdict": PASS if r.passed else FAIL} for r in g.rungs],
            "verdict": PASS if g.calibrated else FAIL, "label": g.calibration_label(),
            "applies_to": "every split but the recall and calibration splits"}
    out["gate"] = {"verdict": g.verdict, "label": g.label()}
    return out


def calibration_failures(records: Iterable[CellRecord], threshold: float, label: Any = None) -> list[str]:
    """One line per cell that reads documents and fails a rung of its calibration ladder
    (``label(record)``: how to name the cell; default dataset / condition seed N)."""
    out = []
    for r in records:
        g = cell_gate(r, threshold)
        if g is None or g.calibrated:
            continue
        name = label(r) if label is not None else f"{r.dataset} / {r.condition} seed {r.seed}"
        out.append(f"{name}: {', '.join(x.text() for x in g.failed_rungs())}")
    return out


def calibration_headline(failures: list[str]) -> str:
    """The line a report or a terminal puts first when a calibration rung failed."""
    return f"Calibration gate failed ({'; '.join(failures)}): the retrieval rows are {NOT_A_TEST_OF_P2}."


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
