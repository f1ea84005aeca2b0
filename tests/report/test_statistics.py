"""One statistics policy, on a real tiny-random study with unequal subtypes and two seeds: every
interval a table prints and every error bar a figure draws is the summary's 95% interval over
questions and contains the accuracy beside it; a comparison listed as significant has a Holm p below
0.05; declared comparisons are checked when the config is."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from matplotlib.container import BarContainer, ErrorbarContainer

from genmodes.errors import ConfigError
from genmodes.experiments.config import parse_config
from genmodes.experiments.statistics import accuracy, accuracy_of, holm
from genmodes.report import build_report, load_run, summarize
from genmodes.report import figures as figures_module
from genmodes.report.details import _labelled

from tests.report.conftest import run_config

DATASET = {"name": "rev", "family": "simple_reversals", "settings": {"n_facts": 6, "articles_per_fact": 2}}
STUDY = {"name": "stats", "model": "tiny-random", "seeds": [0, 1], "datasets": [DATASET],
         "conditions": [{"name": "pretrained"},
                        {"name": "finetune", "settings": {"steps": 2, "batch_size": 2, "seq_len": 64}},
                        {"name": "in_context"},
                        {"name": "icl_small", "kind": "in_context", "settings": {"budget_tokens": 400}},
                        {"name": "cooc", "kind": "baseline", "settings": {"method": "cooccurrence"}}],
         "compare": [{"a": "in_context", "b": "finetune", "split": "reversal"},
                     {"a": "cooc", "b": "pretrained"}]}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """(run folder, report.md, the figures the report drew)."""
    out = run_config(STUDY, tmp_path_factory.mktemp("stats") / "run")
    drawn = []
    original = figures_module._save
    mp = pytest.MonkeyPatch()
    mp.setattr(figures_module, "_save", lambda fig, path: drawn.append((path.name, fig)) or original(fig, path))
    try:
        md, _ = build_report(out)
    finally:
        mp.undo()
    return out, md.read_text(), drawn


def test_the_study_has_unequal_subtypes_and_several_groups(study):
    run = load_run(study[0])
    sizes = Counter((r.split, r.subtype) for r in run.results if r.condition == "pretrained" and r.seed == 0)
    assert len(set(sizes.values())) > 1  # unequal subtypes
    assert {r.seed for r in run.results} == {0, 1}


def _intervals(md: str) -> list[tuple[float, float, float]]:
    """Every "acc% [low, high]" a table of the report prints, as fractions."""
    found = re.findall(r"(\d+\.\d)% \[(\d+\.\d), (\d+\.\d)\]", md)
    return [(float(a) / 100, float(lo) / 100, float(hi) / 100) for a, lo, hi in found]


def test_every_printed_interval_is_the_summarys_and_contains_its_accuracy(study):
    out, md, _ = study
    run = load_run(out)
    rows, _ = _labelled(run)
    summary = summarize(rows)
    known = {(round(s["accuracy"], 3), round(s["ci_low"], 3), round(s["ci_high"], 3)) for s in summary}
    for c in run.cells:  # in_context's per-cell table: a cell's accuracy, and on the questions it kept support for
        mine = [r for r in run.results if r.cell == c.cell]
        gone = set(getattr(run.infos(c).get("context"), "questions_without_support_ids", None) or ())
        for these in (mine, [r for r in mine if r.question_id not in gone]):
            a = accuracy_of(these)
            known.add((round(a.accuracy, 3), round(a.low, 3), round(a.high, 3)))
    printed = _intervals(md)
    assert len(printed) >= len(summary)
    for acc, lo, hi in printed:
        assert lo <= acc <= hi
        assert any(abs(acc - k[0]) < 6e-4 and abs(lo - k[1]) < 6e-4 and abs(hi - k[2]) < 6e-4 for k in known), \
            (acc, lo, hi)
    assert " ± " not in md.split("## Provenance", 1)[0]  # no other kind of error bar is printed
    # the summary's interval is the policy's over (subtype, seed) groups, counted here from the rows
    for s in summary:
        groups: dict[tuple[str, int], list[int]] = {}
        for r in rows:
            if (r.dataset, r.split, r.condition) == (s["dataset"], s["split"], s["condition"]):
                g = groups.setdefault((r.subtype, r.seed), [0, 0])
                g[0] += r.correct
                g[1] += 1
        a = accuracy({key: (k, n) for key, (k, n) in groups.items()})
        assert a.method == "cluster bootstrap" and a.groups == len(groups) > 1
        assert (s["ci_low"], s["ci_high"]) == (a.low, a.high) and a.low <= s["accuracy"] <= a.high


def _bars(fig) -> list[tuple[float, float, float]]:
    """(value, low, high) of every vertical error bar in a figure (bar charts and point plots)."""
    out = []
    for ax in fig.axes:
        of_bars = {id(c.errorbar) for c in ax.containers if isinstance(c, BarContainer) and c.errorbar is not None}
        for c in ax.containers:
            eb = c.errorbar if isinstance(c, BarContainer) else c if isinstance(c, ErrorbarContainer) else None
            if eb is None or eb.has_xerr or (c is eb and id(eb) in of_bars):
                continue
            data_line, _, barcols = eb.lines
            ys = [p.get_height() for p in c.patches] if isinstance(c, BarContainer) else list(data_line.get_ydata())
            segs = barcols[0].get_segments()
            assert len(segs) == len(ys)
            out += [(y, float(seg[:, 1].min()), float(seg[:, 1].max())) for y, seg in zip(ys, segs)]
    return out


def test_every_error_bar_is_the_same_interval(study):
    out, _, drawn = study
    rows, _ = _labelled(load_run(out))
    known = [(s["accuracy"], s["ci_low"], s["ci_high"]) for s in summarize(rows)]
    names = {n for n, _ in drawn}
    assert {"overview.png", "accuracy_rev.png", "compute_rev.png", "context_rev.png"} <= names
    checked = 0
    for name, fig in drawn:
        for y, lo, hi in _bars(fig):
            assert lo - 1e-9 <= y <= hi + 1e-9, name
            assert any(abs(y - a) < 1e-9 and abs(lo - k_lo) < 1e-9 and abs(hi - k_hi) < 1e-9
                       for a, k_lo, k_hi in known), (name, y, lo, hi)
            checked += 1
    assert checked >= 3 * len(known)  # overview, per-dataset bars, compute plot (and the context curve)


def test_a_comparison_listed_as_significant_has_a_holm_p_below_005(study):
    out, md, drawn = study
    paired = md.split("## Paired comparisons\n", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^- (.+) on (\S+) / (\S+): .*McNemar p = ([\d.e-]+), Holm p = ([\d.e-]+), n = (\d+)\)$",
                        paired, re.M)
    assert listed, "the baseline differs from the model on some split: something is significant"
    assert all(float(h) < 0.05 for *_, h, _ in listed)
    for table in paired.split("| dataset | split | difference |")[1:]:
        body = [ln.strip("|").split(" | ") for ln in table.splitlines()[2:] if ln.startswith("| ")]
        raw = [float(r[8]) for r in body]
        adjusted = [float(r[9]) for r in body]
        assert all(r[0].strip() == "rev" for r in body)  # each names its dataset (and split)
        # the table's Holm p is Holm's correction of its McNemar p values (as rounded for printing)
        assert adjusted == pytest.approx(holm(raw), abs=2e-3, rel=2e-2)
        significant = {(r[0].strip(), r[1], r[2]) for r in body if float(r[9]) < 0.05}
        assert significant <= {(d, s, f"{a}") for a, d, s, *_ in listed}
    # declared: in_context - finetune on reversal (one), cooc - pretrained on each split (two)
    declared = paired.split("### Declared comparisons", 1)[1].split("###", 1)[0]
    assert re.findall(r"^\| rev \| (\S+) \| (.+?) \|", declared, re.M) == [
        ("reversal", "in_context - finetune"), ("forward", "cooc - pretrained"), ("reversal", "cooc - pretrained")]
    assert "paired_differences.png" in {n for n, _ in drawn}


def test_the_forest_plot_draws_the_declared_differences(study):
    from genmodes.report import stats

    out, _, drawn = study
    rows, conds = _labelled(load_run(out))
    declared = stats.declared_comparisons(rows, parse_config(STUDY).compare, {c: [c] for c in conds})
    [fig] = [f for n, f in drawn if n == "paired_differences.png"]
    [ax] = fig.axes
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == len(declared) == 3
    for c, p in zip(bars, declared):
        x = c.lines[0].get_xdata()[0]
        seg = c.lines[2][0].get_segments()[0]
        assert x == pytest.approx(100 * p.diff) and (seg[:, 0].min(), seg[:, 0].max()) == \
            (pytest.approx(100 * p.ci[0]), pytest.approx(100 * p.ci[1]))


@pytest.mark.parametrize("compare,msg", [
    ([{"a": "in_context", "b": "nope"}], "compare[0].b: no condition named 'nope'"),
    ([{"a": "in_context", "b": "in_context"}], "compare[0]: a and b are both 'in_context'"),
    ([{"a": "in_context", "b": "finetune", "dataset": "nope"}], "compare[0].dataset: no dataset named 'nope'"),
    ([{"a": "in_context", "b": "finetune", "splits": "x"}], "compare[0].splits"),
])
def test_declared_comparisons_are_checked_with_the_config(compare, msg):
    with pytest.raises(ConfigError) as e:
        parse_config({**STUDY, "compare": compare}, source="c.yaml")
    assert msg in str(e.value) and "\n" not in str(e.value)
