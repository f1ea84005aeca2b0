"""``build_report(run_dir)``: ``report.md`` and a self-contained ``report.html`` from a run folder.

The report answers the questions of P1-P3 for one run: accuracy per dataset, split and condition
(tables and bar charts with standard errors and chance, like P1's figures), the augmentation audit,
retrieval recall, and the train-time vs test-time compute trade-off (augmentation pays at train time,
retrieval and in-context learning pay in context tokens at test time). It reads only the run folder.

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

from genmodes.experiments.records import CellRecord, ResultRow
from genmodes.report import context_curve, details, figures, thinking
from genmodes.report.run import Run, load_run
from genmodes.experiments.summary import summarize

DASH = "–"

# ------------------------------------------------------------------------------------------ blocks
# ("h", level, text) ("p", text) ("list", [text]) ("table", headers, rows) ("img", relpath, alt)
Block = tuple


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


def _pct(x: Any, digits: int = 1) -> str:
    if not _is_num(x):
        return DASH if x is None or isinstance(x, float) else str(x)
    s = f"{100 * x:.{digits}f}"
    return (s.rstrip("0").rstrip(".") if "." in s else s) + "%"


def _acc(r: dict[str, Any]) -> str:
    se = r["stderr"]
    # the terminal table's format: "47.5% ± 4.8%"
    return f"{100 * r['accuracy']:.1f}% ± {DASH if math.isnan(se) else f'{100 * se:.1f}%'}"


def _num(x: float | None, kind: str = "s") -> str:
    if not _is_num(x):
        return DASH
    if kind == "tokens":
        return f"{x:,.0f}"
    if kind == "frac":
        return f"{x:.3g}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def _mean(xs: Sequence[Any]) -> float | None:
    v = [float(x) for x in xs if _is_num(x)]
    return sum(v) / len(v) if v else None


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "x"


# ------------------------------------------------------------------------------------------ sections

class _Figures:
    """Figure files of this report: unique names under ``out/figures``."""

    def __init__(self, out: Path):
        self.dir = out / "figures"
        self.used: set[str] = set()

    def path(self, stem: str) -> Path:
        name, i = _slug(stem), 2
        while name in self.used:
            name, i = f"{_slug(stem)}_{i}", i + 1
        self.used.add(name)
        return self.dir / f"{name}.png"


def _rows_by_label(run: Run) -> tuple[list[ResultRow], list[str]]:
    """Result rows with ``condition`` relabelled ``condition · model`` when a run holds several models,
    and the conditions in report order (config order)."""
    models = _models(run)
    order = run.condition_order()
    if len(models) <= 1:
        present = {r.condition for r in run.results}
        return run.results, [c for c in order if c in present]
    rows = [r.model_copy(update={"condition": f"{r.condition} · {r.model}"}) for r in run.results]
    present = {r.condition for r in rows}
    return rows, [f"{c} · {m}" for c in order for m in models if f"{c} · {m}" in present]


def _models(run: Run) -> list[str]:
    """The run's models with results, in config order."""
    present = {r.model for r in run.results}
    return [m for m in run.config.model_specs if m in present]


def _several(run: Run) -> bool:
    return len(_models(run)) > 1


def _cond(run: Run, c: CellRecord) -> str:
    """A cell's condition, with its model when the run has several (``condition · model``)."""
    return f"{c.condition} · {c.model}" if _several(run) else c.condition


def _header(run: Run) -> list[Block]:
    cfg = run.config
    done = len(run.cells)
    models = cfg.model_specs
    facts = [f"{'Models' if len(models) > 1 else 'Model'} {', '.join(f'`{m}`' for m in models)}",
             f"run folder `{run.path}`"]
    if run.date:
        facts.append(f"last cell finished {run.date}")
    facts.append(f"seeds {', '.join(map(str, cfg.seeds))}")
    out: list[Block] = [("h", 1, f"Report: {run.name}"), ("p", " · ".join(facts) + ".")]
    status = f"Cells finished: {done} of {run.expected_cells}."
    if done < run.expected_cells:
        status += " The run is incomplete or still in progress: this report shows the finished cells only."
    out.append(("p", status))
    if run.notes:
        out.append(("list", run.notes))
    out.append(("p", "Accuracy: share of questions whose most likely choice (summed log-probability, choices "
                     "never shown in context) is the answer. ± is the standard error over (subtype, seed) "
                     "groups, binomial when there is only one group (the Statistics section adds the binomial standard "
                     "error, a 95% interval and acc_norm). Chance is the mean over the split's "
                     "questions of 1 / number of choices."))
    return out


def _accuracy(run: Run, figs: _Figures, colors: dict[str, Any]) -> list[Block]:
    rows, conditions = _rows_by_label(run)
    out: list[Block] = [("h", 2, "Accuracy")]
    if not rows:
        out.append(("p", "No finished cells yet: nothing to report."))
        return out
    summary = summarize(rows)
    n_seeds = len(run.config.seeds)
    seeds_of: dict[tuple[str, str], set[int]] = {}
    questions: dict[tuple[str, str], set[str]] = {}  # distinct questions per (dataset, split)
    for r in rows:
        seeds_of.setdefault((r.dataset, r.condition), set()).add(r.seed)
        questions.setdefault((r.dataset, r.split), set()).add(r.question_id)
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
        headers = ["condition"] + [f"{sp} (chance {_pct(chance[sp])})" for sp in splits]
        body = []
        for c in conds:
            label = c
            k = len(seeds_of.get((ds, c), ()))
            if k < n_seeds:
                label += f" ({k} of {n_seeds} seeds)"
            body.append([label] + [_acc(table[(sp, c)]) if (sp, c) in table else DASH for sp in splits])
        body.append(["questions"] + [str(len(questions.get((ds, sp), ()))) for sp in splits])
        if _several(run):
            out += _side_by_side(run, ds, srows, splits, chance, questions, figs)
            continue
        out.append(("table", headers, body))
        path = figures.accuracy_bars(f"{ds}: accuracy by split", splits, conds, table, chance,
                                     figs.path(f"accuracy_{ds}"), colors, baselines=details.baselines(run, conds))
        out.append(("img", path, f"accuracy on {ds}"))
    return out


def _side_by_side(run: Run, ds: str, srows: list[dict[str, Any]], splits: list[str], chance: dict[str, float],
                  questions: dict[tuple[str, str], set[str]], figs: _Figures) -> list[Block]:
    """Several models: a row per condition, a column per split and model, and the bars in one panel per
    model (each condition the same colour in every panel)."""
    models = [m for m in _models(run) if any(s["model"] == m for s in srows)]
    plain = [c for c in run.condition_order() if any(s["condition"] == f"{c} · {m}" for s in srows for m in models)]
    table = {(s["model"], s["split"], s["condition"].rsplit(" · ", 1)[0]): s for s in srows}
    headers = ["condition"] + [f"{sp} · {m} (chance {_pct(chance[sp])})" for sp in splits for m in models]
    body = [[c] + [_acc(table[(m, sp, c)]) if (m, sp, c) in table else DASH for sp in splits for m in models]
            for c in plain]
    body.append(["questions"] + [str(len(questions.get((ds, sp), ()))) for sp in splits for _ in models])
    panels = [(m, [sp for sp in splits if any((m, sp, c) in table for c in plain)],
               {(sp, c): table[(m, sp, c)] for sp in splits for c in plain if (m, sp, c) in table}, chance)
              for m in models]
    path = figures.accuracy_panels(f"{ds}: accuracy by split, per model", panels, plain,
                                   figs.path(f"accuracy_{ds}"), figures.condition_colors(plain),
                                   baselines=details.baselines(run, plain))
    return [("table", headers, body), ("img", path, f"accuracy on {ds}, models side by side")]


def _cell_label(c: CellRecord, run: Run) -> list[str]:
    return [c.dataset, _cond(run, c), str(c.seed)]


def _augmentation(run: Run) -> list[Block]:
    cells = [c for c in run.cells if isinstance(c.info.get("augmentation"), dict)]
    if not cells:
        return []
    headers = ["dataset", "condition", "seed", "statements", "true", "false", "unverifiable",
               "test answers stated", "generated documents"]
    body = []
    for c in cells:
        a = c.info["augmentation"]
        n = a.get("statements")

        def count(v: Any) -> str:
            return f"{v:g}" if _is_num(v) else (DASH if v is None else str(v))

        def part(k: str) -> str:
            v = a.get(k)
            return count(v) + (f" ({_pct(v / n)})" if _is_num(v) and _is_num(n) and n > 0 else "")

        body.append(_cell_label(c, run) + [count(n), part("true"), part("false"), part("unverifiable"),
                                      part("test_answers_stated"), count(a.get("generated_documents"))])
    return [("h", 2, "Augmentation audit"),
            ("p", "Statements the model generated, checked against the dataset's knowledge: true, false (contradict "
                  "it), unverifiable (parse or unknown entities). Test answers stated: generated statements that "
                  "spell out the answer of a test question (the augmentation works by stating latent "
                  "consequences, so this measures how much of the test it anticipated)."),
            ("table", headers, body)]


def _verification(run: Run) -> list[Block]:
    """Augmentation audit before and after in-context verification: what it removed and let through."""
    cells = [c for c in run.cells if isinstance((c.info.get("augmentation") or {}).get("verification"), dict)]
    if not cells:
        return []
    headers = ["dataset", "condition", "seed", "margin", "true before -> after", "false before -> after",
               "unverifiable before -> after", "test answers stated before -> after", "verification s"]
    body = []
    for c in cells:
        aug = c.info["augmentation"]
        v = aug["verification"]
        before = v.get("before") or {}

        def arrow(k: str) -> str:
            return f"{before.get(k, DASH)} -> {aug.get(k, DASH)}"

        body.append(_cell_label(c, run) + [str(v.get("margin", DASH)), arrow("true"), arrow("false"),
                                      arrow("unverifiable"), arrow("test_answers_stated"),
                                      str(v.get("seconds", DASH))])
    return [("h", 2, "Augmentation verification"),
            ("p", "Each generated statement judged by the model with its source document in context against the "
                  "same statement with another entity swapped in; kept only if preferred by the margin (nats). "
                  "The audit against the ground truth before and after."),
            ("table", headers, body)]


def _retrieval(run: Run) -> list[Block]:
    cells = [c for c in run.cells if c.info.get("recall_at_k") is not None]
    if not cells:
        return []
    splits: dict[str, None] = {}
    for c in cells:
        by = c.info.get("recall_at_k_by_split")
        if isinstance(by, dict):
            splits.update(dict.fromkeys(map(str, by)))
    headers = ["dataset", "condition", "seed", "k", "recall@k"] + [f"recall@k {s}" for s in splits]
    body = []
    for c in cells:
        info = c.info
        by = info.get("recall_at_k_by_split") if isinstance(info.get("recall_at_k_by_split"), dict) else {}
        k = info.get("k")
        body.append(_cell_label(c, run) + [DASH if k is None else str(k), _pct(info["recall_at_k"])]
                    + [_pct(by.get(s)) for s in splits])
    return [("h", 2, "Retrieval recall@k"),
            ("p", "Share of questions whose supporting document(s) are among the k retrieved."),
            ("table", headers, body)]


def _in_context(run: Run) -> list[Block]:
    """Per in_context cell: documents kept, questions left without support, accuracy with and without them."""
    cells = [c for c in run.cells if "questions_without_support" in c.info]
    if not cells:
        return []
    body = []
    for c in cells:
        info = c.info
        rows = [r for r in run.results if r.cell == c.cell]
        gone = set(map(str, info.get("questions_without_support_ids") or []))
        kept = [r for r in rows if r.question_id not in gone]

        def acc(rs: list[ResultRow]) -> str:
            return f"{_pct(sum(r.correct for r in rs) / len(rs))} (n={len(rs)})" if rs else DASH

        n_docs, n_kept, n_gone = info.get("documents"), info.get("documents_in_context"), \
            info.get("questions_without_support")
        body.append(_cell_label(c, run) + [f"{n_kept} of {n_docs}", DASH if n_gone is None else str(n_gone),
                                      acc(rows), acc(kept) if n_gone is not None else DASH])
    return [("h", 2, "In context: documents kept and questions left without support"),
            ("p", "When the documents exceed the model's window, a seeded subset is kept. A question none of whose "
                  "supporting documents was kept cannot be answered from context; accuracy on the questions whose "
                  "support was in context excludes those."),
            ("table", ["dataset", "condition", "seed", "documents kept", "questions without support",
                       "accuracy", "accuracy, support in context"], body)]


def _compute(run: Run) -> list[Block]:
    out: list[Block] = [("h", 2, "Compute: train time vs test time")]
    if not run.cells:
        out.append(("p", "No finished cells yet: no timings."))
        return out
    ctx_tokens: dict[str, list[int]] = {}
    for r in run.results:
        ctx_tokens.setdefault(r.cell, []).append(r.context_tokens)
    groups: dict[tuple[str, str], list[CellRecord]] = {}
    for c in run.cells:
        groups.setdefault((c.dataset, _cond(run, c)), []).append(c)
    d_order = {d: i for i, d in enumerate(run.dataset_order())}
    c_order = {c: i for i, c in enumerate(_rows_by_label(run)[1])}
    keys = sorted(groups, key=lambda k: (d_order.get(k[0], len(d_order)), c_order.get(k[1], len(c_order))))
    any_kept = any(c.info.get("kept_fraction") is not None for c in run.cells)
    any_tok = any(c.info.get("tokens_trained") is not None for c in run.cells)
    headers = (["dataset", "condition", "kind", "cells", "train-time s (train + generation)"]
               + (["tokens trained"] if any_tok else [])
               + ["context tokens / question", "scoring s", "total s"]
               + (["kept fraction"] if any_kept else []))
    body = []
    for key in keys:
        cs = groups[key]
        train, ctx = [], []
        for c in cs:
            # a condition's train_seconds is all its train-time compute (augmented_finetune counts its
            # generation in it); generation_seconds alone stands in only where train_seconds is absent
            t, g = c.info.get("train_seconds"), c.info.get("generation_seconds")
            train.append(t if _is_num(t) else (g if _is_num(g) else None))
            # what was scored: the runner's per-question context_tokens (shared prefix included)
            v = ctx_tokens[c.cell]
            ctx.append(sum(v) / len(v))
        info_of = [c.info for c in cs]
        row = [key[0], key[1], cs[0].condition_kind, str(len(cs)), _num(_mean(train))]
        if any_tok:
            row.append(_num(_mean([i.get("tokens_trained") for i in info_of]), "tokens"))
        row += [_num(_mean(ctx), "tokens"), _num(_mean([c.timings.score_s for c in cs])),
                _num(_mean([c.timings.total_s for c in cs]))]
        if any_kept:
            row.append(_num(_mean([i.get("kept_fraction") for i in info_of]), "frac"))
        body.append(row)
    out.append(("p", "Means over seeds. Train-time seconds are what a condition spends before the first question "
                     "(fine-tuning, generating augmentations); context tokens per question are what it spends at "
                     "test time: the tokens before each question's choices (shared prefix plus the question's own "
                     "context, retrieved documents included), as scored."))
    out.append(("table", headers, body))
    return out


def _curves(run: Run, figs: _Figures) -> list[Block]:
    out: list[Block] = []
    by_ds: dict[str, list[tuple[str, list]]] = {}
    for c in run.cells:
        lc = c.info.get("loss_curve")
        if isinstance(lc, list) and lc:
            by_ds.setdefault(c.dataset, []).append((f"{c.condition} seed {c.seed}", lc))
    for ds, curves in by_ds.items():
        p = figures.loss_curves(f"{ds}: training loss", curves, figs.path(f"loss_{ds}"))
        out.append(("img", p, f"training loss on {ds}"))
    notes = []
    for c in run.cells:
        rel = c.info.get("curves_file")
        if not rel:
            continue
        f = run.path / str(rel)
        if not f.is_file():
            notes.append(f"{c.cell}: curves file {rel} not found.")
            continue
        try:
            from genmodes.report.run import read_curves

            rows = read_curves(f)
        except Exception as e:  # a bad curves file must not cost the whole report
            notes.append(f"{c.cell}: curves file unreadable ({e}).")
            continue
        if rows:
            p = figures.training_curves(f"{c.dataset} / {c.condition} seed {c.seed}",
                                        rows, figs.path(f"curves_{c.cell}"))
            out.append(("img", p, f"training curves of {c.cell}"))
    if notes:
        out.append(("list", notes))
    return [("h", 2, "Training curves")] + out if out else []


# ------------------------------------------------------------------------------------------ rendering

def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


_NUMERIC = re.compile(r"^(–|[-+]?[\d.,]+(e[-+]?\d+)?%?( ± [\d.–]+%?)?( \[.*\])?( \(.*\))?)$")


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


def _write_atomic(path: Path, text: str) -> None:
    from genmodes.io import atomic_write

    atomic_write(path, text)


def build_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` (images embedded) and ``figures/*.png`` into ``out_dir``
    (default: the run folder). Returns the markdown and HTML paths."""
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path
    out.mkdir(parents=True, exist_ok=True)
    figs = _Figures(out)
    _, conditions = _rows_by_label(run)
    colors = figures.condition_colors(conditions)
    blocks: list[Block] = []
    blocks += _header(run)
    blocks += details.overview(run, figs, colors)
    blocks += _accuracy(run, figs, colors)
    blocks += details.statistics(run)
    blocks += details.paired(run)
    blocks += _augmentation(run)
    blocks += _verification(run)
    blocks += _retrieval(run)
    blocks += _in_context(run)
    blocks += context_curve.section(run, figs)
    blocks += _compute(run)
    blocks += _curves(run, figs)
    blocks += thinking.sections(run, figs)
    blocks += details.drilldown(run, out)
    blocks += details.provenance(run)
    md_path, html_path = out / "report.md", out / "report.html"
    markdown = to_markdown(blocks, out)
    _write_atomic(md_path, markdown)
    _write_atomic(html_path, to_html(markdown, f"genmodes report: {run.name}", out))
    return md_path, html_path
