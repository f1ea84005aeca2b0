"""Report figures (matplotlib, no pyplot state, Agg rendering): accuracy bars like P1's figures,
a forest plot of paired differences, accuracy against compute, loss curves, from-scratch training
curves. Every accuracy's error bar is its 95% interval over questions (``ci_low``/``ci_high`` of the
summary rows, :mod:`genmodes.experiments.statistics`). Each writes one PNG atomically and returns
its path."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

DPI = 130


def condition_colors(conditions: Sequence[str]) -> dict[str, Any]:
    """A stable colour per condition, shared by every figure of a report."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(conditions) <= 10 else "tab20"]
    return {c: cmap(i % cmap.N) for i, c in enumerate(conditions)}


def _save(fig: Figure, path: Path) -> Path:
    from genmodes.io import atomic_file

    FigureCanvasAgg(fig)
    with atomic_file(path, ".png") as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png")
    return path


def _bars(table: dict[tuple[str, str], dict[str, Any]], splits: Sequence[str], condition: str, j: int,
          width: float) -> tuple[list[float], list[dict[str, Any]]]:
    """x positions and rows of ``condition``'s bars, the ``j``-th bar of each split's group (split i
    centred on x = i); a split without a row for it gets no bar."""
    xs, rows = [], []
    for i, s in enumerate(splits):
        r = table.get((s, condition))
        if r is not None:
            xs.append(i - 0.4 + width * (j + 0.5))
            rows.append(r)
    return xs, rows



def interval_errors(rows: Sequence[dict[str, Any]]) -> list[list[float]]:
    """matplotlib's asymmetric ``yerr`` of summary rows: [below, above] the accuracy, from the 95%
    interval (an undefined interval draws no bar)."""
    def gap(r: dict[str, Any], key: str, sign: int) -> float:
        v = r.get(key)
        return 0.0 if v is None or math.isnan(v) else max(0.0, sign * (v - r["accuracy"]))
    return [[gap(r, "ci_low", -1) for r in rows], [gap(r, "ci_high", 1) for r in rows]]


def _style_panel(ax: Any, name: str, splits: Sequence[str], chance: dict[str, float],
                 handles: dict[str, Any]) -> None:
    """One bar panel's chance lines (one dashed segment per split), ticks, title and frame."""
    for i, s in enumerate(splits):
        ch = chance.get(s)
        if ch is not None and not math.isnan(ch):
            handles["chance"] = ax.hlines(ch, i - 0.45, i + 0.45, colors="0.25", linestyles="dashed",
                                          linewidth=1.2, zorder=3)
    ax.set_xticks(range(len(splits)))
    ax.set_xticklabels(splits, rotation=25 if len(splits) > 2 else 0, ha="right" if len(splits) > 2 else "center")
    ax.set_xlim(-0.6, len(splits) - 0.4)
    ax.set_title(name, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _finish_panels(fig: Any, axes: Any, title: str, ylabel: str, conditions: Sequence[str],
                   handles: dict[str, Any], path: Path) -> Path:
    """Shared y axis in percent, the title, one legend beside the panels; saved."""
    axes[0].set_ylim(0, 1.05)
    axes[0].yaxis.set_major_formatter(PercentFormatter(1.0))
    axes[0].set_ylabel(ylabel)
    fig.suptitle(title)
    order = [c for c in conditions if c in handles] + (["chance"] if "chance" in handles else [])
    fig.legend([handles[k] for k in order], order, loc="upper left", bbox_to_anchor=(1.0, 0.92), frameon=False)
    return _save(fig, path)


def _finish_lines(fig: Any, ax: Any, title: str, path: Path) -> Path:
    """A line plot's title, grid, open frame and legend beside it; saved."""
    ax.set_title(title)
    ax.grid(alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(fig, path)

def accuracy_bars(title: str, splits: Sequence[str], conditions: Sequence[str],
                  table: dict[tuple[str, str], dict[str, Any]], chance: dict[str, float],
                  path: Path, colors: dict[str, Any] | None = None, baselines: Sequence[str] = ()) -> Path:
    """One group per split, one bar per condition with its 95% interval, a dashed chance line per
    split. ``table[(split, condition)]`` holds ``accuracy``, ``ci_low`` and ``ci_high`` (missing: no bar).
    ``baselines`` are drawn hatched and grey-edged: reference rows, not learning conditions."""
    colors = colors or condition_colors(conditions)
    n_c = max(1, len(conditions))
    width = 0.8 / n_c
    group_in = 0.32 * n_c + 0.5  # inches per split group
    fig = Figure(figsize=(max(5.0, 1.5 + len(splits) * group_in), 4.2))
    ax = fig.add_subplot()
    for j, c in enumerate(conditions):
        xs, rows = _bars(table, splits, c, j, width)
        ys = [r["accuracy"] for r in rows]
        ax.bar(xs, ys, width=width * 0.92, yerr=interval_errors(rows), capsize=3, label=c, color=colors[c],
               error_kw={"elinewidth": 1, "ecolor": "0.2"}, **_baseline_style(c in baselines))
    labelled = False
    for i, s in enumerate(splits):
        ch = chance.get(s)
        if ch is None or math.isnan(ch):
            continue
        ax.hlines(ch, i - 0.45, i + 0.45, colors="0.25", linestyles="dashed", linewidth=1.2,
                  label=None if labelled else "chance", zorder=3)
        labelled = True
    ax.set_xticks(range(len(splits)))
    long = max((len(s) for s in splits), default=0) * 0.085 > group_in  # ~0.085 in per character at 10 pt
    ax.set_xticklabels(splits, rotation=20 if long else 0, ha="right" if long else "center")
    ax.set_xlim(-0.6, len(splits) - 0.4)
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("accuracy (95% interval)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(fig, path)


def _baseline_style(is_baseline: bool) -> dict[str, Any]:
    return {"hatch": "//", "edgecolor": "0.35", "linewidth": 0.8, "alpha": 0.55} if is_baseline else {}


def overview(title: str, panels: Sequence[tuple[str, Sequence[str], dict[tuple[str, str], dict[str, Any]],
                                                dict[str, float]]],
             conditions: Sequence[str], path: Path, colors: dict[str, Any] | None = None,
             baselines: Sequence[str] = ()) -> Path:
    """The study at a glance, one panel per dataset: conditions x splits, 95% intervals as error bars
    (``table[(split, condition)]`` holds ``accuracy``, ``ci_low``, ``ci_high``), chance as a dashed
    line, baselines hatched. Panels share the y axis and one legend."""
    colors = colors or condition_colors(conditions)
    n_p = max(1, len(panels))
    widths = [max(1, len(p[1])) for p in panels] or [1]
    n_c = max(1, len(conditions))
    per_split = 0.28 * n_c + 0.4
    fig = Figure(figsize=(max(5.5, 1.6 + sum(widths) * per_split + 0.4 * n_p), 4.4))
    axes = fig.subplots(1, n_p, sharey=True, squeeze=False, gridspec_kw={"width_ratios": widths})[0]
    width = 0.8 / n_c
    handles: dict[str, Any] = {}
    for ax, (name, splits, table, chance) in zip(axes, panels):
        for j, c in enumerate(conditions):
            xs, rows = _bars(table, splits, c, j, width)
            ys = [r["accuracy"] for r in rows]
            if xs:
                handles[c] = ax.bar(xs, ys, width=width * 0.92, yerr=interval_errors(rows), capsize=2, color=colors[c],
                                    error_kw={"elinewidth": 0.9, "ecolor": "0.2"},
                                    **_baseline_style(c in baselines))
        _style_panel(ax, name, splits, chance, handles)
    return _finish_panels(fig, axes, title, "accuracy (95% CI)", conditions, handles, path)


def loss_curves(title: str, curves: Sequence[tuple[str, Sequence[Sequence[float]]]], path: Path,
                xlabel: str = "step", ylabel: str = "training loss", markers: bool = False) -> Path:
    """Training loss (or any per-step value) against step, a line per (label, [[step, value], ...])."""
    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.add_subplot()
    for label, pts in curves:
        pts = [p for p in pts if len(p) >= 2 and p[1] is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, linewidth=1.4,
                **({"marker": "o", "markersize": 2} if markers else {}))
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.set_ylabel(ylabel)
    return _finish_lines(fig, ax, title, path)


def training_curves(title: str, rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """From-scratch training: loss (left) and accuracy per split (right) against step."""
    fig = Figure(figsize=(10, 3.8))
    ax_l, ax_a = fig.subplots(1, 2)
    pts = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None and "step" in r]
    ax_l.plot([p[0] for p in pts], [p[1] for p in pts], color="0.2", linewidth=1.4)
    ax_l.set_xlabel("step")
    ax_l.set_ylabel("training loss")
    splits: dict[str, None] = {}
    for r in rows:
        splits.update(dict.fromkeys((r.get("accuracy") or {}).keys()))
    for s in splits:
        sp = [(r["step"], r["accuracy"][s]) for r in rows
              if "step" in r and isinstance(r.get("accuracy"), dict) and r["accuracy"].get(s) is not None]
        ax_a.plot([p[0] for p in sp], [p[1] for p in sp], marker="o", markersize=3, linewidth=1.4, label=s)
    ax_a.set_xlabel("step")
    ax_a.set_ylabel("accuracy")
    ax_a.set_ylim(-0.02, 1.02)
    ax_a.yaxis.set_major_formatter(PercentFormatter(1.0))
    if splits:
        ax_a.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    for ax in (ax_l, ax_a):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.suptitle(title)
    return _save(fig, path)


def accuracy_panels(title: str, panels: Sequence[tuple[str, Sequence[str], dict[tuple[str, str], dict[str, Any]],
                                                       dict[str, float]]],
                    conditions: Sequence[str], path: Path, colors: dict[str, Any] | None = None,
                    baselines: Sequence[str] = ()) -> Path:
    """Several models side by side: one panel per model (``(model, splits, table, chance)``), each
    like :func:`accuracy_bars` (a group per split, a bar per condition with its 95% interval,
    chance dashed), the same colour for a condition in every panel, a shared y axis and legend."""
    colors = colors or condition_colors(conditions)
    n_p = max(1, len(panels))
    n_c = max(1, len(conditions))
    width = 0.8 / n_c
    widths = [max(1, len(p[1])) for p in panels] or [1]
    per_split = 0.28 * n_c + 0.5
    fig = Figure(figsize=(max(5.5, 1.6 + sum(widths) * per_split + 0.4 * n_p), 4.4))
    axes = fig.subplots(1, n_p, sharey=True, squeeze=False, gridspec_kw={"width_ratios": widths})[0]
    handles: dict[str, Any] = {}
    for ax, (name, splits, table, chance) in zip(axes, panels):
        for j, c in enumerate(conditions):
            xs, rows = _bars(table, splits, c, j, width)
            ys = [r["accuracy"] for r in rows]
            if xs:
                handles[c] = ax.bar(xs, ys, width=width * 0.92, yerr=interval_errors(rows), capsize=2, color=colors[c],
                                    error_kw={"elinewidth": 0.9, "ecolor": "0.2"}, **_baseline_style(c in baselines))
        _style_panel(ax, name, splits, chance, handles)
    return _finish_panels(fig, axes, title, "accuracy (95% interval)", conditions, handles, path)


def context_curve(title: str, lines: Sequence[tuple[str, Sequence[tuple[float, float, float, float]]]],
                  chance: float | None, path: Path) -> Path:
    """In-context accuracy against the context length actually used: one line per ``(label,
    [(tokens, accuracy, ci_low, ci_high), ...])`` (a model and a split), the 95% intervals as error
    bars, chance dashed, x in log2 steps (budget sweeps double)."""
    fig = Figure(figsize=(7.0, 4.2))
    ax = fig.add_subplot()
    styles = ["-", "--", ":", "-."]
    models = list(dict.fromkeys(label.split(" · ")[0] for label, _ in lines))
    splits = list(dict.fromkeys(label.split(" · ")[-1] for label, _ in lines))
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    for label, pts in lines:
        pts = sorted(pts)
        m, s = label.split(" · ")[0], label.split(" · ")[-1]
        yerr = interval_errors([{"accuracy": p[1], "ci_low": p[2], "ci_high": p[3]} for p in pts])
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=yerr, label=label,
                    color=cmap(models.index(m) % cmap.N), linestyle=styles[splits.index(s) % len(styles)],
                    marker="o", markersize=4, linewidth=1.5, capsize=2)
    if chance is not None and not math.isnan(chance):
        ax.axhline(chance, color="0.25", linestyle="dashed", linewidth=1.2, label="chance")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1024:g}k" if x >= 1024 else f"{x:g}"))
    ax.set_xlabel("context tokens per question (as scored)")
    ax.set_ylim(-0.02, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("accuracy (95% interval)")
    return _finish_lines(fig, ax, title, path)


def forest(title: str, comps: Sequence[Any], path: Path) -> Path:
    """Paired differences (``a - b`` with its 95% interval, in points), one row per comparison, a line
    at zero; filled markers: significant after Holm's correction (:class:`genmodes.report.stats.Paired`)."""
    n = len(comps)
    fig = Figure(figsize=(7.5, 1.2 + 0.28 * max(1, n)))
    ax = fig.add_subplot()
    ys = list(range(n))[::-1]
    for y, p in zip(ys, comps):
        d, lo, hi = 100 * p.diff, 100 * p.ci[0], 100 * p.ci[1]
        ax.errorbar([d], [y], xerr=[[max(0.0, d - lo)], [max(0.0, hi - d)]], fmt="o", color="0.15",
                    markerfacecolor="0.15" if p.significant else "white", markersize=5, capsize=2, linewidth=1.1)
    ax.axvline(0, color="0.4", linestyle="dashed", linewidth=1)
    ax.set_yticks(ys)
    ax.set_yticklabels([f"{p.dataset} / {p.split}: {p.a} - {p.b}" for p in comps], fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlim(-105, 105)
    ax.set_xlabel("difference in accuracy, points (95% paired bootstrap interval)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _save(fig, path)


_MARKERS = "osD^vP*X<>ph"


def tradeoff(title: str, points: Sequence[tuple[str, str, tuple[float, float], dict[str, Any]]],
             conditions: Sequence[str], path: Path, colors: dict[str, Any] | None = None) -> Path:
    """Accuracy against train-time seconds (left) and context tokens per question (right), each axis
    symmetric-log once it spans more than 10, one point per ``(condition, split, (train s, context tokens), summary row)``: colour by
    condition, marker by split, the 95% interval as the error bar."""
    from matplotlib.transforms import offset_copy

    colors = colors or condition_colors(conditions)
    splits = list(dict.fromkeys(p[1] for p in points))
    shown = [c for c in conditions if any(p[0] == c for p in points)]
    fig = Figure(figsize=(10, 4.0))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, i, label in ((axes[0], 0, "train-time seconds (training, generation)"),
                         (axes[1], 1, "context tokens per question (test time)")):
        for c, sp, cost, r in points:
            # conditions at the same cost (every one that trains nothing) side by side, not on top
            dx = 4.0 * (shown.index(c) - (len(shown) - 1) / 2) if c in shown else 0.0
            ax.errorbar([cost[i]], [r["accuracy"]], yerr=interval_errors([r]), fmt=_MARKERS[splits.index(sp) % len(_MARKERS)],
                        color=colors.get(c, "0.3"), markersize=6, capsize=2, linewidth=1,
                        transform=offset_copy(ax.transData, fig=fig, x=dx, y=0, units="points"))
        # the offset transform keeps the points out of autoscaling: the x range is set here
        top = max((p[2][i] for p in points), default=0.0) or 1.0
        if top > 10:
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xlim(-0.5, top * 2)
        else:
            ax.set_xlim(-0.08 * top, 1.08 * top)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[0].set_ylim(-0.02, 1.05)
    axes[0].yaxis.set_major_formatter(PercentFormatter(1.0))
    axes[0].set_ylabel("accuracy (95% interval)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors.get(c, "0.3"), marker="o", linestyle="") for c in shown]
    handles += [Line2D([], [], color="0.3", marker=_MARKERS[i % len(_MARKERS)], linestyle="") for i, _ in enumerate(splits)]
    fig.legend(handles, shown + splits, loc="upper left", bbox_to_anchor=(1.0, 0.92), frameon=False)
    fig.suptitle(title)
    return _save(fig, path)
