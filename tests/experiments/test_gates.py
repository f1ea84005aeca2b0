"""Recall gates in a study: a trained model that did not learn the facts has its latent rows marked
"not a test" in the terminal table, the report and summary.csv; the gate passes where recall reaches
the study's threshold; exports carry it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from genmodes.cli import main
from genmodes.experiments.gates import FAIL, PASS, Gate, group_gate, merged

TINY_RC = {"n_people_a": 4, "n_people_d": 0, "n_people_b": 2, "n_paraphrases": 3, "n_test_paraphrases": 2}
FT = {"steps": 1, "batch_size": 2, "seq_len": 64}
CONDITIONS = [{"name": "pretrained"},
              {"name": "finetune", "settings": FT},
              {"name": "finetune+rag", "model": {"kind": "finetune", **FT}, "context": {"kind": "retrieval", "k": 1}},
              {"name": "rag", "kind": "retrieval", "settings": {"method": "oracle", "k": 1}},
              {"name": "baseline_cooccurrence", "kind": "baseline", "settings": {"method": "cooccurrence"}}]


def run_study(tmp_path: Path, capsys, name: str = "gated", **over) -> tuple[Path, list[dict], str]:
    cfg = {"name": name, "model": "tiny-random", "seeds": [0],
           "datasets": [{"name": "rc", "family": "reversal_curse", "settings": TINY_RC}],
           "conditions": CONDITIONS, **over}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = tmp_path / name
    assert main(["run", str(path), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    return out, rows, table


def gate(rows: list[dict], split: str, condition: str) -> str:
    return next(r["gate"] for r in rows if r["split"] == split and r["condition"] == condition)


def md_row(md: str, first: str) -> list[str]:
    line = next(l for l in md.splitlines() if l.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split(" | ")]


def test_a_fine_tune_that_did_not_learn_the_facts_is_not_a_test(tmp_path, capsys):
    out, rows, table = run_study(tmp_path, capsys)
    assert list(rows[0]) == ["model", "dataset", "split", "condition", "n", "accuracy", "stderr", "chance", "ci_low",
                             "ci_high", "gate"]
    recall = {c["cell"]: c["stages"]["model"] for c in map(json.loads, (out / "cells.jsonl").read_text().splitlines())
              if "recall_splits" in c["stages"].get("model", {})}
    # every trained model reports its recall; one step of a tiny random model learns nothing
    assert set(recall) == {"rc__finetune__s0", "rc__finetune+rag__s0"}
    for info in recall.values():
        assert info["recall_splits"] == ["forward"] and info["recall_accuracy"] < 0.9
    # summary.csv: fail on the trained models' latent split, empty on their recall split and elsewhere
    for cond in ("finetune", "finetune+rag"):
        assert gate(rows, "reversal", cond) == FAIL and gate(rows, "forward", cond) == ""
    for cond in ("pretrained", "rag", "baseline_cooccurrence"):
        assert gate(rows, "reversal", cond) == gate(rows, "forward", cond) == ""
    # the terminal table
    ft_line = next(l for l in table.splitlines() if "│ finetune " in l)
    assert ft_line.count("not a test") == 1
    assert "not a test" not in next(l for l in table.splitlines() if "│ pretrained " in l)
    # the report: the latent cell marked, the gate column beside it, the recall split named
    md = (out / "report.md").read_text()
    row = md_row(md, "finetune")
    assert row[1].endswith("]") and row[2].endswith("] (not a test)")
    assert row[3].startswith("did not learn them: ") and row[3].endswith("— not a test")
    assert md_row(md, "pretrained")[2].endswith("]") and md_row(md, "pretrained")[3] == "–"
    assert "forward (recall; chance 25%)" in md and "## Recall gates" in md
    paired = [l for l in md.splitlines() if l.startswith("| rc | reversal | finetune - pretrained |")]
    assert paired and all(l.endswith("| finetune: not a test |") for l in paired)


def test_the_gate_passes_where_recall_reaches_the_threshold(tmp_path, capsys):
    out, rows, table = run_study(tmp_path, capsys, name="low", recall_gate=0.01)
    recall = [json.loads(c)["stages"].get("model", {}).get("recall_accuracy")
              for c in (out / "cells.jsonl").read_text().splitlines()]
    assert min(r for r in recall if r is not None) >= 0.01
    assert gate(rows, "reversal", "finetune") == PASS
    assert "not a test" not in table
    md = (out / "report.md").read_text()
    assert md_row(md, "finetune")[3].startswith("knows the facts: ")
    assert "recall_gate: 0.01" in (out / "config.yaml").read_text()


def test_a_study_that_scores_no_recall_split_has_no_test(tmp_path, capsys):
    out, rows, _ = run_study(tmp_path, capsys, name="norecall",
                             datasets=[{"name": "rc", "family": "reversal_curse", "settings": TINY_RC,
                                        "splits": ["reversal"]}])
    assert gate(rows, "reversal", "finetune") == FAIL and gate(rows, "reversal", "pretrained") == ""
    assert "recall not scored — not a test" in (out / "report.md").read_text()


def test_the_default_gate_leaves_config_yaml_as_before(tmp_path, capsys):
    out, _, _ = run_study(tmp_path, capsys, name="plain", conditions=[{"name": "pretrained"}])
    assert "recall_gate" not in (out / "config.yaml").read_text()


def test_group_gates():
    fail, ok = Gate(0.3, ("forward",), 0.9), Gate(0.95, ("forward",), 0.9)
    assert group_gate("reversal", ["a", "b"], {"a": ok, "b": ok}) == PASS
    assert group_gate("reversal", ["a", "b"], {"a": ok, "b": fail}) == FAIL
    assert group_gate("forward", ["a"], {"a": fail}) == ""  # the gate's own measure
    assert group_gate("reversal", ["c"], {"a": fail}) == ""  # an ungated cell
    assert merged([ok, fail]) is fail and merged([]) is None
    assert Gate(None, (), 0.9).label() == "recall not scored — not a test"
    assert ok.label() == "knows the facts: 95%" and fail.label() == "did not learn them: 30% — not a test"


@pytest.mark.parametrize("to", ["inspect", "lm-eval"])
def test_exports_carry_the_gate(tmp_path, capsys, to):
    if to == "inspect":
        pytest.importorskip("inspect_ai")
    out, _, _ = run_study(tmp_path, capsys)
    dest = tmp_path / "export"
    assert main(["data", "export", str(out), "--condition", "finetune", "--to", to, str(dest)]) == 0
    if to == "lm-eval":
        marker = json.loads(next(dest.glob("*.json")).read_text())
        assert marker["recall_gate"]["verdict"] == FAIL and marker["recall_gate"]["recall_splits"] == ["forward"]
        return
    from inspect_ai.log import read_eval_log

    log = read_eval_log(str(next(dest.glob("*.eval"))))
    assert log.eval.metadata["recall_gate"]["verdict"] == FAIL
    by_split = {s.metadata["split"]: s.metadata.get("gate") for s in log.samples}
    assert by_split == {"forward": None, "reversal": FAIL}



COMPARE = [{"a": "rag", "b": "finetune", "split": "reversal"}]
CONTRASTS = [{"a": "reversal", "b": "forward", "conditions": ["finetune", "rag"]}]


def test_declared_comparisons_and_split_contrasts_carry_the_gates(tmp_path, capsys):
    out, _, _ = run_study(tmp_path, capsys, name="asked", compare=COMPARE, compare_splits=CONTRASTS)
    md = (out / "report.md").read_text()
    declared = md[md.index("### Declared comparisons"):]
    line = next(l for l in declared.splitlines() if l.startswith("| rc | reversal | rag - finetune | 8 |"))
    assert line.endswith("| finetune: not a test |")
    start = md.index("### Declared split contrasts")
    contrasts = md[start:md.index("\n#", start + 1)]
    rows = {line.split(" | ")[1]: line for line in contrasts.splitlines() if line.startswith("| rc | ")}
    assert set(rows) == {"finetune", "rag"}
    assert "reversal - forward" in rows["rag"] and "| 8, 8 |" in rows["rag"]
    assert rows["finetune"].rstrip(" |").endswith("— not a test") and rows["rag"].rstrip().endswith("| – |")
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["compare"] == COMPARE and cfg["compare_splits"] == CONTRASTS


@pytest.mark.parametrize("contrast, msg", [
    ({"a": "reversal", "b": "forward", "conditions": ["nope"]}, "compare_splits[0].conditions: no condition named 'nope'"),
    ({"a": "reversal", "b": "reversal"}, "contrast two splits"),
    ({"a": "reversal", "b": "backward"}, "compare_splits[0].b: no split 'backward'"),
])
def test_a_bad_split_contrast_is_one_line(tmp_path, capsys, contrast, msg):
    cfg = {"name": "bad", "model": "tiny-random", "datasets": [{"family": "reversal_curse", "settings": TINY_RC}],
           "conditions": CONDITIONS, "compare_splits": [contrast]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "--out", str(tmp_path / "r"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0] and err[0].startswith("genmodes: error: ")
    assert not (tmp_path / "r").exists()
