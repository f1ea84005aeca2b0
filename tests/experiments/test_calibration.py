"""The calibration ladder: a model trained from scratch records its recall and its in-context reading
rungs; where a rung fails, a cell that puts documents before the question is not a test of P2 (its
summary.csv gate, the report's top line and ladder section, the terminal, the exports)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from genmodes.cli import main
from genmodes.conditions.base import CalibrationRung, ModelStageInfo
from genmodes.experiments.gates import (FAIL, NOT_A_TEST_OF_P2, PASS, Gate, Rung, calibration_failures, cell_gate,
                                        export_metadata, info_gate, merged, split_gate)
from genmodes.experiments.records import CellRecord

REL = {"n_relations": 16, "n_entities": 32, "heldout_fraction": 0.5, "n_episodes": 8, "n_filler": 0,
       "n_trained_questions": 8, "fresh_episode_fraction": 1.0, "n_episode_entities": 40,
       "lookup_split": True, "episode_split": True}
TINY = {"n_layers": 1, "d_model": 32, "n_heads": 2, "seq_len": 64, "batch_size": 4, "steps": 3, "warmup_steps": 1,
        "eval_every": 3, "eval_questions": 4, "checkpoint_every": 1000}
CALIBRATION = ["lookup_in_context", "episode_in_context"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A tiny from-scratch study (3 steps: it reads nothing) with a parametric and an oracle cell."""
    tmp = tmp_path_factory.mktemp("ladder")
    cfg = {"name": "ladder", "model": "scratch", "seeds": [0],
           "datasets": [{"name": "rel", "family": "relations", "settings": REL}],
           "conditions": [{"name": "parametric", "kind": "from_scratch", "settings": {"context": "none", **TINY}},
                          {"name": "oracle", "kind": "from_scratch", "settings": {"context": "oracle", "k": 2, **TINY}}]}
    path = tmp / "ladder.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = tmp / "run"
    capture = pytest.MonkeyPatch()
    import io
    import sys

    buf = io.StringIO()
    capture.setattr(sys, "stdout", buf)
    try:
        assert main(["run", str(path), "--out", str(out)]) == 0
    finally:
        capture.undo()
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    records = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    return out, rows, records, buf.getvalue()


def gate(rows, split, condition):
    return next(r["gate"] for r in rows if r["split"] == split and r["condition"] == condition)


def test_from_scratch_records_recall_and_its_calibration_ladder(study):
    _, _, records, _ = study
    assert {r["condition"] for r in records} == {"parametric", "oracle"}
    for r in records:
        model = r["stages"]["model"]
        assert model["recall_splits"] == ["trained"] and model["recall_questions"] == 8
        assert 0 <= model["recall_accuracy"] <= 1
        assert [(r["split"], r["threshold"], r["questions"]) for r in model["calibration"]] == \
            [(s, 0.95, 8) for s in CALIBRATION]
        assert set(model["steps_to_90"]) >= set(CALIBRATION)  # the learning curve samples the rungs too
    # the oracle cell rescored the rungs with each question's own context: the same model, the same numbers
    by = {r["condition"]: r["stages"]["model"] for r in records}
    assert by["oracle"]["calibration"] == by["parametric"]["calibration"]
    assert by["oracle"]["recall_accuracy"] == by["parametric"]["recall_accuracy"]
    # three steps read nothing: every rung is below its 95% gate
    assert all(r["accuracy"] < 0.95 for r in by["oracle"]["calibration"])


def test_a_failed_rung_makes_the_retrieval_rows_no_test_of_p2(study):
    out, rows, records, terminal = study
    oracle = CellRecord.model_validate(next(r for r in records if r["condition"] == "oracle"))
    parametric = CellRecord.model_validate(next(r for r in records if r["condition"] == "parametric"))
    g = cell_gate(oracle, 0.9)
    assert g.rungs and not g.calibrated and g.verdict == FAIL
    assert [r.split for r in g.failed_rungs()] == CALIBRATION
    assert not cell_gate(parametric, 0.9).rungs  # no documents in its context: its recall gate alone
    # summary.csv: the oracle's latent rows fail; its recall and calibration rows carry no gate
    assert gate(rows, "heldout_reversal_in_context", "oracle") == FAIL
    assert gate(rows, "heldout_reversal", "oracle") == FAIL
    for split in ["trained"] + CALIBRATION:
        assert gate(rows, split, "oracle") == gate(rows, split, "parametric") == ""
    # the report: the headline first, the ladder before the accuracy tables, the rows marked
    md = (out / "report.md").read_text()
    lines = md.splitlines()
    assert lines[0] == "# Report: ladder"
    headline = next(l for l in lines[1:] if l.strip())
    assert headline.startswith("**Calibration gate failed (rel / oracle seed 0: lookup_in_context ")
    assert headline.endswith(f"): the retrieval rows are {NOT_A_TEST_OF_P2}.**")
    assert "parametric seed" not in headline
    assert md.index("## Calibration ladder") < md.index("## Accuracy")
    ladder = md[md.index("## Calibration ladder"):md.index("## Accuracy")]
    row = next(l for l in ladder.splitlines() if l.startswith("| scratch (parametric, oracle) | 0 |"))
    assert row.count("(gate 95%: fail)") == 2 and row.rstrip(" |").endswith("fail")
    acc = md[md.index("## Accuracy"):]
    oracle_row = next(l for l in acc.splitlines() if l.startswith("| oracle |"))
    assert "does not read its context: lookup_in_context" in oracle_row and f"— {NOT_A_TEST_OF_P2}" in oracle_row
    assert "does not read its context" not in next(l for l in acc.splitlines() if l.startswith("| parametric |"))
    # the terminal and the exports
    assert "Calibration gate failed (rel / oracle seed 0: lookup_in_context" in terminal
    meta = export_metadata(oracle, 0.9)
    assert meta["calibration_gate"]["verdict"] == FAIL and meta["gate"]["verdict"] == FAIL
    assert [r["split"] for r in meta["calibration_gate"]["rungs"]] == CALIBRATION
    assert "calibration_gate" not in export_metadata(parametric, 0.9)
    assert split_gate(oracle, 0.9, "lookup_in_context") == "" and split_gate(oracle, 0.9, "heldout_reversal") == FAIL


def _record(recall: float, calibration: dict, context_stage: str = "retrieval") -> CellRecord:
    model = ModelStageInfo(recall_splits=["trained"], recall_accuracy=recall, recall_questions=8,
                           calibration=[CalibrationRung(split=s, threshold=0.95, accuracy=a) for s, a in calibration.items()])
    return CellRecord(cell="c", model="scratch", dataset="rel", condition="oracle", condition_kind="from_scratch",
                      model_stage="scratch", context_stage=context_stage, seed=0, n_questions=1,
                      stages={"model": model.model_dump(exclude_none=True), "context": {}}, dataset_hash="h",
                      key="k", key_parts={}, finished_at="now", versions={},
                      timings={"prepare_s": 0, "score_s": 0, "total_s": 0})


def test_gates_of_the_ladder():
    knows = _record(1.0, {"lookup_in_context": 0.41, "episode_in_context": 1.0})
    g = cell_gate(knows, 0.9)
    assert g.recall_passed and not g.passed  # the facts are known, the context is not read
    assert g.label() == ("knows the facts: 100%; does not read its context: lookup_in_context 41% (gate 95%) "
                         f"— {NOT_A_TEST_OF_P2}")
    assert calibration_failures([knows], 0.9) == ["rel / oracle seed 0: lookup_in_context 41% (gate 95%)"]
    reads = cell_gate(_record(1.0, {"lookup_in_context": 0.97, "episode_in_context": None}), 0.9)
    assert not reads.passed and "episode_in_context not scored (gate 95%)" in reads.label()
    ok = cell_gate(_record(0.95, {"lookup_in_context": 0.97}), 0.9)
    assert ok.passed and ok.label() == "knows the facts: 95%; reads its context: lookup_in_context 97%"
    # a cell without documents in context is gated by recall alone, even by a model that reads nothing
    assert cell_gate(_record(0.95, {"lookup_in_context": 0.1}, "none"), 0.9).verdict == PASS
    # both can fail at once
    both = cell_gate(_record(0.2, {"lookup_in_context": 0.1}), 0.9)
    assert both.label().startswith("did not learn them: 20% — not a test; does not read its context")
    # seeds merged: the weakest recall and each rung at its weakest seed
    m = merged([ok, g])
    assert m.recall == 0.95 and {r.split: r.accuracy for r in m.rungs} == {"lookup_in_context": 0.41,
                                                                          "episode_in_context": 1.0}
    # a model that learned nothing of the dataset (pretrained + retrieval): its ladder alone
    pre = info_gate(ModelStageInfo(calibration=[CalibrationRung(split="lookup_in_context", threshold=0.95,
                                                                accuracy=0.3)]), 0.9, reads_documents=True)
    assert not pre.recall_applies and pre.verdict == FAIL and pre.label().startswith("does not read its context")
    assert info_gate(ModelStageInfo(), 0.9, reads_documents=True) is None
    assert Gate(0.3, ("forward",), 0.9, rungs=(Rung("x", 1.0, 0.9),)).applies_to("x") is False
    # P2's ablation (a model trained without practice): its ladder is shown, gates nothing
    ablation = ModelStageInfo(recall_splits=["trained"], recall_accuracy=1.0, trained_without_practice=True,
                              calibration=[CalibrationRung(split="lookup_in_context", threshold=0.95, accuracy=0.28)])
    g_abl = info_gate(ablation, 0.9, reads_documents=True)
    assert g_abl.passed and not g_abl.rungs and g_abl.label() == "knows the facts: 100%"
    assert not g_abl.applies_to("lookup_in_context")  # still a reading check, never a latent result


def test_the_ablation_trained_without_practice_is_shown_on_its_ladder_not_gated(tmp_path):
    cfg = {"name": "ablation", "model": "scratch", "seeds": [0],
           "datasets": [{"name": "rel", "family": "relations", "settings": REL}],
           "conditions": [{"name": "oracle_no_episodes", "kind": "from_scratch",
                           "settings": {"context": "oracle", "k": 2, "include_episodes": False, **TINY}}]}
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out)]) == 0
    rec = json.loads((out / "cells.jsonl").read_text().splitlines()[0])
    model = rec["stages"]["model"]
    assert model["trained_without_practice"] is True and model["calibration"]
    # its rows are gated by recall alone (3 steps learn nothing: "not a test", never "not a test of P2")
    report = (out / "report.md").read_text()
    assert "Calibration gate failed" not in report and NOT_A_TEST_OF_P2 not in report
    assert "trained without practice: the ablation's result, gates nothing" in report

