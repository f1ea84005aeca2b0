"""In-context accuracy against context length, per model (issue 13 item 2; P1 section on ICL: "performance
degrades with context length", so the largest datasets were subsampled 8x).

A run that scores several ``in_context`` conditions on one dataset (a ``budget_tokens`` sweep), on one
model or several, gets a table and a figure: x is the context actually used (the mean of the rows'
``context_tokens``: the document block plus the question, as scored), y the accuracy per split, one
line per model and split, chance dashed. A reader sees where each model's in-context learning breaks
down. Reads result files only.
"""

from __future__ import annotations

import math
from typing import Any

from genmodes.experiments.records import CellRecord, ResultRow
from genmodes.report import figures
from genmodes.report.run import Run
from genmodes.experiments.summary import summarize

DASH = "–"


def _is_in_context(c: CellRecord) -> bool:
    return c.condition_kind == "in_context" or all(k in c.info for k in ("budget_tokens", "prefix_tokens",
                                                                           "documents_in_context"))


def _pct(x: float) -> str:
    return DASH if x is None or math.isnan(x) else f"{100 * x:.1f}%"


def points(run: Run) -> dict[str, list[dict[str, Any]]]:
    """Per dataset with a sweep (two or more in_context conditions for some model): one point per
    (model, in_context condition), seeds pooled, sorted by model then context length."""
    cells = [c for c in run.cells if _is_in_context(c)]
    by_key: dict[tuple[str, str, str], list[CellRecord]] = {}
    for c in cells:
        by_key.setdefault((c.dataset, c.model, c.condition), []).append(c)
    rows_of: dict[str, list[ResultRow]] = {}
    for r in run.results:
        rows_of.setdefault(r.cell, []).append(r)
    out: dict[str, list[dict[str, Any]]] = {}
    for (ds, model, cond), cs in by_key.items():
        rows = [r for c in cs for r in rows_of.get(c.cell, [])]
        if not rows:
            continue
        tokens = [r.context_tokens for r in rows]
        infos = [c.info for c in cs]
        splits = {s["split"]: s for s in summarize(rows)}
        out.setdefault(ds, []).append({
            "model": model, "condition": cond, "tokens": sum(tokens) / len(tokens), "splits": splits,
            "requested": infos[0].get("budget_tokens_requested"), "budget": infos[0].get("budget_tokens"),
            "clipped": any(i.get("budget_clipped") for i in infos),
            "window": infos[0].get("window_tokens"),
            "documents": infos[0].get("documents_in_context"), "of": infos[0].get("documents"),
            "without_support": infos[0].get("questions_without_support"),
            "chance": [r.chance for r in rows],
        })
    sweeps = {}
    for ds, pts in out.items():
        per_model: dict[str, int] = {}
        for p in pts:
            per_model[p["model"]] = per_model.get(p["model"], 0) + 1
        if max(per_model.values()) >= 2:
            sweeps[ds] = sorted(pts, key=lambda p: (list(per_model).index(p["model"]), p["tokens"]))
    return sweeps


def section(run: Run, figs: Any) -> list[tuple]:
    sweeps = points(run)
    if not sweeps:
        return []
    out: list[tuple] = [
        ("h", 2, "In-context accuracy against context length"),
        ("p", "Each in_context condition of a dataset is one point per model: x is the context actually scored "
              "per question (document block plus question, mean of the rows' context_tokens), y the accuracy, "
              "one line per model and split; chance dashed. Budgets above a model's window are clipped to it "
              "(marked 'clipped'). With support_per_question, every question's supporting document is in the "
              "block and the rest is distractors, so the curve measures length, not coverage.")]
    for ds, pts in sweeps.items():
        splits = list(dict.fromkeys(s for p in pts for s in p["splits"]))
        headers = (["model", "condition", "budget requested", "budget used", "documents in context",
                    "context tokens / question"] + [f"{s}" for s in splits] + ["questions without support"])
        body = []
        for p in pts:
            used = DASH if p["budget"] is None else f"{p['budget']:,}" + (" (clipped)" if p["clipped"] else "")
            body.append([p["model"] or DASH, p["condition"],
                         DASH if p["requested"] is None else f"{p['requested']:,}", used,
                         DASH if p["documents"] is None else f"{p['documents']} of {p['of']}",
                         f"{p['tokens']:,.0f}"]
                        + [(f"{_pct(p['splits'][s]['accuracy'])} ± {_pct(p['splits'][s]['stderr'])}"
                            if s in p["splits"] else DASH) for s in splits]
                        + [DASH if p["without_support"] is None else str(p["without_support"])])
        out += [("h", 3, ds), ("table", headers, body)]
        lines = []
        models = list(dict.fromkeys(p["model"] for p in pts))
        for m in models:
            for s in splits:
                line = [(p["tokens"], p["splits"][s]["accuracy"],
                         0.0 if math.isnan(p["splits"][s]["stderr"]) else p["splits"][s]["stderr"])
                        for p in pts if p["model"] == m and s in p["splits"]]
                if line:
                    lines.append((f"{m} · {s}" if m else s, line))
        chances = [x for p in pts for x in p["chance"]]
        path = figures.context_curve(f"{ds}: in-context accuracy vs context length", lines,
                                     sum(chances) / len(chances) if chances else None, figs.path(f"context_{ds}"))
        out.append(("img", path, f"in-context accuracy against context length on {ds}"))
    return out
