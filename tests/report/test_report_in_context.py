"""Report: per in_context cell, documents kept, questions without support, and accuracy on the
questions whose support was in context beside the overall figure (issue 17)."""

from __future__ import annotations

import json

import yaml

from genmodes.report import build_report


def test_in_context_section_counts_and_accuracy_on_supported_questions(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    cfg = {"name": "t", "model": "tiny-random", "seeds": [0],
           "datasets": [{"name": "rev", "family": "reversal_curse"}],
           "conditions": [{"name": "pretrained"}, {"name": "in_context"}]}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = []
    for cond in ("pretrained", "in_context"):
        for i in range(10):
            # in_context: q0-q3 lost their support, and of those only q0 is right; q4-q9 all right but q9
            rows.append({"cell": f"rev__{cond}__s0", "model": "tiny-random", "dataset": "rev", "family": "x",
                         "split": "reversal", "subtype": "", "condition": cond, "condition_kind": cond, "seed": 0,
                         "question_id": f"q{i}", "answer": 0, "chance": 0.25, "scores": [], "chosen": 0,
                         "chosen_norm": 0, "correct": i == 0 or 4 <= i < 9, "correct_norm": True,
                         "context_tokens": 10})
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cells = [{"cell": f"rev__{cond}__s0", "model": "tiny-random", "dataset": "rev", "condition": cond,
              "condition_kind": cond, "seed": 0, "n_questions": 10, "timings": {}, "info": info}
             for cond, info in [("pretrained", {"train_seconds": 0.0}),
                                ("in_context", {"documents": 3600, "documents_in_context": 261,
                                                "questions_without_support": 4,
                                                "questions_without_support_ids": ["q0", "q1", "q2", "q3"]})]]
    (run / "cells.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cells))
    md = build_report(run)[0].read_text()
    assert "## In context: documents kept and questions left without support" in md
    section = md.split("## In context")[1].split("\n## ")[0]
    line = next(l for l in section.splitlines() if l.startswith("| rev") and "in_context" in l)
    cols = [c.strip() for c in line.strip("|").split("|")]
    assert cols == ["rev", "in_context", "0", "261 of 3600", "4", "60% (n=10)", "83.3% (n=6)"]
    assert not any(l.startswith("| rev") and "| pretrained |" in l
                   for l in md.split("## In context")[1].split("\n## ")[0].splitlines())
