"""comparison.png: grouped bars per source plus Overall, one colour per experiment, CIs and changes vs the baseline."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from meds1.plots.style import experiment_colors, legend_inches, legend_outside, new_figure, wrap
from meds1.plots.summary import OVERALL, Point

BAR_INCHES = 0.24          # per experiment within a group: room for a rotated "+12.3*" label above the bar
GROUP_PAD_INCHES = 0.45
MIN_GROUP_INCHES = 1.3     # a group must fit its wrapped source name even with one experiment
TEXT_HEADROOM_INCHES = 0.6  # above the tallest error bar, for the delta labels


def group_inches(n_experiments: int) -> float:
    return max(MIN_GROUP_INCHES, n_experiments * BAR_INCHES + GROUP_PAD_INCHES)


def comparison_figsize(n_groups: int, n_experiments: int) -> tuple[float, float]:
    """Width grows with groups x experiments; height with the legend. Rounded to 1/5 inch so pixels are whole."""
    legend_width, legend_height = legend_inches(n_experiments)
    width = 1.2 + n_groups * group_inches(n_experiments) + legend_width
    height = max(5.0, legend_height + 1.4)
    return round(width * 5) / 5, round(height * 5) / 5


def draw_comparison(points: dict[str, dict[str, Point]], sources: list[str], baseline: str | None = None,
                    paired: dict[str, dict] | None = None) -> Figure:
    """``points``: experiment -> group (each source and Overall) -> Point in percent, in plot order."""
    names, groups = list(points), list(sources) + [OVERALL]
    width, height = comparison_figsize(len(groups), len(names))
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    # The gap between groups stays GROUP_PAD_INCHES wide however many bars a group holds; one bar stays a bar.
    bar_width = min((1 - GROUP_PAD_INCHES / group_inches(len(names))) / len(names), 0.5)
    handles = []
    for index, (name, color) in enumerate(zip(names, experiment_colors(len(names)))):
        offset = (index - (len(names) - 1) / 2) * bar_width
        handles.append(draw_experiment_bars(ax, points, name, groups, offset, bar_width, color, baseline, paired))
    style_axes(ax, points, groups, height, baseline, width, group_inches(len(names)))
    labels = [f"{n} (baseline)" if n == baseline else n for n in names]
    legend_outside(fig, handles, labels, title="Experiment")
    return fig


def draw_experiment_bars(ax, points, name, groups, offset, bar_width, color, baseline, paired):
    present = [(i, g, points[name][g]) for i, g in enumerate(groups) if g in points[name]]
    xs = np.array([i for i, _, _ in present], dtype=float) + offset
    heights = [p.accuracy for _, _, p in present]
    # Error bars are asymmetric (Wilson/bootstrap); max(0, .) guards an interval that does not cover its estimate.
    yerr = [[max(0.0, p.accuracy - p.lo) for _, _, p in present], [max(0.0, p.hi - p.accuracy) for _, _, p in present]]
    bars = ax.bar(xs, heights, bar_width * 0.9, yerr=yerr, color=color, edgecolor="white", linewidth=0.3,
                  error_kw={"elinewidth": 0.8, "ecolor": "0.25", "capsize": min(3.0, 40 * bar_width)})
    rotation = 90 if len(points) > 2 else 0
    for x, (_, group, point) in zip(xs, present):
        text = delta_label(points, name, group, baseline, paired)
        if text:
            ax.text(x, max(point.hi, point.accuracy) + 0.8, text, rotation=rotation, ha="center", va="bottom",
                    fontsize=7 if rotation else 8)
    return bars


def delta_label(points, name, group, baseline, paired) -> str:
    """'+3.1' (change vs the baseline, points), '*' on Overall when the paired Overall difference's CI excludes 0."""
    if baseline is None or name == baseline or group not in points.get(baseline, {}):
        return ""
    delta = points[name][group].accuracy - points[baseline][group].accuracy
    star = "*" if group == OVERALL and (paired or {}).get(name, {}).get("significant") else ""
    return f"{delta:+.1f}{star}"


def style_axes(ax, points, groups, height, baseline, width, inches_per_group) -> None:
    top = max((max(p.hi, p.accuracy) for per in points.values() for p in per.values()), default=0.0)
    axes_inches = max(1.0, height - 1.6)
    ax.set_ylim(0, max(10.0, top / (1 - TEXT_HEADROOM_INCHES / axes_inches)))
    ax.set_yticks(np.arange(0, min(100, ax.get_ylim()[1]) + 1e-9, 10))
    ax.set_ylabel("Accuracy (%)")
    ax.set_xticks(range(len(groups)), [wrap(g, int(inches_per_group * 13)) for g in groups], fontsize=8)
    ax.set_xlim(-0.5, len(groups) - 0.5)
    if len(groups) > 1:  # Overall is an aggregate, not another source
        ax.axvline(len(groups) - 1.5, color="0.45", linestyle="--", linewidth=1)
    ax.yaxis.grid(True, alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title("Accuracy by source and Overall", fontsize=10)
    note = "Error bars: 95% CI."
    if baseline is not None:
        note = (f"Numbers above bars: change vs baseline '{baseline}' in accuracy points; * on Overall: the 95% CI "
                f"of the paired Overall difference (bootstrap within sources) excludes 0.")
    ax.set_xlabel(wrap(note, int(max(30, (width - 3.6) * 15))), fontsize=8)
