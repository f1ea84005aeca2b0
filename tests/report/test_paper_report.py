"""The report's paper-facing parts: paired comparisons, binomial stderr / Wilson CI / acc_norm, the
overview figure, the per-question drill-down page and provenance, on a real tiny-random run."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import yaml

from genmodes.experiments.records import ResultRow
from genmodes.report import build_report, stats
from genmodes.report.details import baselines, drilldown_data
from genmodes.report.run import load_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# ------------------------------------------------------------------------------------------ stats

def test_mcnemar_exact_and_wilson_known_values():
    # b=10, c=2: 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert stats.mcnemar_exact(10, 2) == pytest.approx(2 * 79 / 4096)
    assert stats.mcnemar_exact(2, 10) == stats.mcnemar_exact(10, 2)
    assert stats.mcnemar_exact(0, 0) == 1.0 and stats.mcnemar_exact(3, 3) == 1.0
    lo, hi = stats.wilson_interval(8, 10)
    assert (lo, hi) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    assert stats.wilson_interval(0, 5)[0] == 0.0 and stats.wilson_interval(5, 5)[1] == 1.0
    assert stats.binomial_stderr(3, 4) == pytest.approx(math.sqrt(0.75 * 0.25 / 4))


def test_paired_bootstrap_matches_resampling_questions_and_is_seeded():
    diffs = [1] * 12 + [0] * 15 + [-1] * 3
    ci = stats.paired_bootstrap_ci(diffs)
    assert ci == stats.paired_bootstrap_ci(diffs)  # same seed, same interval
    rng = np.random.default_rng(1)
    d = np.array(diffs)
    means = d[rng.integers(0, len(d), size=(20000, len(d)))].mean(axis=1)
    ref = np.quantile(means, [0.025, 0.975])
    assert ci[0] == pytest.approx(ref[0], abs=0.04) and ci[1] == pytest.approx(ref[1], abs=0.04)
    assert ci[0] < 0.3 < ci[1]
    assert stats.paired_bootstrap_ci([1] * 9) == (1.0, 1.0)


def _row(cond, qid, correct, seed=0, split="reversal"):
    return ResultRow(cell=f"d__{cond}__s{seed}", model="m", dataset="d", family="f", split=split, subtype="",
                     condition=cond, condition_kind=cond, seed=seed, question_id=qid, answer=0, chance=0.5,
                     scores=[], chosen=0 if correct else 1, chosen_norm=0, correct=correct, correct_norm=correct,
                     context_tokens=0, context="")


def test_paired_comparisons_pair_by_seed_and_question():
    rows = ([_row("ft", f"q{i}", i < 2) for i in range(10)] + [_row("icl", f"q{i}", i < 9) for i in range(10)]
            + [_row("icl", "extra", True)])  # answered by one condition only: not paired
    [p] = stats.paired_comparisons(rows, ["ft", "icl"])
    assert (p.a, p.b, p.n) == ("icl", "ft", 10)
    assert p.diff == pytest.approx(0.7) and (p.only_a, p.only_b) == (7, 0)
    assert p.p_mcnemar == pytest.approx(2 / 2 ** 7)
    assert p.ci[0] > 0.3 and p.ci[1] <= 1.0
    assert re.fullmatch(r"icl - ft on d / reversal: \+70 points \[\d+, \d+\]", p.sentence())
    assert p.p_holm == p.p_mcnemar  # one comparison: nothing to correct


# ------------------------------------------------------------------------------------------ the report of a run

def _section(md: str, title: str) -> str:
    return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _table(section: str) -> list[list[str]]:
    lines = [ln for ln in section.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines[1:]]


def test_statistics_and_paired_tables_agree_with_results(tiny_run):
    from genmodes.experiments.statistics import accuracy
    from genmodes.report import summarize

    out, md, _ = tiny_run
    rows = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
    st = {(r[1], r[2]): r for r in _table(_section(md, "Statistics"))}
    summary = {(s["split"], s["condition"]): s for s in summarize(load_run(out).results)}
    for (split, cond), r in st.items():
        mine = [x for x in rows if x["split"] == split and x["condition"] == cond]
        k, n = sum(x["correct"] for x in mine), len(mine)
        groups = {}
        for x in mine:
            g = groups.setdefault((x["subtype"], x["seed"]), [0, 0])
            g[0] += x["correct"]
            g[1] += 1
        a = accuracy(list(map(tuple, groups.values())))
        s = summary[(split, cond)]
        assert (a.low, a.high) == (s["ci_low"], s["ci_high"])
        assert r[3] == str(n) and r[4] == str(k) and r[5] == f"{100 * k / n:.1f}%"
        assert r[6] == f"[{100 * a.low:.1f}%, {100 * a.high:.1f}%]"
        # simple_reversals' subtypes: several groups per split, so the cluster bootstrap
        assert len(groups) > 1 and r[7] == f"cluster bootstrap over {len(groups)} groups"
        assert r[8] == f"{100 * sum(x['correct_norm'] for x in mine) / n:.1f}%"
    assert len(st) == 2 * 7
    paired = _table(_section(md, "Paired comparisons"))
    assert len(paired) == 2 * 21  # 2 splits x C(7, 2) pairs: no declared comparison in this config
    assert "### Declared comparisons" not in md and "### All pairs" in md
    by = {(r[1], r[2]): r for r in paired}
    r = by[("reversal", "in_context - finetune")]
    ic = {x["question_id"]: x["correct"] for x in rows if x["condition"] == "in_context" and x["split"] == "reversal"}
    ft = {x["question_id"]: x["correct"] for x in rows if x["condition"] == "finetune" and x["split"] == "reversal"}
    diffs = [int(ic[q]) - int(ft[q]) for q in ic]
    lo, hi = stats.paired_bootstrap_ci(diffs)
    assert r[0] == "rev"
    assert r[5] == f"{round(100 * sum(diffs) / len(diffs)):+d} points [{round(100 * lo)}, {round(100 * hi)}]"
    assert r[6] == str(diffs.count(1)) and r[7] == str(diffs.count(-1))
    # Holm over the 42 pairs, from the table's own McNemar p values (rounded as shown)
    raw = [stats.mcnemar_exact(int(x[6]), int(x[7])) for x in paired]
    assert [x[9] for x in paired] == [_fmt_p(p) for p in stats.holm(raw)]


def _fmt_p(p):
    from genmodes.report.details import _p

    return _p(p)


def test_provenance_names_hash_model_versions_and_config(tiny_run):
    from genmodes.experiments.config import parse_config
    from genmodes.experiments.grid import build_dataset

    out, md, _ = tiny_run
    prov = _section(md, "Provenance")
    ds = build_dataset(parse_config(yaml.safe_load((out / "config.yaml").read_text())).datasets[0])
    assert ds.meta["content_hash"] in prov
    assert "| tiny-random | LlamaForCausalLM | llama |" in prov
    import torch
    import transformers

    assert f"torch {torch.__version__}" in prov and f"transformers {transformers.__version__}" in prov
    manifest = json.loads((out / "manifest.json").read_text())
    assert f"`{manifest['models'][0]['weights_hash'][:16]}` | fp32 |" in prov  # weights hash, precision scored in
    assert (f"`{manifest['git_commit'][:12]}`" if manifest["git_commit"] else "not a git checkout") in prov
    cfg = yaml.safe_load(prov.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert cfg == yaml.safe_load((out / "config.yaml").read_text())


def test_drilldown_page_holds_every_question_offline(tiny_run):
    from genmodes.experiments.config import parse_config
    from genmodes.experiments.grid import build_dataset

    out, md, _ = tiny_run
    page = (out / "drilldown.html").read_text()
    assert "drilldown.html" in md
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched
    assert "<script src" not in page
    data = json.loads(page.split('<script type="application/json" id="data">', 1)[1].split("</script>", 1)[0])
    ds = build_dataset(parse_config(yaml.safe_load((out / "config.yaml").read_text())).datasets[0])
    assert {q["id"] for q in data["questions"]} == {q.id for q in ds.questions}
    assert data["columns"] == ["pretrained", "finetune", "in_context", "rag", "baseline_cooccurrence", "aug",
                               "icl_small"]
    by_id = {q.id: q for q in ds.questions}
    rows = {(r["condition"], r["question_id"]): r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    for q in data["questions"]:
        src = by_id[q["id"]]
        assert q["context"] == src.context and q["choices"] == src.choices and q["answer"] == src.answer
        assert q["split"] == src.split and q["subtype"] == src.subtype
        for cond in data["columns"]:
            res, row = q["results"][cond], rows[(cond, q["id"])]
            # a baseline's own score (a count here), without the +1 that makes its pick the argmax
            own = [s["logprob"] - (i == row["chosen"] and cond == "baseline_cooccurrence")
                   for i, s in enumerate(row["scores"])]
            assert res["lp"] == [pytest.approx(x, abs=1e-4) for x in own]
            assert res["chosen"] == row["chosen"] and res["correct"] == row["correct"]
        # retrieval's documents: the question's support (oracle) plus one distractor, readable by text
        assert set(src.support) <= set(q["results"]["rag"]["retrieved"])
        assert len(q["results"]["rag"]["retrieved"]) == len(set(src.support)) + 1
        docs = ds.doc_index()
        assert all(data["documents"]["rev"][i] == docs[i].text for i in q["results"]["rag"]["retrieved"])
        assert "retrieved" not in q["results"]["in_context"]
    assert data["kinds"] == {"baseline_cooccurrence": "baseline"}  # its column is a score, not a log-probability
    assert "baseline score" in page and "<details" not in page.split("<script", 1)[0]
    assert any("shared context: 12 of 12" in v for k, v in data["notes"].items() if k.endswith("|in_context"))
    for sel in ("f-dataset", "f-split", "f-subtype", "f-condition", "f-outcome"):
        assert f'id="{sel}"' in page


def test_baseline_conditions_are_named_by_the_config_kind(tiny_run):
    out, md, _ = tiny_run
    run = load_run(out)
    assert baselines(run, ["pretrained", "baseline_cooccurrence", "baseline_cooccurrence · m"]) == \
        ["baseline_cooccurrence", "baseline_cooccurrence · m"]
    assert "hatched bars: baselines" in md
    prov = _section(md, "Provenance")
    assert "baseline_cooccurrence" not in prov.split("```yaml", 1)[0]  # no model row for a baseline


def test_loss_plot_steps_are_whole_numbers(tmp_path, monkeypatch):
    from genmodes.report import figures

    saved = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: saved.append(fig) or path)
    figures.loss_curves("t", [("a", [[1, 5.5], [2, 5.4], [3, 5.1]])], tmp_path / "x.png")
    figures.training_curves("t", [{"step": 1, "loss": 2.0, "accuracy": {"s": 0.5}},
                                  {"step": 2, "loss": 1.0, "accuracy": {"s": 0.6}}], tmp_path / "y.png")
    for fig in saved:
        for ax in fig.axes:
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_report_command_writes_every_page_it_links(tiny_run, tmp_path):
    """`genmodes report RUN --out DIR` moves the whole report into place, drill-down page included."""
    from genmodes.cli import main

    run = tiny_run[0]
    out = tmp_path / "rep"
    assert main(["report", str(run), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "drilldown.html" in md and (out / "drilldown.html").is_file()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".report.tmp")]

