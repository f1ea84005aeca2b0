"""Report: summary numbers on hand-made rows, and reports of real tiny-random runs (conftest.py), read
through the records the runner writes (genmodes.experiments.records)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import re

import pytest

from genmodes.errors import GenmodesError
from genmodes.experiments.records import CellRecord, ResultRow, dump
from genmodes.report import build_report, load_run, summarize, write_summary_csv
from genmodes.report.commands import register

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row(dataset="rev", split="reversal", condition="pretrained", seed=0, subtype="a", correct=True,
        chance=0.5, qid="q"):
    return ResultRow(cell=f"{dataset}__{condition}__s{seed}", model="tiny-random", dataset=dataset,
                     family="simple_reversals", split=split, subtype=subtype, condition=condition,
                     condition_kind=condition, seed=seed, question_id=qid, answer=0, chance=chance,
                     scores=[{"choice": "x", "logprob": -1.0, "n_tokens": 1, "is_greedy": True}],
                     chosen=0 if correct else 1, chosen_norm=0, correct=correct, correct_norm=correct,
                     context_tokens=10, context="")


def group(n_correct, n, **kw):
    return [row(correct=i < n_correct, qid=f"{kw.get('subtype', 'a')}{i}", **kw) for i in range(n)]


# ------------------------------------------------------------------------------------------ summarize

def test_summarize_pools_questions_and_bootstraps_subtype_seed_groups():
    """Unequal groups (8, 3 and 1 questions, as the issue that changed this found them): the interval
    is over questions and contains the pooled accuracy beside it, seeded, whatever the row order."""
    import random

    from genmodes.experiments.statistics import cluster_bootstrap_interval, wilson_interval

    rows = group(2, 8, subtype="a") + group(3, 3, subtype="b") + group(0, 1, subtype="c")
    [s] = summarize(rows)
    assert (s["dataset"], s["split"], s["condition"], s["n"]) == ("rev", "reversal", "pretrained", 12)
    assert s["accuracy"] == pytest.approx(5 / 12)  # pooled over questions, not a mean of subtype means
    lo, hi = wilson_interval(5, 12)
    b_lo, b_hi, b_sd = cluster_bootstrap_interval([(2, 8), (3, 3), (0, 1)])
    assert (s["ci_low"], s["ci_high"]) == (min(lo, b_lo), max(hi, b_hi))
    assert s["ci_low"] <= s["accuracy"] <= s["ci_high"]
    assert s["ci_high"] - s["ci_low"] > hi - lo  # subtypes this different widen it past Wilson
    assert s["stderr"] == pytest.approx(max(b_sd, math.sqrt(5 / 12 * 7 / 12 / 12)))
    random.Random(1).shuffle(rows)
    assert summarize(rows) == [s]  # the same interval in any order, run after run
    assert s["chance"] == pytest.approx(0.5)


def test_summarize_one_group_is_the_wilson_interval_and_mean_chance():
    from genmodes.experiments.statistics import wilson_interval

    rows = group(3, 4, chance=0.5)
    rows[0].chance = rows[1].chance = 0.25  # questions with 4 choices among 2-choice ones
    [s] = summarize(rows)
    assert s["accuracy"] == pytest.approx(0.75)
    assert (s["ci_low"], s["ci_high"]) == wilson_interval(3, 4)
    assert s["stderr"] == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    assert s["chance"] == pytest.approx(0.375)
    [perfect] = summarize(group(4, 4))
    assert perfect["stderr"] == 0.0 and perfect["ci_high"] == 1.0 and perfect["ci_low"] < 1.0


def test_equal_groups_get_at_least_the_wilson_interval():
    """Groups that agree leave the bootstrap nothing to resample but questions: never narrower than Wilson."""
    from genmodes.experiments.statistics import wilson_interval

    rows = (group(5, 10, subtype="a", seed=0) + group(5, 10, subtype="b", seed=0)
            + group(5, 10, subtype="a", seed=1))
    [s] = summarize(rows)
    lo, hi = wilson_interval(15, 30)
    assert s["ci_low"] <= lo and s["ci_high"] >= hi and s["ci_low"] <= 0.5 <= s["ci_high"]


def test_summarize_orders_by_first_appearance():
    rows = [row(dataset="d2", split="s2", condition="c2"), row(dataset="d1", split="s1", condition="c1"),
            row(dataset="d2", split="s1", condition="c1"), row(dataset="d2", split="s2", condition="c1"),
            row(dataset="d1", split="s1", condition="c2")]
    keys = [(s["dataset"], s["split"], s["condition"]) for s in summarize(rows)]
    assert keys == [("d2", "s2", "c2"), ("d2", "s2", "c1"), ("d2", "s1", "c1"),
                    ("d1", "s1", "c2"), ("d1", "s1", "c1")]


def test_write_summary_csv_atomic_roundtrip(tmp_path):
    rows = summarize(group(3, 4) + group(1, 2, condition="in_context"))
    p = write_summary_csv(rows, tmp_path / "summary.csv")
    with p.open() as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["model", "dataset", "split", "condition", "n", "accuracy", "stderr", "chance", "ci_low",
                            "ci_high", "gate"]
    assert all(float(g["ci_low"]) <= float(g["accuracy"]) <= float(g["ci_high"]) for g in got)
    assert [(g["condition"], int(g["n"]), float(g["accuracy"])) for g in got] == [("pretrained", 4, 0.75),
                                                                                 ("in_context", 2, 0.5)]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["summary.csv"]  # no temporary left


# ------------------------------------------------------------------------------------------ helpers

def md_row(md, first_cell):
    """The cells of the markdown table row starting with ``first_cell``."""
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in\n{md}")


def rows_starting(md, *first):
    return [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in md.splitlines()
            if ln.startswith("| ") and [c.strip() for c in ln.strip("|").split("|")][:len(first)] == list(first)]


def section(md, title):
    m = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", md, re.S | re.M)
    assert m, f"no section {title!r}"
    return m.group(1)


def acc(s):
    return f"{100 * s['accuracy']:.1f}% [{100 * s['ci_low']:.1f}, {100 * s['ci_high']:.1f}]"


def pct(x):
    s = f"{100 * x:.1f}"
    return s.rstrip("0").rstrip(".") + "%"


def rewrite(path, records):
    path.write_text("".join(json.dumps(dump(r)) + "\n" for r in records))


# ------------------------------------------------------------------------------------------ a real run

def test_report_accuracy_tables_match_the_runs_results(tiny_run):
    out, md, html = tiny_run
    run = load_run(out)
    assert md.startswith("# Report: paper-report\n")
    assert "Model `tiny-random`" in md and "seeds 0" in md and "Cells finished: 7 of 7." in md
    rev = section(md, "rev (simple_reversals)")
    summary = summarize(run.results, run.gates())
    splits = list(dict.fromkeys(s["split"] for s in summary))
    # the recall split is named; the trained conditions' recall gate sits in the last column
    assert md_row(rev, "condition")[1:] == [f"{sp} ({'recall; ' if sp == 'forward' else ''}chance 50%)"
                                            for sp in splits] + ["recall gate (90%)"]
    conditions = [c.name for c in run.config.conditions]
    assert [r[0] for r in rows_starting(rev, *[])[1:-1]] == conditions  # config order
    for s in summary:
        marked = " (not a test)" if s["gate"] == "fail" else ""
        assert md_row(rev, s["condition"])[1 + splits.index(s["split"])] == acc(s) + marked
        assert f">{acc(s)}{marked}</td>" in html
    n_per_split = [str(sum(r.split == sp and r.condition == "pretrained" for r in run.results)) for sp in splits]
    assert md_row(rev, "n")[1:] == n_per_split + [""]
    # the runner's summary.csv is the same aggregation
    with (out / "summary.csv").open() as f:
        csv_rows = list(csv.DictReader(f))
    assert [(r["condition"], r["split"], float(r["accuracy"]), float(r["ci_low"]), float(r["ci_high"]))
            for r in csv_rows] == [(s["condition"], s["split"], s["accuracy"], s["ci_low"], s["ci_high"]) for s in summary]


def test_report_figures_exist_and_html_embeds_them(tiny_run):
    out, md, html = tiny_run
    figs = sorted(p.name for p in (out / "figures").iterdir())
    # finetune and aug train: their loss curves share one figure per dataset; in_context and
    # icl_small (two budgets) draw accuracy against context length; accuracy against compute per
    # dataset; the paired differences (all pairs: the config declares none)
    assert figs == ["accuracy_rev.png", "compute_rev.png", "context_rev.png", "loss_rev.png", "overview.png",
                    "paired_differences.png"]
    for f in figs:
        assert (out / "figures" / f).read_bytes()[:8] == PNG_MAGIC
        assert f"](figures/{f})" in md
    assert html.count('src="data:image/png;base64,') == len(figs)
    assert "<img" in html and "figures/" not in html  # self-contained: no file references


def test_augmentation_verification_recall_in_context_and_compute_tables(tiny_run):
    out, md, _ = tiny_run
    run = load_run(out)
    cell = {c.condition: c for c in run.cells}
    a = run.infos(cell["aug"])["model"].augmentation.model_dump()
    [audit] = rows_starting(section(md, "Augmentation audit"), "rev", "aug")
    assert audit[2:5] == ["0", str(a["statements"]), str(a["true"]) + (f" ({pct(a['true'] / a['statements'])})"
                                                                        if a["statements"] else "")]
    assert audit[-1] == str(a["generated_documents"])
    v = a["verification"]
    [ver] = rows_starting(section(md, "Augmentation verification"), "rev", "aug")
    assert ver[3] == str(v["margin"]) and ver[5] == f"{v['before']['false']} -> {a['false']}"
    info = run.infos(cell["rag"])["context"].model_dump()
    recall = section(md, "Retrieval: hit@k and support recall")
    assert md_row(recall, "dataset") == ["dataset", "condition", "seed", "k", "hit@k", "support recall@k"] + \
        [x for s in info["recall_at_k_by_split"] for x in (f"hit@k {s}", f"support recall@k {s}")]
    assert md_row(recall, "rev")[:6] == ["rev", "rag", "0", "1", pct(info["hit_at_k"]), pct(info["recall_at_k"])]
    # in context with a small budget: questions whose support was cut are left out of the second accuracy
    small = run.infos(cell["icl_small"])["context"].model_dump()
    gone = set(small["questions_without_support_ids"])
    assert 0 < len(gone) < cell["icl_small"].n_questions
    rows = [r for r in run.results if r.condition == "icl_small"]
    kept = [r for r in rows if r.question_id not in gone]
    [ic] = rows_starting(section(md, "In context: documents kept and questions left without support"),
                         "rev", "icl_small")
    from genmodes.experiments.statistics import accuracy_of, format_accuracy

    def with_interval(these):
        a = accuracy_of(these)
        return f"{format_accuracy(a.accuracy, a.low, a.high)} (n={len(these)})"

    assert ic[3:] == [f"{small['documents_in_context']} of {small['documents']}", str(len(gone)),
                      with_interval(rows), with_interval(kept)]
    compute = section(md, "Compute: train time vs test time")
    col = md_row(compute, "dataset").index("context tokens / question")
    for c in run.cells:
        tokens = [r.context_tokens for r in run.results if r.cell == c.cell]
        [line] = rows_starting(compute, "rev", c.condition)
        assert line[2:4] == [c.condition_kind, "1"]
        assert line[col] == f"{sum(tokens) / len(tokens):,.0f}"  # what was scored, shared prefix included
    tokens_of = {c: float(rows_starting(compute, "rev", c)[0][col].replace(",", "")) for c in ("icl_small", "in_context")}
    assert tokens_of["icl_small"] < tokens_of["in_context"]


def test_report_without_results_is_one_clear_error(tmp_path):
    with pytest.raises(GenmodesError) as e:
        build_report(tmp_path)
    assert "no results.jsonl" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(GenmodesError, match="run folder not found"):
        build_report(tmp_path / "nope")
    assert not (tmp_path / "report.md").exists() and not (tmp_path / "figures").exists()


@pytest.mark.parametrize("change,msg", [
    (lambda lines: lines.__setitem__(3, "{not json\n"), r"results.jsonl line 4: invalid JSON"),
    (lambda lines: lines.__setitem__(1, json.dumps({k: v for k, v in json.loads(lines[1]).items()
                                                    if k != "correct"}) + "\n"),
     r"results.jsonl line 2: field 'correct': Field required"),
    (lambda lines: lines.__setitem__(0, json.dumps({**json.loads(lines[0]), "top_k": 4}) + "\n"),
     r"results.jsonl line 1: field 'top_k': Extra inputs are not permitted"),
    (lambda lines: lines.__setitem__(0, json.dumps({**json.loads(lines[0]), "seed": "0"}) + "\n"),
     r"results.jsonl line 1: field 'seed': Input should be a valid integer"),
])
def test_a_row_off_the_schema_is_named_by_file_line_and_field(run_copy, change, msg):
    lines = (run_copy / "results.jsonl").read_text().splitlines(keepends=True)
    change(lines)
    (run_copy / "results.jsonl").write_text("".join(lines))
    with pytest.raises(GenmodesError, match=msg) as e:
        build_report(run_copy)
    assert "\n" not in str(e.value)


def test_a_folder_without_its_manifest_is_named(run_copy):
    (run_copy / "manifest.json").unlink()
    with pytest.raises(GenmodesError, match="no manifest.json"):
        build_report(run_copy)


def test_partial_run_reports_finished_cells(run_copy):
    """Between the runner's rewrite of results.jsonl and of cells.jsonl, rows of a cell not yet listed
    as finished are left out."""
    run = load_run(run_copy)
    done = [c for c in run.cells if c.condition in ("pretrained", "in_context", "rag")]
    rewrite(run_copy / "cells.jsonl", done)
    md = build_report(run_copy)[0].read_text()
    assert "Cells finished: 3 of 7. The run is incomplete or still in progress" in md
    n_left = sum(r.condition not in ("pretrained", "in_context", "rag") for r in run.results)
    assert f"{n_left} result rows of 4 unfinished cell(s) are left out" in md
    rev = section(md, "rev (simple_reversals)")
    for s in summarize([r for r in run.results if r.condition == "in_context"]):
        assert acc(s) in md_row(rev, "in_context")
    assert "finetune" not in rev and "aug" not in rev


def test_run_with_no_finished_cell_is_one_line_and_writes_nothing(run_copy, capsys):
    from genmodes import cli

    (run_copy / "results.jsonl").write_text("")
    (run_copy / "cells.jsonl").write_text("")
    before = sorted(p.name for p in run_copy.iterdir())
    with pytest.raises(GenmodesError, match=r"no finished cell yet \(0 of 7\), nothing to report"):
        build_report(run_copy)
    assert cli.main(["report", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no finished cell yet" in err and "genmodes run" in err
    assert sorted(p.name for p in run_copy.iterdir()) == before


def test_cells_without_their_rows_are_left_out_not_a_traceback(run_copy, capsys):
    """cells.jsonl lists finished cells whose rows results.jsonl lacks (it was emptied): one line, exit 2."""
    from genmodes import cli

    (run_copy / "results.jsonl").write_text("")
    assert cli.main(["report", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing to report" in err and "no rows in results.jsonl" in err
    assert not (run_copy / "report.md").exists()


def test_partial_run_report_names_what_is_missing_in_one_line(run_copy, tmp_path, capsys):
    from genmodes import cli

    run = load_run(run_copy)
    rewrite(run_copy / "cells.jsonl", [c for c in run.cells if c.condition != "aug"])
    assert cli.main(["report", str(run_copy), "--out", str(tmp_path / "rep")]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("genmodes: note: the report covers 6 of 7 cells; missing rev__aug__s0")
    assert (tmp_path / "rep" / "report.md").is_file()


SCRATCH_CURVES = "Learning curves of the models trained from scratch"


def test_training_curves_from_curves_file(scratch_run, tmp_path):
    md = build_report(scratch_run, tmp_path / "rep")[0].read_text()
    [cell] = load_run(scratch_run).cells
    curves = section(md, SCRATCH_CURVES)
    assert f"](figures/curves_{cell.cell}.png)" in curves
    assert (tmp_path / "rep" / "figures" / f"curves_{cell.cell}.png").read_bytes()[:8] == PNG_MAGIC


def test_a_missing_curves_file_is_a_note(scratch_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(scratch_run, run)
    loaded = load_run(run)
    [cell] = loaded.cells
    curves_file = loaded.model_info(cell).curves_file
    (run / curves_file).unlink()
    curves = section(build_report(run)[0].read_text(), SCRATCH_CURVES)
    assert f"{cell.cell}: curves file {curves_file} not found." in curves


def test_report_command_writes_to_out(run_copy, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(run_copy), "--out", str(tmp_path / "rep")])
    assert args.func(args) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(tmp_path / "rep" / "report.md"), str(tmp_path / "rep" / "report.html")]
    assert (tmp_path / "rep" / "figures" / "accuracy_rev.png").is_file()
    assert not (run_copy / "report.md").exists()


def test_cli_report_on_a_folder_without_results_exits_2_with_one_line(tmp_path, capsys):
    from genmodes import cli

    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("genmodes: error: ") and "no results.jsonl" in err


def test_records_of_an_older_genmodes_and_odd_values_do_not_break_the_report(run_copy):
    """A cell written before stages had records of their own holds one flat ``info`` (schema 1): the
    report reads each stage's fields from it; a value that does not fit its field is left out (a dash),
    never a crash."""
    odd = {"train_seconds": "n/a", "generation_seconds": None, "recall_at_k": 0.5, "k": "two",
           "augmentation": {"statements": 0, "true": None, "false": "x"}, "loss_curve": []}
    cells = [CellRecord.model_validate({**{k: v for k, v in dump(c).items() if k != "stages"}, "info": odd})
             if c.condition == "rag" else c for c in load_run(run_copy).cells]
    rewrite(run_copy / "cells.jsonl", cells)
    md = build_report(run_copy)[0].read_text()
    assert "| rev | rag | 0 | – | – | 50% |" in section(md, "Retrieval: hit@k and support recall")
    assert not rows_starting(section(md, "Augmentation audit"), "rev", "rag")  # not rag's stage
    assert md_row(section(md, "Compute: train time vs test time"), "rev")  # the table is there
    assert rows_starting(section(md, "Compute: train time vs test time"), "rev", "rag")[0][4] == "–"
