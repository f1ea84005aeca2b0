"""Report: summary numbers on hand-made results, and reports built from fake run folders that follow
the runner's format (config.yaml, results.jsonl, cells.jsonl, curves files)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import re

import pytest
import yaml

from genmodes.errors import GenmodesError
from genmodes.report import build_report, summarize, write_summary_csv
from genmodes.report.commands import register

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row(dataset="rev", split="reversal", condition="pretrained", seed=0, subtype="a", correct=True,
        chance=0.5, cell=None, qid=None, model="tiny-random", kind=None, context_tokens=10):
    cell = cell or f"{dataset}__{condition}__s{seed}"
    family = {"rev": "simple_reversals", "syl": "simple_syllogisms"}.get(dataset, dataset)
    return {"cell": cell, "model": model, "dataset": dataset, "family": family, "split": split,
            "subtype": subtype, "condition": condition, "condition_kind": kind or condition, "seed": seed,
            "question_id": qid or f"q{id(object())}", "answer": 0, "chance": chance,
            "scores": [{"choice": "x", "logprob": -1.0, "n_tokens": 1, "is_greedy": True}],
            "chosen": 0 if correct else 1, "chosen_norm": 0, "correct": correct, "correct_norm": correct,
            "context_tokens": context_tokens}


def group(n_correct, n, **kw):
    return [row(correct=i < n_correct, qid=f"{kw.get('subtype', 'a')}{i}", **kw) for i in range(n)]


# ------------------------------------------------------------------------------------------ summarize

def test_summarize_accuracy_and_stderr_over_subtype_seed_groups():
    rows = (group(3, 4, subtype="a", seed=0) + group(2, 4, subtype="a", seed=1)
            + group(1, 4, subtype="b", seed=0) + group(4, 4, subtype="b", seed=1))
    [s] = summarize(rows)
    assert (s["dataset"], s["split"], s["condition"], s["n"]) == ("rev", "reversal", "pretrained", 16)
    assert s["accuracy"] == pytest.approx(10 / 16)
    # group accuracies .75 .5 .25 1.0: mean .625, squared deviations sum .3125, sample sd / sqrt(4)
    assert s["stderr"] == pytest.approx(math.sqrt(0.3125 / 3) / 2)
    assert s["chance"] == pytest.approx(0.5)


def test_summarize_binomial_fallback_for_one_group_and_mean_chance():
    rows = group(3, 4, chance=0.5)
    rows[0]["chance"] = rows[1]["chance"] = 0.25  # questions with 4 choices among 2-choice ones
    [s] = summarize(rows)
    assert s["accuracy"] == pytest.approx(0.75)
    assert s["stderr"] == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    assert s["chance"] == pytest.approx(0.375)
    [perfect] = summarize(group(4, 4))
    assert perfect["stderr"] == 0.0


def test_summarize_orders_by_first_appearance():
    rows = [row(dataset="d2", split="s2", condition="c2"), row(dataset="d1", split="s1", condition="c1"),
            row(dataset="d2", split="s1", condition="c1"), row(dataset="d2", split="s2", condition="c1"),
            row(dataset="d1", split="s1", condition="c2")]
    keys = [(s["dataset"], s["split"], s["condition"]) for s in summarize(rows)]
    assert keys == [("d2", "s2", "c2"), ("d2", "s2", "c1"), ("d2", "s1", "c1"),
                    ("d1", "s1", "c2"), ("d1", "s1", "c1")]


def test_summarize_names_a_missing_field():
    bad = row()
    del bad["correct"]
    with pytest.raises(GenmodesError, match="row 2: missing field 'correct'"):
        summarize([row(), bad])


def test_write_summary_csv_atomic_roundtrip(tmp_path):
    rows = summarize(group(3, 4) + group(1, 2, condition="in_context"))
    p = write_summary_csv(rows, tmp_path / "summary.csv")
    with p.open() as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["dataset", "split", "condition", "n", "accuracy", "stderr", "chance"]
    assert [(g["condition"], int(g["n"]), float(g["accuracy"])) for g in got] == [("pretrained", 4, 0.75),
                                                                                 ("in_context", 2, 0.5)]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["summary.csv"]  # no temporary left


# ------------------------------------------------------------------------------------------ run folders

CONFIG = {"name": "demo-study", "model": "tiny-random", "seeds": [0, 1],
          "datasets": [{"name": "rev", "family": "simple_reversals"}, {"name": "syl", "family": "simple_syllogisms"}],
          "conditions": [{"name": "pretrained", "kind": "pretrained", "settings": {}},
                         {"name": "icl", "kind": "in_context", "settings": {}},
                         {"name": "aug", "kind": "augmented_finetune", "settings": {}},
                         {"name": "rag", "kind": "retrieval", "settings": {"k": 2}}]}

INFO = {
    "pretrained": {"train_seconds": 0.0, "prefix_tokens": 0},
    "icl": {"train_seconds": 0.0, "prefix_tokens": 500, "kept_fraction": 0.5},
    "aug": {"train_seconds": 40.0, "finetune_seconds": 10.0, "generation_seconds": 30.0, "tokens_trained": 4000,
            "loss_curve": [[0, 3.0], [5, 2.0], [10, 1.2]],
            "augmentation": {"statements": 200, "true": 150, "false": 30, "unverifiable": 20,
                             "test_answers_stated": 12, "generated_documents": 40}},
    "rag": {"train_seconds": 0.0, "prefix_tokens": 0, "mean_context_tokens": 120.0, "recall_at_k": 0.8,
            "recall_at_k_by_split": {"reversal": 0.75, "forward": 0.85}, "k": 2},
}

# (dataset, condition) -> split -> per seed, per subtype (a, b): correct out of 4
CORRECT = {
    ("rev", "pretrained"): {"reversal": [[2, 2], [2, 2]], "forward": [[2, 3], [1, 2]]},
    ("rev", "icl"): {"reversal": [[4, 3], [4, 4]], "forward": [[4, 4], [4, 4]]},
    ("rev", "aug"): {"reversal": [[3, 4], [2, 4]], "forward": [[4, 4], [3, 4]]},
    ("rev", "rag"): {"reversal": [[3, 3], [3, 3]], "forward": [[4, 4], [4, 3]]},
    ("syl", "pretrained"): {"syllogism": [[1, 0], [0, 1]]},
    ("syl", "icl"): {"syllogism": [[3, 2], [2, 3]]},
    ("syl", "aug"): {"syllogism": [[4, 3], [3, 4]]},
    ("syl", "rag"): {"syllogism": [[2, 2], [2, 2]]},
}
CHANCE = {"rev": 0.5, "syl": 1 / 6}


def write_run(path, cells=None, unfinished=(), truncate_last=False, config=CONFIG, extra_info=None):
    """A run folder in the runner's format; ``cells`` limits which cells are finished."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    results, cell_rows = [], []
    for (ds, cond), splits in CORRECT.items():
        kind = next(c["kind"] for c in CONFIG["conditions"] if c["name"] == cond)
        for seed in (0, 1):
            cell = f"{ds}__{cond}__s{seed}"
            if cells is not None and cell not in cells and cell not in unfinished:
                continue
            # the runner's context_tokens: shared prefix + the question's own context (retrieved docs included)
            ctx_tokens = INFO[cond].get("prefix_tokens", 0) + INFO[cond].get("mean_context_tokens", 20)
            n = 0
            for split, per_seed in splits.items():
                for sub, k in zip("ab", per_seed[seed]):
                    for i in range(4):
                        results.append(row(ds, split, cond, seed, sub, i < k, CHANCE[ds], cell,
                                           f"{ds}-{split}-{sub}{i}", kind=kind, context_tokens=ctx_tokens))
                        n += 1
            if cell in unfinished:
                continue
            info = dict(INFO[cond], **((extra_info or {}).get(cell, {})))
            cell_rows.append({"cell": cell, "model": "tiny-random", "dataset": ds, "condition": cond,
                              "condition_kind": kind, "seed": seed, "n_questions": n,
                              "timings": {"prepare_s": 1.0 + seed, "score_s": 2.0 + seed, "total_s": 3.0 + 2 * seed},
                              "info": info})
    text = "".join(json.dumps(r) + "\n" for r in results)
    if truncate_last:
        text += json.dumps(row(cell="rev__pretrained__s0", qid="late"))[:40]
    (path / "results.jsonl").write_text(text)
    (path / "cells.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cell_rows))
    return path


def md_row(md, first_cell):
    """The cells of the markdown table row starting with ``first_cell``."""
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in\n{md}")


def section(md, title):
    m = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", md, re.S | re.M)
    assert m, f"no section {title!r}"
    return m.group(1)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    run = write_run(tmp_path_factory.mktemp("run") / "demo")
    md_path, html_path = build_report(run)
    return run, md_path, html_path, md_path.read_text(), html_path.read_text()


def test_report_accuracy_tables_match_summary(full_report):
    run, md_path, html_path, md, _ = full_report
    assert (md_path, html_path) == (run / "report.md", run / "report.html")
    assert md.startswith("# Report: demo-study\n")
    assert "Model `tiny-random`" in md and "seeds 0, 1" in md and "Cells finished: 16 of 16." in md
    rev = section(md, "rev (simple_reversals)")
    assert md_row(rev, "condition") == ["condition", "reversal (chance 50%)", "forward (chance 50%)"]
    # icl reversal: groups 4/4 3/4 4/4 4/4 -> 15/16 = 93.75%, sem of (1, .75, 1, 1) = .0625
    assert md_row(rev, "icl") == ["icl", "93.8% ± 6.2%", "100.0% ± 0.0%"]
    assert md_row(rev, "pretrained")[1] == "50.0% ± 0.0%"
    assert md_row(rev, "questions") == ["questions", "8", "8"]
    # conditions in config order
    assert [line.split("|")[1].strip() for line in rev.splitlines() if line.startswith("| ")][1:5] == \
        ["pretrained", "icl", "aug", "rag"]
    syl = section(md, "syl (simple_syllogisms)")  # the family comes from the result rows
    assert md_row(syl, "condition") == ["condition", "syllogism (chance 16.7%)"]
    exp = summarize([json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()])
    aug = next(s for s in exp if s["dataset"] == "syl" and s["condition"] == "aug")
    assert md_row(syl, "aug")[1] == f"{100 * aug['accuracy']:.1f}% ± {100 * aug['stderr']:.1f}%" == "87.5% ± 7.2%"


def test_report_figures_exist_and_html_embeds_them(full_report):
    run, _, _, md, html = full_report
    figs = sorted(p.name for p in (run / "figures").iterdir())
    assert figs == ["accuracy_rev.png", "accuracy_syl.png", "loss_rev.png", "loss_syl.png", "overview.png"]
    for f in figs:
        assert (run / "figures" / f).read_bytes()[:8] == PNG_MAGIC
        assert f"](figures/{f})" in md
    assert html.count('src="data:image/png;base64,') == 5
    assert "<img" in html and "figures/" not in html  # self-contained: no file references
    assert ">93.8% ± 6.2%</td>" in html


def test_report_augmentation_recall_and_compute_tables(full_report):
    _, _, _, md, _ = full_report
    audit = section(md, "Augmentation audit")
    assert md_row(audit, "rev") == ["rev", "aug", "0", "200", "150 (75%)", "30 (15%)", "20 (10%)", "12 (6%)", "40"]
    assert len([x for x in audit.splitlines() if x.startswith("| ")]) == 1 + 4  # header + 4 augmented cells
    recall = section(md, "Retrieval recall@k")
    assert md_row(recall, "dataset") == ["dataset", "condition", "seed", "k", "recall@k",
                                         "recall@k reversal", "recall@k forward"]
    assert "| rev | rag | 0 | 2 | 80% | 75% | 85% |" in recall
    compute = section(md, "Compute: train time vs test time")
    assert "| dataset | condition | kind | cells | train-time s (train + generation) | tokens trained | " \
           "context tokens / question | scoring s | total s | kept fraction |" in compute
    # aug: 40 s train time (10 s fine-tuning + 30 s generation, counted once); context tokens are the result rows' mean (icl: 500 prefix + 20
    # question tokens); scoring 2 and 3 s -> 2.5
    assert "| rev | aug | augmented_finetune | 2 | 40.0 | 4,000 | 20 | 2.50 | 4.00 | – |" in compute
    assert "| rev | rag | retrieval | 2 | 0.00 | – | 120 | 2.50 | 4.00 | – |" in compute
    assert "| rev | icl | in_context | 2 | 0.00 | – | 520 | 2.50 | 4.00 | 0.5 |" in compute


def test_report_without_results_is_one_clear_error(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    with pytest.raises(GenmodesError) as e:
        build_report(tmp_path)
    assert "no results.jsonl" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(GenmodesError, match="run folder not found"):
        build_report(tmp_path / "nope")
    assert not (tmp_path / "report.md").exists() and not (tmp_path / "figures").exists()


def test_corrupt_results_line_is_named(tmp_path):
    run = write_run(tmp_path / "r")
    lines = (run / "results.jsonl").read_text().splitlines(keepends=True)
    lines[3] = "{not json\n"
    (run / "results.jsonl").write_text("".join(lines))
    with pytest.raises(GenmodesError, match=r"results.jsonl line 4: invalid JSON"):
        build_report(run)


def test_partial_run_reports_finished_cells(tmp_path):
    done = {"rev__pretrained__s0", "rev__pretrained__s1", "rev__icl__s0"}
    run = write_run(tmp_path / "r", cells=done, unfinished={"rev__aug__s0"}, truncate_last=True)
    md_path, html_path = build_report(run)
    md = md_path.read_text()
    assert "Cells finished: 3 of 16. The run is incomplete or still in progress" in md
    assert "incomplete line (still being written)" in md
    assert "16 result rows of 1 unfinished cell(s) are left out (rev__aug__s0)" in md
    rev = section(md, "rev (simple_reversals)")
    assert md_row(rev, "icl (1 of 2 seeds)")[1] == "87.5% ± 12.5%"  # seed 0 only: groups 4/4, 3/4
    assert md_row(rev, "pretrained")[1] == "50.0% ± 0.0%"
    assert "aug" not in rev and "### syl" not in md
    assert html_path.read_text().count("data:image/png;base64,") == 2  # overview + accuracy


def test_run_with_no_finished_cell_still_reports(tmp_path):
    run = write_run(tmp_path / "r", cells=set())
    md = build_report(run)[0].read_text()
    assert "Cells finished: 0 of 16." in md and "No finished cells yet" in md


def test_training_curves_from_curves_file(tmp_path):
    rows = [{"step": s, "loss": 3.0 / (s + 1), "accuracy": {"seen": min(1.0, s / 10), "latent": 0.0}}
            for s in range(0, 30, 5)]
    run = tmp_path / "r"
    write_run(run, cells={"rev__pretrained__s0", "rev__icl__s0"},
              extra_info={"rev__pretrained__s0": {"curves_file": "cells/rev__pretrained__s0/curves.jsonl"},
                          "rev__icl__s0": {"curves_file": "cells/missing.jsonl"}})
    f = run / "cells" / "rev__pretrained__s0" / "curves.jsonl"
    f.parent.mkdir(parents=True)
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = build_report(run)[0].read_text()
    curves = section(md, "Training curves")
    assert "](figures/curves_rev__pretrained__s0.png)" in curves
    assert "rev__icl__s0: curves file cells/missing.jsonl not found." in curves
    assert (run / "figures" / "curves_rev__pretrained__s0.png").read_bytes()[:8] == PNG_MAGIC


def test_report_command_writes_to_out(tmp_path, capsys):
    run = write_run(tmp_path / "r", cells={"syl__icl__s0"})
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(run), "--out", str(tmp_path / "rep")])
    assert args.func(args) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(tmp_path / "rep" / "report.md"), str(tmp_path / "rep" / "report.html")]
    assert (tmp_path / "rep" / "figures" / "accuracy_syl.png").is_file()
    assert not (run / "report.md").exists()


def test_compute_falls_back_to_condition_info_for_context_tokens(tmp_path):
    run = write_run(tmp_path / "r", cells={"rev__icl__s0", "rev__rag__s0", "rev__aug__s0"})
    rows = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    for r in rows:
        del r["context_tokens"]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    compute = section(build_report(run)[0].read_text(), "Compute: train time vs test time")
    assert "| rev | icl | in_context | 1 | 0.00 | – | 500 | 2.00 | 3.00 | 0.5 |" in compute  # prefix only
    assert "| rev | rag | retrieval | 1 | 0.00 | – | 120 | 2.00 | 3.00 | – |" in compute  # 0 + mean retrieved
    assert "| rev | aug | augmented_finetune | 1 | 40.0 | 4,000 | – | 2.00 | 3.00 | – |" in compute


def test_cli_report_on_a_folder_without_results_exits_2_with_one_line(tmp_path, capsys):
    from genmodes import cli

    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("genmodes: error: ") and "no results.jsonl" in err


def test_odd_info_values_do_not_break_the_report(tmp_path):
    odd = {"train_seconds": "n/a", "generation_seconds": None, "recall_at_k": "?", "prefix_tokens": None,
           "augmentation": {"statements": 0, "true": None, "false": "x"}, "loss_curve": []}
    run = write_run(tmp_path / "r", cells={"rev__rag__s0"}, extra_info={"rev__rag__s0": odd})
    md = build_report(run)[0].read_text()
    assert "| rev | rag | 0 | 0 | – | x | – | – | – |" in section(md, "Augmentation audit")
    assert "| rev | rag | 0 | 2 | ? | 75% | 85% |" in section(md, "Retrieval recall@k")
    assert "| rev | rag | retrieval | 1 | – | 120 |" in section(md, "Compute: train time vs test time")
    assert "Training curves" not in md


def test_results_of_several_models_are_kept_apart(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    rows = ([row(model="m1", cell="c1", qid=f"q{i}", correct=i < 3) for i in range(4)]
            + [row(model="m2", cell="c2", qid=f"q{i}", correct=i < 1) for i in range(4)])
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = build_report(run)[0].read_text()
    assert md_row(md, "pretrained · m1")[1] == "75.0% ± 21.7%"
    assert md_row(md, "pretrained · m2")[1] == "25.0% ± 21.7%"
    assert "config.yaml is missing" in md and "cells.jsonl is missing" in md


def test_verification_audit_before_and_after(tmp_path):
    """A cell whose augmentations were verified shows the audit before and after verification."""
    aug = {"statements": 53, "true": 43, "false": 10, "unverifiable": 0, "test_answers_stated": 8,
           "verification": {"margin": 0.0, "seconds": 68.3,
                            "before": {"statements": 95, "true": 43, "false": 19, "unverifiable": 33,
                                       "test_answers_stated": 8}}}
    run = write_run(tmp_path / "r", cells={"rev__aug__s0"}, extra_info={"rev__aug__s0": {"augmentation": aug}})
    md = build_report(run)[0].read_text()
    table = section(md, "Augmentation verification")
    assert "| rev | aug | 0 | 0.0 | 43 -> 43 | 19 -> 10 | 33 -> 0 | 8 -> 8 | 68.3 |" in table
    # without verification there is no such section
    plain = write_run(tmp_path / "p", cells={"rev__aug__s0"})
    assert "Augmentation verification" not in build_report(plain)[0].read_text()
