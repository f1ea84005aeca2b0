"""A thinking / RL study through the runner: every thought beside its question, splits that
say RL vs transfer, RL questions never scored, the report's thinking sections."""

import json

import pytest
import yaml

from genmodes.cli import main

FT = {"steps": 2, "batch_size": 4, "seq_len": 64}
RC = {"n_people_a": 6, "n_people_d": 0, "n_people_b": 0, "n_paraphrases": 2, "n_test_paraphrases": 1}


@pytest.mark.slow
def test_thinking_study_runs_and_keeps_rl_questions_out_of_evaluation(tmp_path):
    cfg = {"name": "think", "model": "tiny-random", "seeds": [0],
           "datasets": [{"name": "syl_a", "family": "simple_syllogisms", "seed": 0, "settings": {"n_examples": 6}},
                        {"name": "syl_b", "family": "simple_syllogisms", "seed": 1, "settings": {"n_examples": 6}},
                        {"name": "rev_a", "family": "reversal_curse", "seed": 0, "settings": RC}],
           "conditions": [
               {"name": "finetune", "model": {"kind": "finetune_all", **FT}},
               {"name": "rl+thinking", "context": {"kind": "thinking", "max_thought_tokens": 4},
                "model": {"kind": "rl", "rl_dataset": ["syl_a", "rev_a"], "steps": 2, "group_size": 2,
                          "prompts_per_step": 2, "max_thought_tokens": 4, "finetune": FT}}]}
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["run", str(p), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    thinking = [r for r in rows if r["condition"] == "rl+thinking"]
    assert thinking and all(isinstance(r["details"]["thought"], str) and r["details"]["retrieval"] in
                            ("stated", "partial", "false", "none") for r in thinking)
    assert all("thought" not in r.get("details", {}) for r in rows if r["condition"] == "finetune")
    for r in rows:
        assert r["split"].endswith("/rl" if r["dataset"] in ("syl_a", "rev_a") else "/transfer")
    rl_qs = {q for c in cells for q in c["stages"]["model"].get("rl_questions", [])}
    assert rl_qs and not rl_qs & {r["question_id"] for r in rows if r["dataset"] in ("syl_a", "rev_a")}
    # one fine-tuned checkpoint for the whole study: the same for every cell of both conditions
    ckpts = {c["stages"]["model"]["checkpoint"] for c in cells if c["condition"] == "finetune"}
    assert len(ckpts) == 1
    report = (out / "report.md").read_text()
    for section in ("RL: reward and thought length", "RL compute", "Example thoughts", "Implicit retrieval",
                    "Thinking compute"):
        assert section in report


SS = {"subtrees": ["canine"], "n_documents": 1, "n_qa_items": 0, "holdout_mentions": 1, "n_holdout_categories": 2,
      "questions_per_split": 10, "probe_questions_per_split": 0}


@pytest.mark.slow
def test_thinking_controls_study_reports_gates_first_and_pairs_every_control(tmp_path, monkeypatch):
    # the knowledge fine-tune to the gate (one epoch at most): one run, shared by every condition
    rule = {"until_recall": 0.9, "max_epochs": 1, "batch_size": 4, "seq_len": 64, "recall_drills": "answer"}
    ft = {"kind": "finetune_all", **rule}
    rl = {"kind": "rl", "method": "expert_iteration", "answerer": "frozen", "rl_dataset": ["semantic_a"],
          "max_thought_tokens": 4, "finetune": rule,
          "expert_iteration": {"rounds": 1, "samples": 2, "epochs": 1, "batch_size": 2, "seq_len": 64}}
    cfg = {"name": "controls", "model": "tiny-random", "seeds": [0],
           "datasets": [{"name": "semantic_a", "family": "semantic_structure", "seed": 0,
                         "splits": ["rephrase", "syllogism"], "max_per_split": 6,
                         "settings": {**SS, "vocabulary": {"part": 0, "of": 2}}},
                        {"name": "semantic_b", "family": "semantic_structure", "seed": 1,
                         "splits": ["rephrase", "syllogism"], "max_per_split": 6,
                         "settings": {**SS, "vocabulary": {"part": 1, "of": 2}}}],
           "conditions": [
               {"name": "finetune", "model": ft},
               {"name": "finetune+thinking", "model": ft, "context": {"kind": "thinking", "max_thought_tokens": 4}},
               {"name": "rl+thinking", "model": rl, "context": {"kind": "thinking", "max_thought_tokens": 4}},
               {"name": "rl+empty_thought", "model": rl, "context": {"kind": "thinking", "thought": "empty"}},
               {"name": "rl+shuffled_thought", "model": rl,
                "context": {"kind": "thinking", "max_thought_tokens": 4, "thought": "shuffled"}},
               {"name": "oracle_thought", "model": ft, "context": {"kind": "thinking", "thought": "oracle"}}]}
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["run", str(p), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    # both gates come before any result; a random model knows no fact, so gate (a) fails and the RL
    # rows say they are not a test of P3
    gates = report.index("## Gates: is this run a test of P3?")
    assert gates < report.index("### Gate (a): the fine-tuned model knows the facts") < report.index("## Accuracy")
    assert gates < report.index("### Gate (b): the oracle thought") < report.index("## Accuracy")
    assert "(a) recall" in report[gates:report.index("### Gate (a)")]
    recall = report[report.index("### Gate (a)"):report.index("### Gate (b)")]
    assert "**Failed.**" in recall and "| semantic_a |" in recall and "| semantic_b |" in recall
    for section in ("Thinking: the controls, paired", "Thoughts before and after RL",
                    "RL by expert iteration: sampled, kept and retrieved, per round", "Implicit retrieval"):
        assert section in report
    controls = report[report.index("## Thinking: the controls"):report.index("## Thoughts before")]
    for cond in ("finetune (answers directly, the thinker's start)", "rl+empty_thought (empty thought, same weights)",
                 "rl+shuffled_thought (another question's thought, same weights)", "oracle_thought (gold premises)"):
        assert cond in controls
    marked = [line for line in controls.splitlines() if "not a test of P3" in line and line.startswith("| ")]
    assert sorted(line.split(" ")[1] for line in marked) == ["rl+empty_thought", "rl+shuffled_thought", "rl+thinking"]
    # the one knowledge fine-tune is shown once, in one row naming every condition built on it; the
    # one RL model once per round, naming the conditions that score it
    assert report.count("## Training to the gate") == 1
    gate = table_rows(report, "## Training to the gate")
    assert len(gate) == 1 and gate[0][:3] == ["semantic_a, semantic_b", ", ".join(c["name"] for c in cfg["conditions"]),
                                               "0"]
    # and each dataset's recall after each epoch, the weakest holding training back
    section = report[report.index("## Training to the gate"):].split("\n## ")[0]
    per = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
           if line.startswith("| semantic_") and line.count("|") == 5]
    assert [r[:2] for r in per] == [["semantic_a", "0"], ["semantic_b", "0"]]
    for name, _, curve, first in per:
        recall = float(curve.removeprefix("1: ").rstrip("%")) / 100
        assert first == ("1" if recall >= 0.9 else "not in 1")
    rounds = table_rows(report, "## RL by expert iteration")
    assert [r[:3] for r in rounds] == [["rl+thinking, rl+empty_thought, rl+shuffled_thought", "0", "1"]]
    assert [r[:2] for r in table_rows(report, "## RL compute")] == [["rl+thinking, rl+empty_thought, "
                                                                     "rl+shuffled_thought", "0"]]
    # with both gates passing, nothing is marked
    from genmodes.conditions import thinking

    monkeypatch.setattr(thinking, "recall_gate", lambda view: ([], True))
    monkeypatch.setattr(thinking, "oracle_gate_verdict", lambda view, threshold=0.25: ([], True))
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "**Gates: both pass.**" in report and "not a test of P3" not in report
    summary = (out / "summary.csv").read_text().splitlines()
    header = summary[0].split(",")
    assert "retrieval_rate" in header
    col = header.index("retrieval_rate")
    for line in summary[1:]:
        cells = line.split(",")
        thinking = cells[header.index("condition")] != "finetune"
        assert (cells[col] != "") == thinking, line
        if cells[header.index("condition")] == "oracle_thought" and "rephrase" not in line:
            assert float(cells[col]) == 1.0


def table_rows(report: str, heading: str) -> list[list[str]]:
    """The body rows of the first table under ``heading``, cells stripped."""
    lines = report[report.index(heading):].split("\n## ")[0].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    table = lines[start:end]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table[1:] if not line.startswith("|---")]
