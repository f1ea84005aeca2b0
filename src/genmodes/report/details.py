"""The report's paper-facing sections: one overview figure per study, the statistics policy and
per-split statistics (95% interval, how it was made, acc_norm), paired comparisons between conditions
(the sentence a paper makes, e.g. P1's "in-context learning generalizes better than fine-tuning on
reversals": a paired difference with its bootstrap interval and McNemar's p, Holm-corrected; the
comparisons the study declares first, then every pair; a forest plot), a per-question drill-down page,
and what the run was made with (config, dataset content hashes, model, package versions).

Each section is a list of blocks for :mod:`genmodes.report.build`; like the rest of the report it
reads only the run folder.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from genmodes.experiments.records import ResultRow
from genmodes.experiments.statistics import ALPHA, POLICY, accuracy_of
from genmodes.experiments.summary import summarize
from genmodes.report import figures, stats
from genmodes.report.common import DASH, Block, label_gate, pct as _pct, rows_by_label as _labelled, write_atomic
from genmodes.report.run import Run

DRILLDOWN = "drilldown.html"


def baselines(run: Run, labels: list[str]) -> list[str]:
    """The labels (``name`` or ``name · model``) of shortcut baselines (no model)."""
    shortcut = {c.name for c in run.config.conditions if c.is_baseline}
    return [lab for lab in labels if lab.split(" · ")[0] in shortcut]


def _stats_rows(rows: list[ResultRow]) -> list[dict[str, Any]]:
    """Summary rows plus k (correct), how the interval was made (method, groups) and acc_norm."""
    out = summarize(rows)
    by: dict[tuple[str, str, str, str], list[ResultRow]] = {}
    for r in rows:
        by.setdefault((r.model, r.dataset, r.split, r.condition), []).append(r)
    for s in out:
        mine = by[(s["model"], s["dataset"], s["split"], s["condition"])]
        a = accuracy_of(mine)  # the summary's interval (same rows, same seed): its method and groups
        s["k"], s["method"], s["groups"] = a.k, a.method, a.groups
        s["acc_norm"] = sum(r.correct_norm for r in mine) / s["n"]
    return out


# ------------------------------------------------------------------------------------------ overview

def overview(run: Run, figs: Any, colors: dict[str, Any]) -> list[Block]:
    rows, conditions = _labelled(run)
    if not rows:
        return []
    srows = _stats_rows(rows)
    panels = []
    for ds in run.dataset_order():
        mine = [s for s in srows if s["dataset"] == ds]
        if not mine:
            continue
        splits = list(dict.fromkeys(s["split"] for s in mine))
        chance = {}
        for sp in splits:
            ch = [s["chance"] for s in mine if s["split"] == sp and not math.isnan(s["chance"])]
            chance[sp] = sum(ch) / len(ch) if ch else float("nan")
        panels.append((ds, splits, {(s["split"], s["condition"]): s for s in mine}, chance))
    path = figures.overview(f"{run.name}: accuracy by dataset and split", panels, conditions,
                            figs.path("overview"), colors, baselines=baselines(run, conditions))
    ns = sorted({s["n"] for s in srows})
    rests = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]} to {ns[-1]} (per bar: the Accuracy tables)"
    note = ("Error bars: 95% intervals over questions (see Statistics), each bar resting on its answers "
            f"(questions x seeds), {rests}; dashed: chance"
            + ("; hatched bars: baselines (condition kind `baseline`)" if baselines(run, conditions) else "") + ".")
    return [("h", 2, "Overview"), ("img", path, f"overview of {run.name}"), ("p", note)]


# ------------------------------------------------------------------------------------------ statistics

def statistics(run: Run) -> list[Block]:
    rows, conditions = _labelled(run)
    if not rows:
        return []
    order = {c: i for i, c in enumerate(conditions)}
    srows = _stats_rows(rows)
    headers = ["dataset", "split", "condition", "n", "correct", "accuracy", "95% interval", "interval",
               "acc_norm"]
    body = []
    for ds in run.dataset_order():
        mine = [s for s in srows if s["dataset"] == ds]
        splits = list(dict.fromkeys(s["split"] for s in mine))
        for sp in splits:
            for s in sorted((s for s in mine if s["split"] == sp), key=lambda s: order.get(s["condition"], 1 << 30)):
                how = s["method"] + (f" over {s['groups']} groups" if s["groups"] > 1 else "")
                body.append([ds, sp, s["condition"], str(s["n"]), str(s["k"]), _pct(s["accuracy"]),
                             f"[{_pct(s['ci_low'])}, {_pct(s['ci_high'])}]", how, _pct(s["acc_norm"])])
    return [("h", 2, "Statistics"),
            ("p", POLICY),
            ("p", "n counts answers, (question, seed) pairs; a group is a (subtype, seed) pair. acc_norm picks the "
                  "choice with the highest log-probability per character (lm-eval's acc_norm); it is shown for "
                  "reference only, every other number of the report is plain accuracy."),
            ("table", headers, body)]


# ------------------------------------------------------------------------------------------ paired

PAIRED_HEADERS = ["dataset", "split", "difference", "n", "accuracies", "95% interval (paired bootstrap)",
                  "only first right", "only second right", "McNemar p", "Holm p", "recall gate"]


def _paired_table(run: Run, comps: list[stats.Paired]) -> Block:
    body = [[p.dataset, p.split, f"{p.a} - {p.b}", str(p.n), f"{_pct(p.acc_a)} vs {_pct(p.acc_b)}",
             f"{stats.points(p.diff, sign=True)} points [{stats.points(p.ci[0])}, {stats.points(p.ci[1])}]",
             str(p.only_a), str(p.only_b), _p(p.p_mcnemar), _p(p.p_holm), _not_a_test(run, p) or DASH]
            for p in comps]
    return ("table", PAIRED_HEADERS, body)


def _significant(run: Run, comps: list[stats.Paired], family: str) -> list[Block]:
    hits = [f"{p.sentence()}{(' — ' + note) if (note := _not_a_test(run, p)) else ''} (McNemar p = "
            f"{_p(p.p_mcnemar)}, Holm p = {_p(p.p_holm)}, n = {p.n})" for p in comps if p.significant]
    if not hits:
        return [("p", f"No difference is significant after Holm's correction over {family} (p < {ALPHA:g}).")]
    return [("p", f"Significant after Holm's correction over {family} (p < {ALPHA:g}):"), ("list", hits)]


def _labels(run: Run, conditions: list[str]) -> dict[str, list[str]]:
    """A condition's labels in the report's rows: itself, or ``name · model`` per model."""
    out: dict[str, list[str]] = {}
    for lab in conditions:
        out.setdefault(lab.split(" · ")[0], []).append(lab)
    return out


MAX_FOREST = 60  # rows of the forest plot: beyond this a figure is no longer read


def paired(run: Run, figs: Any = None) -> list[Block]:
    rows, conditions = _labelled(run)
    if not rows:
        return []
    declared = stats.declared_comparisons(rows, run.config.compare, _labels(run, conditions))
    every = stats.paired_comparisons(rows, conditions)
    if not every and not declared:
        return []
    out: list[Block] = [
        ("h", 2, "Paired comparisons"),
        ("p", f"Every condition answers the same questions, so two conditions are compared question by question "
              f"(matched by seed and question id): the difference of accuracies in points, its 95% interval from a "
              f"paired bootstrap over questions ({stats.BOOTSTRAP_RESAMPLES:,} resamples, seed "
              f"{stats.BOOTSTRAP_SEED}), and McNemar's exact test on the questions only one of the two got right, "
              f"with Holm's correction over the comparisons of the same table (Holm p). Each names its dataset "
              f"and split.")]
    if declared:
        out += [("h", 3, "Declared comparisons"),
                ("p", f"The {len(declared)} comparison(s) the study declares (`compare:` in its config), first "
                      "condition minus second, corrected as one family.")]
        out += _significant(run, declared, f"the {len(declared)} declared comparison(s)")
        out.append(_paired_table(run, declared))
    out += split_contrasts(run)
    shown = declared or every
    if figs is not None and shown:
        what = "declared comparisons" if declared else "comparisons"
        cut = f" (the first {MAX_FOREST} of {len(shown)})" if len(shown) > MAX_FOREST else ""
        path = figures.forest(f"{run.name}: paired differences", shown[:MAX_FOREST], figs.path("paired_differences"))
        out += [("img", path, "forest plot of paired differences"),
                ("p", f"Forest plot of the {what}{cut}: each difference with its 95% paired bootstrap interval, in "
                      "points; filled: significant after Holm's correction; dashed: no difference.")]
    if every:
        out += [("h", 3, "All pairs"),
                ("p", f"Exploratory: every pair of conditions on every split (later condition minus earlier), "
                      f"{len(every)} comparisons, Holm-corrected together.")]
        out += _significant(run, every, f"all {len(every)} pairs")
        out.append(_paired_table(run, every))
    return out


def _not_a_test(run: Run, p: Any) -> str:
    """Where a side of a comparison is a trained model that failed its recall gate on a latent split."""
    from genmodes.experiments.gates import NOT_A_TEST

    failed = [c for c in (p.a, p.b) if (g := label_gate(run, p.dataset, c)) is not None
              and g.applies_to(p.split) and not g.passed]
    return f"{', '.join(failed)}: {NOT_A_TEST}" if failed else ""


def split_contrasts(run: Run) -> list[Block]:
    """The split contrasts the study declares (``compare_splits``): split a minus split b for each
    condition, on different questions (an unpaired bootstrap interval), with the condition's gate."""
    contrasts = run.config.config.compare_splits
    rows, conditions = _labelled(run)
    if not contrasts or not rows:
        return []
    labels = _labels(run, conditions)
    by: dict[tuple[str, str, str], list[bool]] = {}
    for r in rows:
        by.setdefault((r.dataset, r.split, r.condition), []).append(r.correct)
    body = []
    for sc in contrasts:
        for ds in run.dataset_order():
            if sc.dataset is not None and ds != sc.dataset:
                continue
            for c in (lab for name in (sc.conditions or run.condition_order()) for lab in labels.get(name, [])):
                x, y = by.get((ds, sc.a, c)), by.get((ds, sc.b, c))
                if not x or not y:
                    continue
                diff = sum(x) / len(x) - sum(y) / len(y)
                lo, hi = stats.unpaired_bootstrap_ci(x, y)
                g = label_gate(run, ds, c)
                gate = g.label() if g is not None and g.applies_to(sc.a) else DASH
                body.append([ds, c, f"{sc.a} - {sc.b}", f"{len(x)}, {len(y)}",
                             f"{_pct(sum(x) / len(x))} vs {_pct(sum(y) / len(y))}",
                             f"{stats.points(diff, sign=True)} points [{stats.points(lo)}, {stats.points(hi)}]", gate])
    if not body:
        return []
    return [("h", 3, "Declared split contrasts"),
            ("p", f"The split contrasts the study declares (`compare_splits:` in its config): one condition's "
                  "accuracy on one split minus another, e.g. a probe's congruent minus incongruent items. The "
                  "splits hold different questions, so the 95% interval resamples each on its own "
                  f"({stats.BOOTSTRAP_RESAMPLES:,} resamples, seed {stats.BOOTSTRAP_SEED}). The gate is the "
                  "condition's recall gate: where its model did not learn the facts, the contrast is not a test."),
            ("table", ["dataset", "condition", "contrast", "n", "accuracies", "95% interval (unpaired bootstrap)",
                       "gate"], body)]


def _p(p: float) -> str:
    return "1" if p >= 0.9995 else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


# ------------------------------------------------------------------------------------------ provenance

def provenance(run: Run) -> list[Block]:
    """What the run was made with: the manifest (config hash, git commit, datasets, model weights),
    plus what the cells record themselves (a resumed run may hold cells of an earlier environment)."""
    m = run.manifest
    out: list[Block] = [("h", 2, "Provenance")]
    commit = (f"`{m.git_commit[:12]}`" + (" (with uncommitted changes)" if m.git_dirty else "")
              if m.git_commit else "not a git checkout")
    out.append(("p", f"genmodes source: {commit}; config sha256 `{m.config_hash[:16]}`; last started "
                     f"{m.started_at}."))
    ds_hash: dict[str, set[str]] = {}
    for c in run.cells:
        ds_hash.setdefault(c.dataset, set()).add(c.dataset_hash)
    out.append(("table", ["dataset", "source", "questions scored", "content hash (sha256 of its data files)"],
                [[d, p.source, str(p.questions), ", ".join(sorted(ds_hash.get(d, set()) | {p.content_hash}))]
                 for d, p in m.datasets.items()]))
    # the base model as loaded: a cell that did not train (a fine-tuned one loads its checkpoint)
    loaded = {c.model: c.model_info for c in run.cells if c.model_info is not None
              and not (run.model_info(c) is not None and run.model_info(c).checkpoints())}
    rows = []
    for w in m.models:
        i = loaded.get(w.spec)
        rows.append([w.spec, i.class_ if i else DASH, (i.architecture if i else None) or DASH,
                     f"{i.parameters:,}" if i and i.parameters is not None else DASH,
                     (i.name_or_path if i else None) or DASH,
                     f"`{w.weights_hash[:16]}`" if w.weights_hash else DASH,
                     ", ".join(sorted({c.dtype for c in run.cells if c.model == w.spec and c.dtype})) or DASH])
    out.append(("table", ["model spec", "class", "architecture", "parameters", "loaded from",
                          "weights sha256", "scored in"], rows))
    versions: dict[str, set[str]] = {k: {v} for k, v in m.versions.items()}
    for c in run.cells:
        for k, v in c.versions.items():
            versions.setdefault(k, set()).add(v)
    out.append(("p", "Package versions the cells ran with: " + ", ".join(
        f"{k} {' / '.join(sorted(v))}" for k, v in sorted(versions.items())) + "."))
    out += [("p", "The run's config (`config.yaml`, as resolved by the runner):"),
            ("pre", run.config_yaml(), "yaml")]
    return out


# ------------------------------------------------------------------------------------------ drill-down

def drilldown_data(run: Run) -> dict[str, Any]:
    """Per question (dataset, question id): split, subtype, answer, choices, context, and per condition
    (suffixed with the seed when the run has several) its score of each choice, the choice and whether
    it is right, plus the retrieved document ids when the condition recorded them. A model scores a
    choice by its log-probability; a shortcut baseline by its own measure (a count, a length, a
    probability: ``kinds[column] == "baseline"``). ``documents``: the retrieved documents' texts, by
    dataset and id, where the condition saved them."""
    from genmodes.conditions.baseline import own_scores

    rows, conditions = _labelled(run)
    multi_seed = len({r.seed for r in rows}) > 1
    shortcut = set(baselines(run, conditions))
    questions: dict[tuple[str, str], dict[str, Any]] = {}
    cols: dict[str, None] = {}
    kinds: dict[str, str] = {}
    c_order = {c: i for i, c in enumerate(conditions)}
    for r in sorted(rows, key=lambda r: (c_order.get(r.condition, 1 << 30), r.seed)):
        key = (r.dataset, r.question_id)
        q = questions.get(key)
        if q is None:
            q = questions[key] = {"dataset": r.dataset, "id": r.question_id, "split": r.split,
                                  "subtype": r.subtype, "answer": r.answer,
                                  "choices": [s.choice for s in r.scores], "context": r.context, "results": {}}
        col = r.condition + (f" s{r.seed}" if multi_seed else "")
        cols[col] = None
        scores = [s.logprob for s in r.scores]
        if r.condition in shortcut:
            kinds[col] = "baseline"
            scores = own_scores(scores, r.chosen)
        res: dict[str, Any] = {"lp": [round(x, 4) for x in scores], "chosen": r.chosen,
                               "chosen_norm": r.chosen_norm, "correct": r.correct}
        if r.retrieved is not None:
            res["retrieved"] = list(r.retrieved)
        q["results"][col] = res
    notes: dict[str, str] = {}
    documents: dict[str, dict[str, str]] = {}
    for c in run.cells:
        for info in run.infos(c).values():
            note = info.drilldown_note()
            if note:
                notes[f"{c.dataset}|{c.condition}"] = note
            docs = info.drilldown_documents()
            if docs:
                documents.setdefault(c.dataset, {}).update(_documents(run, docs))
    # report order: datasets as configured, then questions in the order the run scored them
    d_order = {d: i for i, d in enumerate(run.dataset_order())}
    qs = sorted(questions.values(), key=lambda q: d_order.get(q["dataset"], 1 << 30))
    return {"title": run.name, "columns": list(cols), "kinds": kinds, "questions": qs, "notes": notes,
            "documents": documents}


def _documents(run: Run, relpath: str) -> dict[str, str]:
    """A cell's saved documents (id -> text); a file that is gone or unreadable shows ids only."""
    from genmodes.io import read_jsonl

    try:
        return {str(row.get("id")): str(row.get("text", "")) for _, row in read_jsonl(run.path / relpath)}
    except Exception:  # noqa: BLE001 - a missing file must not cost the whole report
        return {}


_DRILL_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em;color:#222}
.bar{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd}
.bar label{margin-right:1em}.q{border:1px solid #ddd;border-radius:4px;margin:.8em 0;padding:.5em .8em}
.meta{color:#555;font-size:.9em}.ctx{white-space:pre-wrap;background:#f6f6f6;padding:.4em;margin:.3em 0}
table{border-collapse:collapse;font-size:.88em}th,td{border:1px solid #ccc;padding:.2em .5em}
td.n{text-align:right;font-variant-numeric:tabular-nums}.ans{font-weight:bold}
.ok{background:#dff0d8}.bad{background:#f8d7da}.note{color:#555;font-size:.85em}
.q table{display:block;overflow-x:auto;max-width:100%}td.c{min-width:16em}
details.docs{margin:.2em 0}.doc{white-space:pre-wrap;background:#f6f6f6;padding:.3em;margin:.2em 0;font-size:.88em}
.doc b{font-family:monospace}"""

_DRILL_JS = r"""
const D = JSON.parse(document.getElementById('data').textContent);
const $ = id => document.getElementById(id);
function opts(sel, vals){ for (const v of vals){ const o=document.createElement('option'); o.value=v; o.textContent=v; sel.appendChild(o);} }
const uniq = f => [...new Set(D.questions.map(f))];
opts($('f-dataset'), uniq(q=>q.dataset)); opts($('f-split'), uniq(q=>q.split));
opts($('f-subtype'), uniq(q=>q.subtype)); opts($('f-condition'), D.columns);
let limit = 200;
function el(tag, cls, text){ const e=document.createElement(tag); if(cls) e.className=cls; if(text!==undefined) e.textContent=text; return e; }
function render(){
  const f = {d:$('f-dataset').value, s:$('f-split').value, t:$('f-subtype').value, c:$('f-condition').value, o:$('f-outcome').value};
  const cols = f.c ? [f.c] : D.columns;
  const hits = D.questions.filter(q => (!f.d||q.dataset===f.d) && (!f.s||q.split===f.s) && (!f.t||q.subtype===f.t)
    && cols.some(c => q.results[c]) && (()=>{
      const rs = cols.map(c=>q.results[c]).filter(Boolean);
      if (f.o==='right') return rs.every(r=>r.correct);
      if (f.o==='wrong') return rs.every(r=>!r.correct);
      if (f.o==='disagree') return new Set(rs.map(r=>r.correct)).size>1;
      return true; })());
  $('count').textContent = hits.length + ' of ' + D.questions.length + ' questions';
  const out = $('list'); out.textContent = '';
  for (const q of hits.slice(0, limit)){
    const box = el('div','q'); box.dataset.id = q.id;
    box.appendChild(el('div','meta', q.dataset+' · '+q.split+' · '+q.subtype+' · '+q.id));
    box.appendChild(el('div','ctx', q.context));
    const t = el('table'); const hr = el('tr'); hr.appendChild(el('th','', 'choice'));
    const shown = cols.filter(c=>q.results[c]);
    for (const c of shown){ const r=q.results[c]; const th=el('th', r.correct?'ok':'bad', c+(r.correct?' ✓':' ✗'));
      if (D.kinds[c]==='baseline'){ th.appendChild(el('div','note','baseline score')); th.title='a shortcut baseline: its own score of each choice (a count, length or probability), not a log-probability'; }
      hr.appendChild(th); }
    t.appendChild(hr);
    q.choices.forEach((ch, i) => {
      const tr = el('tr'); tr.appendChild(el('td', 'c'+(i===q.answer?' ans':''), (i===q.answer?'★ ':'')+JSON.stringify(ch)));
      for (const c of shown){ const r=q.results[c]; const lp=r.lp[i];
        const v = lp==null ? '–' : (D.kinds[c]==='baseline' ? String(Number(lp.toPrecision(4))) : lp.toFixed(3));
        tr.appendChild(el('td', 'n'+(r.chosen===i?(r.correct?' ok':' bad'):''), v+(r.chosen===i?' ◀':''))); }
      t.appendChild(tr); });
    box.appendChild(t);
    for (const c of shown){ const r=q.results[c];
      if (r.retrieved){ const texts = D.documents[q.dataset] || {};
        const det = el('details','docs'); det.appendChild(el('summary','note', c+': retrieved documents '+r.retrieved.join(', ')));
        for (const id of r.retrieved){ const d = el('div','doc'); d.appendChild(el('b','', id+' ')); d.appendChild(document.createTextNode(id in texts ? texts[id] : '(text not saved)')); det.appendChild(d); }
        box.appendChild(det); }
      const n = D.notes[q.dataset+'|'+c.replace(/ s\d+$/,'')]; if (n) box.appendChild(el('div','note', c+': '+n)); }
    out.appendChild(box);
  }
  $('more').style.display = hits.length > limit ? '' : 'none';
}
for (const id of ['f-dataset','f-split','f-subtype','f-condition','f-outcome']) $(id).addEventListener('change', ()=>{limit=200; render();});
$('more').addEventListener('click', ()=>{limit += 200; render();});
render();
"""


def drilldown_html(data: dict[str, Any]) -> str:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    sel = lambda i, label: f'<label>{label} <select id="{i}"><option value="">all</option></select></label>'  # noqa: E731
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape('genmodes drill-down: ' + str(data['title']))}</title>"
            f"<style>{_DRILL_CSS}</style></head><body>\n"
            f"<h1>{html.escape(str(data['title']))}: every question</h1>\n"
            "<p class=\"note\">Per choice: each condition's summed log-probability (a shortcut baseline's column, "
            "marked 'baseline score': its own score, a count, length or probability); ◀ the choice it made, ★ the "
            "answer; a column header is green when the condition is right. Retrieved documents: click to read "
            "them. Filter below.</p>\n"
            "<div class=\"bar\">" + sel("f-dataset", "dataset") + sel("f-split", "split") + sel("f-subtype", "subtype")
            + sel("f-condition", "condition")
            + '<label>outcome <select id="f-outcome"><option value="">all</option><option value="right">right'
              '</option><option value="wrong">wrong</option><option value="disagree">conditions disagree</option>'
              '</select></label> <span id="count"></span></div>\n'
            '<div id="list"></div><button id="more" style="display:none">show more</button>\n'
            f'<script type="application/json" id="data">{payload}</script>\n'
            f"<script>{_DRILL_JS}</script>\n</body></html>\n")


def drilldown(run: Run, out: Path) -> list[Block]:
    if not run.results:
        return []
    data = drilldown_data(run)
    write_atomic(out / DRILLDOWN, drilldown_html(data))
    return [("h", 2, "Per-question drill-down"),
            ("p", f"`{DRILLDOWN}` beside this report (self-contained, works offline): all {len(data['questions'])} "
                  "questions with their context, every condition's log-probability for each choice (a baseline's own "
                  "score, marked as such), the choice made and whether it is right, the retrieved documents (their "
                  "text on a click) where a condition retrieved any; filterable by dataset, split, subtype, condition "
                  "and outcome.")]
