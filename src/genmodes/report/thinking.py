"""Report sections of a thinking / RL study [P3, issue 11].

P3 (arXiv 2604.01430) asks whether RL-trained thinking brings the knowledge a question needs back into
context, on the RL dataset and on transfer datasets. These sections show: the RL reward and thought
length over steps (did RL learn anything: mean reward over the last fifth of steps vs the first
fifth), example thoughts (correct and wrong), the implicit-retrieval audit per condition with
accuracy split by it (did thinking help by retrieving, or by something else), and the train-time
vs test-time compute thinking adds. Everything is read from ``cells.jsonl`` and ``results.jsonl``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from genmodes.report.run import Run

Block = tuple
DASH = "–"
LABELS = ("stated", "partial", "false", "none")


def _pct(x: float | None) -> str:
    return DASH if x is None else f"{100 * x:.1f}%"


def fifths(curve: Sequence[Sequence[float]]) -> tuple[float | None, float | None]:
    """Mean value over the first and the last fifth of the steps (at least one step each)."""
    vals = [float(p[1]) for p in curve if len(p) >= 2 and p[1] is not None]
    if not vals:
        return None, None
    k = max(1, len(vals) // 5)
    return sum(vals[:k]) / k, sum(vals[-k:]) / k


def _rl_runs(run: Run) -> list[tuple[str, dict[str, Any]]]:
    """One (condition, rl info) per distinct RL training (cells share a checkpoint)."""
    seen, out = set(), []
    for c in run.cells:
        rl = c.info.get("rl")
        if not isinstance(rl, dict) or not rl.get("reward_curve"):
            continue
        key = (c.condition, c.seed, str(rl.get("reward_curve"))[:200])
        if key in seen:
            continue
        seen.add(key)
        out.append((f"{c.condition} seed {c.seed}", rl))
    return out


def _plot(title: str, ylabel: str, curves: list[tuple[str, list]], path: Path) -> Path:
    from genmodes.report.figures import loss_curves

    return loss_curves(title, curves, path, xlabel="RL step", ylabel=ylabel, markers=True)


def rl_curves(run: Run, figs: Any) -> list[Block]:
    runs = _rl_runs(run)
    if not runs:
        return []
    out: list[Block] = [("h", 2, "RL: reward and thought length over steps")]
    out.append(("img", _plot("RL reward (mean over the step's thoughts)", "reward",
                             [(n, r["reward_curve"]) for n, r in runs], figs.path("rl_reward")), "RL reward"))
    out.append(("img", _plot("thought length", "tokens per thought",
                             [(n, r.get("thought_length_curve") or []) for n, r in runs],
                             figs.path("rl_thought_length")), "thought length"))
    body = []
    for n, r in runs:
        first, last = fifths(r["reward_curve"])
        body.append([n, str(r.get("steps", DASH)), str(r.get("questions", DASH)),
                     DASH if first is None else f"{first:.3f}", DASH if last is None else f"{last:.3f}",
                     DASH if first is None else ("yes" if last > first else "no")])
    out.append(("p", "RL learned something when the mean reward over the last fifth of the steps is above that "
                     "of the first fifth."))
    out.append(("table", ["condition", "steps", "RL questions", "reward, first fifth", "reward, last fifth",
                          "learned"], body))
    return out


def _thought_rows(run: Run) -> list[Any]:
    return [r for r in run.results if isinstance(r.details.get("thought"), str)]


def examples(run: Run, per_condition: int = 2) -> list[Block]:
    rows = _thought_rows(run)
    if not rows:
        return []
    out: list[Block] = [("h", 2, "Example thoughts")]
    items = []
    for cond in run.condition_order():
        rs = [r for r in rows if r.condition == cond]
        for want in (True, False):
            pick = [r for r in rs if r.correct == want][:per_condition]
            for r in pick:
                chosen = r.scores[r.chosen].choice if r.scores else "?"
                items.append(f"{cond} · {r.dataset} · {r.split} · {'correct' if want else 'wrong'} "
                             f"({r.details.get('retrieval', DASH)}): `{r.context}` thought: "
                             f"“{r.details['thought'] or '(empty)'}” chose `{chosen.strip()}`")
    out.append(("list", items))
    return out


def retrieval(run: Run) -> list[Block]:
    rows = [r for r in _thought_rows(run) if r.details.get("verifiable", True)]
    if not rows:
        return []
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for r in rows:
        groups.setdefault((r.condition, r.dataset, r.split), []).append(r)
    c_order = {c: i for i, c in enumerate(run.condition_order())}
    d_order = {d: i for i, d in enumerate(run.dataset_order())}
    body = []
    for key in sorted(groups, key=lambda k: (c_order.get(k[0], 99), d_order.get(k[1], 99), k[2])):
        rs = groups[key]
        n = len(rs)
        share = [sum(r.details.get("retrieval") == lab for r in rs) / n for lab in LABELS]
        st = [r for r in rs if r.details.get("retrieval") == "stated"]
        ns = [r for r in rs if r.details.get("retrieval") != "stated"]

        def acc(x: list[Any]) -> str:
            return f"{_pct(sum(r.correct for r in x) / len(x))} (n={len(x)})" if x else DASH

        body.append([*key, str(n), *map(_pct, share), acc(st), acc(ns)])
    return [("h", 2, "Implicit retrieval: did the thought state the facts the question needs?"),
            ("p", "Each thought is read with the dataset family's statement parser: `stated` (every premise of the "
                  "question), `partial` (some), `false` (a fact the world does not hold), `none` (neither). "
                  "Accuracy is split by whether the thought stated the premises."),
            ("table", ["condition", "dataset", "split", "n", *LABELS, "accuracy, stated", "accuracy, not stated"],
             body)]


def compute(run: Run) -> list[Block]:
    cells = [c for c in run.cells if isinstance(c.info.get("thinking"), dict) or isinstance(c.info.get("rl"), dict)]
    if not cells:
        return []
    body = []
    for c in cells:
        info = c.info
        rl = info.get("rl") if isinstance(info.get("rl"), dict) else {}
        th = info.get("thinking") if isinstance(info.get("thinking"), dict) else {}
        body.append([c.dataset, c.condition,
                     str(rl.get("steps", DASH)), str(rl.get("tokens_generated", DASH)),
                     DASH if rl.get("train_seconds") is None else f"{rl['train_seconds']:.0f}",
                     str(th.get("thought_tokens_per_question", DASH)),
                     DASH if th.get("generate_seconds") is None else f"{th['generate_seconds']:.0f}"])
    return [("h", 2, "Thinking compute: train time (RL) vs test time (thoughts)"),
            ("p", "RL adds train-time compute (thoughts generated and scored in training, once for the study) and "
                  "test-time compute (a thought generated before each question's choices are scored)."),
            ("table", ["dataset", "condition", "RL steps", "RL tokens generated", "RL seconds",
                       "thought tokens / question", "thinking seconds"], body)]


def sections(run: Run, figs: Any) -> list[Block]:
    return rl_curves(run, figs) + examples(run) + retrieval(run) + compute(run)
