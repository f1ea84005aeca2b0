"""``build_report(run_dir)``: ``report.md`` and a self-contained ``report.html`` from a run folder.

The report answers the questions of P1-P3 for one run: accuracy per dataset, split and condition
(tables and bar charts with 95% intervals over questions and chance, like P1's figures; one statistics
policy, :mod:`genmodes.experiments.statistics`, for every number), paired comparisons, each
stage's own sections (the augmentation audit, retrieval recall, RL curves, thoughts, ...: their
``report_sections`` hooks, :mod:`genmodes.report.sections`), and the train-time vs test-time compute
trade-off (augmentation pays at train time, retrieval and in-context learning pay in context tokens at
test time). It reads only the run folder.

The HTML is rendered from the markdown (markdown-it-py), so the two always say the same thing.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from pathlib import Path
from typing import Any, Sequence

from genmodes.experiments.records import CellRecord
from genmodes.experiments.statistics import format_accuracy
from genmodes.experiments.summary import summarize
from genmodes.report import details, figures
from genmodes.experiments.gates import FAIL, NOT_A_TEST
from genmodes.report.common import (DASH, Block, Figures, cell_label, condition_label, label_gate, mean, models, num,
                                    pct_trim, rows_by_label, several, write_atomic)
from genmodes.report.run import Run, check_reportable, load_run
from genmodes.report.sections import stage_gates, stage_sections


def _acc(r: dict[str, Any]) -> str:
    # the terminal table's format: "47.5% [40.0, 55.0]"
    return format_accuracy(r["accuracy"], r["ci_low"], r["ci_high"])


def _n_cell(ns: list[int]) -> str:
    """How many answers the accuracies of a column rest on: one number, or the range."""
    ns = sorted(set(ns))
    return DASH if not ns else (str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}")


ACCURACY_CAPTION = ("Each entry: accuracy [95% interval over questions] (the policy is in Statistics, below); row n: "
                    "the answers (questions x seeds) each entry rests on.")


# ------------------------------------------------------------------------------------------ sections

def _header(run: Run) -> list[Block]:
    cfg = run.config
    done = len(run.cells)
    models = cfg.model_specs
    facts = [f"{'Models' if len(models) > 1 else 'Model'} {', '.join(f'`{m}`' for m in models)}",
             f"run folder `{run.path}`"]
    if run.date:
        facts.append(f"last cell finished {run.date}")
    facts.append(f"seeds {', '.join(map(str, cfg.seeds))}")
    out: list[Block] = [("h", 1, f"Report: {run.name}")]
    failures = _calibration_failures(run)
    if failures:
        from genmodes.experiments.gates import calibration_headline

        out.append(("p", f"**{calibration_headline(failures)}**"))
    out.append(("p", " · ".join(facts) + "."))
    status = f"Cells finished: {done} of {run.expected_cells}."
    if done < run.expected_cells:
        status += " The run is incomplete or still in progress: this report shows the finished cells only."
    out.append(("p", status))
    if run.notes:
        out.append(("list", run.notes))
    out.append(("p", "Accuracy: share of questions whose most likely choice (summed log-probability, choices "
                     "never shown in context) is the answer, with its 95% interval over questions in brackets "
                     "(every table and error bar of this report uses the same interval; see Statistics). Chance is "
                     "the mean over the split's questions of 1 / number of choices."))
    return out


def _accuracy(run: Run, figs: Figures, colors: dict[str, Any]) -> list[Block]:
    rows, conditions = rows_by_label(run)
    out: list[Block] = [("h", 2, "Accuracy")]
    if not rows:
        out.append(("p", "No finished cells yet: nothing to report."))
        return out
    summary = summarize(rows, run.gates())
    n_seeds = len(run.config.seeds)
    seeds_of: dict[tuple[str, str], set[int]] = {}
    for r in rows:
        seeds_of.setdefault((r.dataset, r.condition), set()).add(r.seed)
    for ds in run.dataset_order():
        srows = [s for s in summary if s["dataset"] == ds]
        if not srows:
            continue
        splits = list(dict.fromkeys(s["split"] for s in srows))
        table = {(s["split"], s["condition"]): s for s in srows}
        chance: dict[str, float] = {}
        for sp in splits:
            ch = [s["chance"] for s in srows if s["split"] == sp and not math.isnan(s["chance"])]
            chance[sp] = sum(ch) / len(ch) if ch else float("nan")
        conds = [c for c in conditions if any((sp, c) in table for sp in splits)]
        family = next(r.family for r in rows if r.dataset == ds)
        out.append(("h", 3, f"{ds}" + (f" ({family})" if family and family != ds else "")))
        gates = {c: label_gate(run, ds, c) for c in conds}
        recall = _recall_splits(gates.values())
        headers = ["condition"] + [f"{sp} ({'recall; ' if sp in recall else ''}chance {pct_trim(chance[sp])})"
                                   for sp in splits]
        gated = any(g is not None for g in gates.values())
        laddered = any(g is not None and g.rungs for g in gates.values())
        if gated:
            headers.append(f"recall gate ({pct_trim(run.config.recall_gate)})"
                           + (" · calibration ladder" if laddered else ""))
        body = []
        for c in conds:
            label = c
            k = len(seeds_of.get((ds, c), ()))
            if k < n_seeds:
                label += f" ({k} of {n_seeds} seeds)"
            body.append([label] + [_gated_acc(table[(sp, c)]) if (sp, c) in table else DASH for sp in splits]
                        + ([gates[c].label() if gates[c] is not None else DASH] if gated else []))
        body.append(["n"] + [_n_cell([s["n"] for s in srows if s["split"] == sp]) for sp in splits]
                    + ([""] if gated else []))
        if gated:
            out.append(("p", _GATE_NOTE.format(threshold=pct_trim(run.config.recall_gate))
                        + (" " + _LADDER_NOTE if laddered else "")))
        if several(run):
            out += _side_by_side(run, ds, srows, splits, chance, figs)
            continue
        out.append(("table", headers, body))
        path = figures.accuracy_bars(f"{ds}: accuracy by split", splits, conds, table, chance,
                                     figs.path(f"accuracy_{ds}"), colors, baselines=details.baselines(run, conds))
        out += [("p", ACCURACY_CAPTION), ("img", path, f"accuracy on {ds}"), ("p", _figure_caption(run, conds))]
    return out


_GATE_NOTE = ("Recall gate: a trained model's latent results (every split but its recall split) test "
              "generalization only where it knows the trained facts, i.e. its accuracy on the recall split, "
              "scored with no context, reaches {threshold}; below that they are marked *not a test*.")


_LADDER_NOTE = ("Calibration ladder: a condition that puts documents before the question (retrieval, in-context "
                "learning) tests their use only where its model reads its context; where a rung of the dataset's "
                "ladder (see Calibration ladder) is below its threshold, its rows are marked *not a test* too "
                "(of P2: retrieved episodes cannot help a model that does not read them).")


def _gated_acc(r: dict[str, Any]) -> str:
    """An accuracy, marked where its cells' recall gate fails (summary row ``gate``)."""
    return _acc(r) + (f" ({NOT_A_TEST})" if r.get("gate") == FAIL else "")


def _recall_splits(gates: Any) -> set[str]:
    return {sp for g in gates if g is not None for sp in g.splits}


def _gates(run: Run) -> list[Block]:
    """Every gated cell's recall, splits and verdict (the accuracy tables show the verdict beside each row)."""
    gates = run.gates()
    cells = [c for c in run.cells if c.cell in gates]
    if not cells:
        return []
    body = []
    for c in cells:
        g = gates[c.cell]
        body.append(cell_label(run, c) + [", ".join(g.splits) or DASH,
                                          DASH if g.questions is None else str(g.questions),
                                          pct_trim(g.recall), g.verdict, g.label()])
    return [("h", 2, "Recall gates"),
            ("p", f"Each trained model's recall: its dataset's recall split(s) scored on the model alone (no "
                  f"context), against the study's gate ({pct_trim(run.config.recall_gate)}, config `recall_gate`). "
                  "A failure to generalize counts only where the model knows the facts: a cell whose gate fails "
                  f"has its latent results marked *{NOT_A_TEST}* (summary.csv: `gate` = fail)."),
            ("table", ["dataset", "condition", "seed", "recall splits", "questions", "recall", "gate", "verdict"],
             body)]
def _calibration_failures(run: Run) -> list[str]:
    from genmodes.experiments.gates import calibration_failures

    return calibration_failures(run.cells, run.config.recall_gate,
                                lambda c: f"{c.dataset} / {condition_label(run, c)} seed {c.seed}")


def _model_key(c: CellRecord) -> tuple:
    """The model a cell scored (cells of one model stage and settings share it: a from-scratch model
    serves its parametric and its retrieval cells)."""
    import json

    stage = ((c.key_parts or {}).get("condition") or {}).get("model")
    return (c.dataset, c.model, c.seed, c.model_stage,
            json.dumps(stage, sort_keys=True) if stage is not None else c.cell)


def _calibration(run: Run) -> list[Block]:
    """The calibration ladder of every model that has one: per rung its accuracy against the threshold,
    and the first learning-curve step at which it reached 90% (a model that records curves)."""
    from genmodes.experiments.gates import ladder

    models: dict[tuple, list[CellRecord]] = {}
    for c in run.cells:
        info = run.model_info(c)
        if info is not None and ladder(info):
            models.setdefault(_model_key(c), []).append(c)
    if not models:
        return []
    out: list[Block] = [("h", 2, "Calibration ladder"),
                        ("p", "Each model's in-context reading checks (the dataset's `calibration_splits`: questions "
                              "whose own context holds the answer, over entities training never binds), scored on the "
                              "model with the question's own context, against each rung's threshold. A rung below its "
                              "threshold fails the gate of every cell of that model that puts documents before the "
                              f"question: its rows are *{NOT_A_TEST}* of P2 (a model trained without practice, P2's "
                              "ablation, is shown but not gated: not reading is its result). \"90% at step\": the first learning-curve "
                              "step at which the rung's sampled accuracy reached 90% (never: not within training; "
                              f"{DASH}: no curve recorded).")]
    for ds in run.dataset_order():
        keys = [k for k in models if k[0] == ds]
        if not keys:
            continue
        rungs = list(dict.fromkeys(r.split for k in keys for r in ladder(run.model_info(models[k][0]))))
        headers = ["model (conditions)", "seed"]
        for sp in rungs:
            headers += [sp, f"{sp}: 90% at step"]
        headers.append("ladder")
        body = []
        for k in keys:
            cells = models[k]
            info = run.model_info(cells[0])
            got = {r.split: r for r in ladder(info)}
            steps = getattr(info, "steps_to_90", None)
            row = [f"{k[1]} ({', '.join(dict.fromkeys(condition_label(run, c) for c in cells))})", str(k[2])]
            for sp in rungs:
                r = got.get(sp)
                row.append(DASH if r is None else
                           f"{pct_trim(r.accuracy)} (gate {pct_trim(r.threshold)}: {'pass' if r.passed else 'fail'})")
                row.append(DASH if steps is None or sp not in steps else
                           ("never" if steps[sp] is None else str(steps[sp])))
            verdict = "pass" if all(r.passed for r in got.values()) else "fail"
            if getattr(info, "trained_without_practice", False):
                verdict += " (trained without practice: the ablation's result, gates nothing)"
            row.append(verdict)
            body.append(row)
        out += [("h", 3, ds), ("table", headers, body)]
    return out


def _figure_caption(run: Run, conds: list[str]) -> str:
    hatched = "; hatched bars: shortcut baselines (no model)" if details.baselines(run, conds) else ""
    return ("Error bars: the 95% intervals over questions of the table above, each resting on the n answers of "
            f"its column; dashed: chance{hatched}.")


def _side_by_side(run: Run, ds: str, srows: list[dict[str, Any]], splits: list[str], chance: dict[str, float],
                  figs: Figures) -> list[Block]:
    """Several models: a row per condition, a column per split and model, and the bars in one panel per
    model (each condition the same colour in every panel)."""
    ms = [m for m in models(run) if any(s["model"] == m for s in srows)]
    plain = [c for c in run.condition_order() if any(s["condition"] == f"{c} · {m}" for s in srows for m in ms)]
    table = {(s["model"], s["split"], s["condition"].rsplit(" · ", 1)[0]): s for s in srows}
    headers = ["condition"] + [f"{sp} · {m} (chance {pct_trim(chance[sp])})" for sp in splits for m in ms]
    body = [[c] + [_gated_acc(table[(m, sp, c)]) if (m, sp, c) in table else DASH for sp in splits for m in ms]
            for c in plain]
    body.append(["n"] + [_n_cell([s["n"] for s in srows if s["split"] == sp and s["model"] == m])
                         for sp in splits for m in ms])
    panels = [(m, [sp for sp in splits if any((m, sp, c) in table for c in plain)],
               {(sp, c): table[(m, sp, c)] for sp in splits for c in plain if (m, sp, c) in table}, chance)
              for m in ms]
    path = figures.accuracy_panels(f"{ds}: accuracy by split, per model", panels, plain,
                                   figs.path(f"accuracy_{ds}"), figures.condition_colors(plain),
                                   baselines=details.baselines(run, plain))
    return [("table", headers, body), ("p", ACCURACY_CAPTION), ("img", path, f"accuracy on {ds}, models side by side"),
            ("p", _figure_caption(run, plain))]


def _compute(run: Run, figs: Figures | None = None, colors: dict[str, Any] | None = None) -> list[Block]:
    out: list[Block] = [("h", 2, "Compute: train time vs test time")]
    if not run.cells:
        out.append(("p", "No finished cells yet: no timings."))
        return out
    ctx_tokens: dict[str, list[int]] = {}
    for r in run.results:
        ctx_tokens.setdefault(r.cell, []).append(r.context_tokens)
    groups: dict[tuple[str, str], list[CellRecord]] = {}
    for c in run.cells:
        groups.setdefault((c.dataset, condition_label(run, c)), []).append(c)
    d_order = {d: i for i, d in enumerate(run.dataset_order())}
    c_order = {c: i for i, c in enumerate(rows_by_label(run)[1])}
    keys = sorted(groups, key=lambda k: (d_order.get(k[0], len(d_order)), c_order.get(k[1], len(c_order))))
    # columns a stage adds (in_context's kept fraction), in the order first seen
    extra = list(dict.fromkeys(k for c in run.cells for i in run.infos(c).values() for k in i.compute_columns()))
    any_tok = any(run.model_info(c) is not None and run.model_info(c).tokens_trained is not None for c in run.cells)
    headers = (["dataset", "condition", "kind", "cells", "train-time s (train + generation)"]
               + (["tokens trained"] if any_tok else [])
               + ["context tokens / question", "scoring s", "total s"] + extra)
    body = []
    costs: dict[tuple[str, str], tuple[float, float]] = {}  # (dataset, condition) -> (train s, context tokens)
    for key in keys:
        cs = groups[key]
        # a model stage's train_seconds is all its train-time compute (augmented_finetune counts its
        # generation and verification in it)
        models_info = [run.model_info(c) for c in cs]
        train = [i.train_seconds if i is not None else None for i in models_info]
        # what was scored: the runner's per-question context_tokens (shared prefix included)
        ctx = [sum(ctx_tokens[c.cell]) / len(ctx_tokens[c.cell]) for c in cs]
        costs[key] = (mean(train) or 0.0, mean(ctx) or 0.0)
        row = [key[0], key[1], cs[0].condition_kind, str(len(cs)), num(mean(train))]
        if any_tok:
            row.append(num(mean([i.tokens_trained if i is not None else None for i in models_info]), "tokens"))
        row += [num(mean(ctx), "tokens"), num(mean([c.timings.score_s for c in cs])),
                num(mean([c.timings.total_s for c in cs]))]
        for col in extra:
            row.append(num(mean([i.compute_columns().get(col) for c in cs for i in run.infos(c).values()]), "frac"))
        body.append(row)
    out.append(("p", "Means over seeds. Train-time seconds are what a condition spends before the first question "
                     "(fine-tuning, generating augmentations); context tokens per question are what it spends at "
                     "test time: the tokens before each question's choices (shared prefix plus the question's own "
                     "context, retrieved documents included), as scored."))
    out.append(("table", headers, body))
    if figs is not None:
        out += _tradeoff(run, costs, figs, colors)
    return out


def _tradeoff(run: Run, costs: dict[tuple[str, str], tuple[float, float]], figs: Figures,
              colors: dict[str, Any] | None) -> list[Block]:
    """Accuracy against train-time seconds and against test-time context tokens, per dataset: the
    trade-off of the talk (augmentation pays before the first question, retrieval and in-context
    learning pay in every question's context)."""
    rows, conds = rows_by_label(run)
    summary = summarize(rows)
    out: list[Block] = []
    for ds in run.dataset_order():
        points = [(s["condition"], s["split"], costs[(ds, s["condition"])], s) for s in summary
                  if s["dataset"] == ds and (ds, s["condition"]) in costs]
        if not points:
            continue
        path = figures.tradeoff(f"{ds}: accuracy against compute", points, conds,
                                figs.path(f"compute_{ds}"), colors)
        out += [("img", path, f"accuracy against train-time and test-time compute on {ds}"),
                ("p", "Each point: a condition (colour) on a split (marker), its accuracy with the 95% interval over "
                      "questions (see Statistics); left: train-time seconds (0 for a condition that trains nothing), "
                      "right: context tokens per question as scored, both the means of the table above (log-scaled "
                      "past 10, linear below); conditions at the same cost are drawn side by side.")]
    return out


def _curves(run: Run, figs: Figures) -> list[Block]:
    """Every model stage's training loss over optimizer steps, one figure per dataset."""
    out: list[Block] = []
    by_ds: dict[str, list[tuple[str, list]]] = {}
    for c in run.cells:
        info = run.model_info(c)
        if info is not None and info.loss_curve:
            by_ds.setdefault(c.dataset, []).append((f"{c.condition} seed {c.seed}", info.loss_curve))
    for ds, curves in by_ds.items():
        p = figures.loss_curves(f"{ds}: training loss", curves, figs.path(f"loss_{ds}"))
        out.append(("img", p, f"training loss on {ds}"))
    return [("h", 2, "Training curves")] + out if out else []


# ------------------------------------------------------------------------------------------ rendering

def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


_NUMERIC = re.compile(r"^(–|[-+]?[\d.,]+(e[-+]?\d+)?%?(–[\d.,]+)?( ± [\d.–]+%?)?( \[.*\])?( \(.*\))?)$")


def _numeric_columns(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[bool]:
    """Columns to right-align: every body value a number (or a dash)."""
    return [i > 0 and all(_NUMERIC.match(str(r[i])) for r in rows if i < len(r)) for i in range(len(headers))]


def to_markdown(blocks: Sequence[Block], base: Path) -> str:
    parts = []
    for b in blocks:
        if b[0] == "h":
            parts.append("#" * b[1] + " " + b[2])
        elif b[0] == "p":
            parts.append(b[1])
        elif b[0] == "list":
            parts.append("\n".join(f"- {x}" for x in b[1]))
        elif b[0] == "table":
            headers, rows = b[1], b[2]
            right = _numeric_columns(headers, rows)
            lines = ["| " + " | ".join(map(_md_cell, headers)) + " |",
                     "|" + "|".join("---:" if r else "---" for r in right) + "|"]
            lines += ["| " + " | ".join(_md_cell(str(x)) for x in r) + " |" for r in rows]
            parts.append("\n".join(lines))
        elif b[0] == "img":
            parts.append(f"![{b[2]}]({Path(os.path.relpath(b[1], base)).as_posix()})")
        elif b[0] == "pre":
            parts.append(f"```{b[2] if len(b) > 2 else ''}\n{b[1].rstrip()}\n```")
    return "\n\n".join(parts) + "\n"


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:1em 0;font-size:0.92em}
th,td{border:1px solid #ccc;padding:0.3em 0.7em;text-align:left}th{background:#f3f3f3}
img{max-width:100%;height:auto;display:block;margin:0.5em 0 1.5em}
code{background:#f3f3f3;padding:0 0.25em;border-radius:3px}
pre{background:#f6f6f6;padding:0.6em;overflow-x:auto;font-size:0.85em}h2{border-bottom:1px solid #ddd;padding-bottom:0.2em}"""


def to_html(markdown: str, title: str, base: Path) -> str:
    """``report.html`` rendered from ``report.md`` itself (CommonMark and tables, raw HTML off), so the
    two cannot disagree; images (paths relative to ``base``) are embedded as data URIs, so the page
    needs no other file."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")

    def image(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        tok = tokens[idx]
        data = base64.b64encode((base / tok.attrGet("src")).read_bytes()).decode("ascii")
        alt = self.renderInlineAsText(tok.children or [], options, env)
        return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'

    md.add_render_rule("image", image)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + md.render(markdown) + "</body></html>\n")


def build_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` (images embedded) and ``figures/*.png`` into ``out_dir``
    (default: the run folder). Returns the markdown and HTML paths."""
    run = load_run(run_dir)
    check_reportable(run)
    out = Path(out_dir) if out_dir is not None else run.path
    out.mkdir(parents=True, exist_ok=True)
    figs = Figures(out)
    _, conditions = rows_by_label(run)
    colors = figures.condition_colors(conditions)
    blocks: list[Block] = []
    blocks += _header(run)
    blocks += stage_gates(run, figs)
    blocks += _calibration(run)
    blocks += details.overview(run, figs, colors)
    blocks += _accuracy(run, figs, colors)
    blocks += _gates(run)
    blocks += details.statistics(run)
    blocks += details.paired(run, figs)
    blocks += stage_sections(run, figs)
    blocks += _compute(run, figs, colors)
    blocks += _curves(run, figs)
    blocks += details.drilldown(run, out)
    blocks += details.provenance(run)
    md_path, html_path = out / "report.md", out / "report.html"
    markdown = to_markdown(blocks, out)
    write_atomic(md_path, markdown)
    write_atomic(html_path, to_html(markdown, f"genmodes report: {run.name}", out))
    return md_path, html_path
