"""The paper's other figures, one registered plug-in each; which experiments feed which figure is data.

``plot_spec["figures"] = {"syntax": [names], "sample_efficiency": [...], "perturbation": [...], "tts": [...]}``.
A figure is drawn from the listed experiments that have the data it needs; the others are named in its title and in
the notices. With no usable experiment (or no list) a placeholder PNG says why, so the workflow's outputs always exist
and never go stale.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from meds1.errors import MedS1Error
from meds1.plots.outputs import FIGURE_NAMES, figure_path
from meds1.plots.style import (DPI, PLACEHOLDER_INCHES, experiment_colors, legend_inches, legend_outside, new_figure,
                               pixel_size, save_placeholder, save_png, wrap)
from meds1.plots.summary import OVERALL, Point, accuracy_points, notice, to_point
from meds1.plugins import PluginRegistry


@dataclass(frozen=True)
class Arm:
    """One experiment as a figure sees it: its plot-spec entry and its metrics."""
    name: str
    spec: dict
    metrics: dict

    @property
    def overall(self) -> Point:
        return accuracy_points(self.metrics, [])[OVERALL]


@dataclass(frozen=True)
class FigurePlugin:
    name: str
    title: str
    draw: Callable[[list[Arm]], Figure]
    why_unusable: Callable[[Arm], str | None]


FIGURES: PluginRegistry[FigurePlugin] = PluginRegistry("figure")


class NoData(Exception):
    """Raised by a drawing function when its experiments leave nothing to plot (the message says why)."""


def figure(name: str, title: str, why_unusable: Callable[[Arm], str | None] = lambda arm: None):
    """Register a drawing function as the figure ``name`` (saved as ``plots/<name>.png``; the name must be listed in
    ``meds1.plots.outputs.FIGURE_NAMES``, the one list the plot rule's outputs come from)."""
    if name not in FIGURE_NAMES:
        raise ValueError(f"figure '{name}' is not listed in meds1.plots.outputs.FIGURE_NAMES")

    def deco(draw):
        FIGURES.register(name)(FigurePlugin(name, title, draw, why_unusable))
        return draw
    return deco


def validate_figure_lists(plot_spec: dict) -> dict[str, list[str]]:
    """``plot_spec["figures"]``: known figure names, each a list of plot-spec experiment names."""
    lists = plot_spec.get("figures") or {}
    names = [e["name"] for e in plot_spec["experiments"]]
    for key, members in lists.items():
        FIGURES.get(key, file="plot spec")
        if not isinstance(members, list):
            raise MedS1Error("must be a list of experiment names", file="plot spec", key=f"figures.{key}")
        for member in members:
            if member not in names:
                raise MedS1Error(f"'{member}' is not one of the plot's experiments", file="plot spec",
                                 key=f"figures.{key}", choices=names, value=member)
    return lists


def draw_figure(name: str, members: list[str] | None, arms: dict[str, Arm], out_dir, notices: list[str]) -> dict:
    """Draw one figure from the listed experiments that can feed it, or write its placeholder."""
    plugin, path = FIGURES.get(name), figure_path(out_dir, name)
    if members is None:
        return skip(name, path, "not listed in plot_spec['figures']", notices)
    missing = {m: "no metrics" for m in members if m not in arms}
    usable = []
    for member in (m for m in members if m in arms):
        reason = plugin.why_unusable(arms[member])
        if reason:
            missing[member] = reason
        else:
            usable.append(arms[member])
    arms_text = ", ".join(f"{m} ({why})" for m, why in missing.items())
    if not usable:
        return skip(name, path, f"missing arms {arms_text or '(none listed)'}", notices)
    try:
        fig = plugin.draw(usable)
    except NoData as why:
        return skip(name, path, f"{why}" + (f"; missing arms {arms_text}" if missing else ""), notices)
    title = plugin.title + (f" (missing: {short_list(list(missing))})" if missing else "")
    fig.axes[0].set_title(wrap(title, int(fig.get_figwidth() * 11)), fontsize=10)
    if missing:
        notice(notices, f"{name}: drawn without {', '.join(f'{m} ({why})' for m, why in missing.items())}")
    return {"status": "drawn", "path": save_png(fig, path), "size_px": pixel_size(fig),
            "experiments": [a.name for a in usable], "missing": missing}


def short_list(names: list[str], keep: int = 4) -> str:
    """A title-sized list: the first few names and how many more."""
    more = f", +{len(names) - keep} more" if len(names) > keep else ""
    return ", ".join(names[:keep]) + more


def skip(name: str, path: Path, reason: str, notices: list[str]) -> dict:
    notice(notices, f"figure {name} skipped: {reason}")
    return {"status": "skipped", "path": save_placeholder(path, name, reason),
            "size_px": [round(inches * DPI) for inches in PLACEHOLDER_INCHES], "reason": reason}


# ---------------------------------------------------------------- shared pieces

def line_figure(n_legend_entries: int) -> tuple[Figure, object]:
    legend_width, legend_height = legend_inches(n_legend_entries)
    fig = new_figure(round((6.5 + legend_width) * 5) / 5, round(max(4.8, legend_height + 1.0) * 5) / 5)
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.3)
    ax.set_ylabel("Overall accuracy (%)")
    return fig, ax


def error_bar(ax, xs, points: list[Point], **style):
    yerr = [[max(0.0, p.accuracy - p.lo) for p in points], [max(0.0, p.hi - p.accuracy) for p in points]]
    style = {"marker": "o", "markersize": 5} | style
    return ax.errorbar(xs, [p.accuracy for p in points], yerr=yerr, capsize=3, **style)


def reference_lines(ax, arms: list[Arm], handles, labels) -> None:
    """Experiments without the figure's x value (a base model, no perturbation) as horizontal references."""
    for arm, color in zip(arms, ["0.35", "0.6", "0.75", "0.5"] * len(arms)):
        handles.append(ax.axhline(arm.overall.accuracy, color=color, linestyle=":", linewidth=1.5))
        labels.append(f"{arm.name} (reference)")


# ---------------------------------------------------------------- reasoning syntax

@figure("syntax", "Reasoning-syntax impact: Overall accuracy by trace format")
def draw_syntax(arms: list[Arm]) -> Figure:
    formats = list(dict.fromkeys(str(a.spec.get("format") or "none") for a in arms))
    color_of = dict(zip(formats, experiment_colors(len(formats))))
    fig = new_figure(round(max(6.0, 1.5 + 1.1 * len(arms)) * 5) / 5, 5.0)
    ax = fig.add_subplot()
    xs = np.arange(len(arms))
    points = [a.overall for a in arms]
    colors = [color_of[str(a.spec.get("format") or "none")] for a in arms]
    yerr = [[max(0.0, p.accuracy - p.lo) for p in points], [max(0.0, p.hi - p.accuracy) for p in points]]
    ax.bar(xs, [p.accuracy for p in points], 0.7, yerr=yerr, color=colors, capsize=4, error_kw={"elinewidth": 0.8})
    for x, p in zip(xs, points):
        ax.text(x, max(p.hi, p.accuracy) + 1, f"{p.accuracy:.1f}", ha="center", va="bottom", fontsize=8)
    labels = [f"{a.spec.get('format') or 'none'}\n{wrap(a.name, 14)}" for a in arms]
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_xlim(-0.6, len(arms) - 0.4)
    ax.set_ylim(0, max(10.0, max(max(p.hi, p.accuracy) for p in points) * 1.15))
    ax.set_ylabel("Overall accuracy (%)")
    ax.set_xlabel("trace format / experiment (error bars: 95% CI)", fontsize=8)
    ax.yaxis.grid(True, alpha=0.3)
    ax.set_axisbelow(True)
    return fig


# ---------------------------------------------------------------- sample efficiency

def training_size(arm: Arm):
    size = arm.spec.get("train_size") or arm.spec.get("n_samples")
    return int(size) if size else None


@figure("sample_efficiency", "Sample efficiency: Overall accuracy vs training-set size")
def draw_sample_efficiency(arms: list[Arm]) -> Figure:
    sized, references = [a for a in arms if training_size(a)], [a for a in arms if not training_size(a)]
    if not sized:
        raise NoData("no listed experiment has a training-set size")
    series = group_by(sized, lambda a: " · ".join(str(a.spec.get(k)) for k in ("method", "format") if a.spec.get(k)))
    fig, ax = line_figure(len(series) + len(references))
    handles, labels = [], []
    for (label, members), color in zip(series.items(), experiment_colors(len(series))):
        members = sorted(members, key=training_size)
        handles.append(error_bar(ax, [training_size(a) for a in members], [a.overall for a in members], color=color))
        labels.append(label or "unnamed curation")
    reference_lines(ax, references, handles, labels)
    sizes = sorted({training_size(a) for a in sized})
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{s:,}" for s in sizes], fontsize=8)
    ax.minorticks_off()
    ax.set_xlim(min(sizes) / 1.5, max(sizes) * 1.5)
    ax.set_xlabel("training examples (log scale; error bars: 95% CI)", fontsize=8)
    legend_outside(fig, handles, labels, title="Curation")
    return fig


def group_by(arms: list[Arm], key) -> dict[str, list[Arm]]:
    groups: dict[str, list[Arm]] = {}
    for arm in arms:
        groups.setdefault(key(arm), []).append(arm)
    return groups


# ---------------------------------------------------------------- perturbation

def perturbation_of(arm: Arm) -> tuple[str | None, float | None]:
    """(type, % of steps perturbed); rates given as fractions (<= 1) are turned into percent."""
    kind, rate = arm.spec.get("perturbation"), arm.spec.get("rate")
    if isinstance(kind, dict):
        kind, rate = kind.get("type"), kind.get("rate", rate)
    if not kind or rate is None:
        return None, None
    return str(kind), float(rate) * 100 if float(rate) <= 1 else float(rate)


@figure("perturbation", "Perturbation impact: Overall accuracy vs % of reasoning steps perturbed")
def draw_perturbation(arms: list[Arm]) -> Figure:
    perturbed = [a for a in arms if perturbation_of(a)[0]]
    references = [a for a in arms if not perturbation_of(a)[0]]
    if not perturbed:
        raise NoData("no listed experiment is perturbed")
    kinds = list(dict.fromkeys(perturbation_of(a)[0] for a in perturbed))
    color_of = dict(zip(kinds, experiment_colors(len(kinds))))
    series = group_by(perturbed, lambda a: (perturbation_of(a)[0], bool(a.spec.get("restore"))))
    fig, ax = line_figure(len(series) + len(references) + 2)
    handles, labels = [], []
    for index, ((kind, restored), members) in enumerate(series.items()):
        members = sorted(members, key=lambda a: perturbation_of(a)[1])
        dodge = (index - (len(series) - 1) / 2) * 1.2  # % points, so error bars at the same rate do not overlap
        style = {"color": color_of[kind], "linestyle": "-" if restored else "--"}
        error_bar(ax, [perturbation_of(a)[1] + dodge for a in members], [a.overall for a in members], **style)
        handles.append(Line2D([], [], marker="o", **style))  # errorbar's own legend handle hides the dashes
        labels.append(f"{kind}, {'restored' if restored else 'not restored'}")
    reference_lines(ax, references, handles, labels)
    handles += [Line2D([], [], color="0.3", linestyle="-"), Line2D([], [], color="0.3", linestyle="--")]
    labels += ["solid: with restore", "dashed: without restore"]
    rates = sorted({perturbation_of(a)[1] for a in perturbed})
    ax.set_xticks(rates, [f"{r:g}%" for r in rates], fontsize=8)
    ax.set_xlim(min(rates) - 10, max(rates) + 10)
    ax.set_xlabel("% of reasoning steps perturbed (error bars: 95% CI)", fontsize=8)
    legend_outside(fig, handles, labels, title="Perturbation")
    return fig


# ---------------------------------------------------------------- test-time scaling

APPROACH_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def tts_points(arm: Arm) -> list[tuple[str, dict]]:
    """(approach, entry) pairs that can be placed: accuracy and a token count (None when no tokens were counted)."""
    scaling = arm.metrics.get("test_time_scaling") or {}
    placeable = [(name, entry) for name, entry in scaling.items() if isinstance(entry, dict)
                 and entry.get("accuracy") is not None and entry.get("mean_reasoning_tokens") is not None]
    return sorted(placeable, key=lambda pair: pair[1]["mean_reasoning_tokens"])


def why_no_tts(arm: Arm) -> str | None:
    if not arm.metrics.get("test_time_scaling"):
        return "no test_time_scaling in metrics"
    return None if tts_points(arm) else "no test_time_scaling approach with mean_reasoning_tokens"


@figure("tts", "Test-time scaling: accuracy vs mean reasoning tokens", why_no_tts)
def draw_tts(arms: list[Arm]) -> Figure:
    """Colour = experiment, marker = reasoning approach (approaches can differ between experiments)."""
    approaches = list(dict.fromkeys(name for arm in arms for name, _ in tts_points(arm)))
    marker_of = {name: APPROACH_MARKERS[i % len(APPROACH_MARKERS)] for i, name in enumerate(approaches)}
    fig, ax = line_figure(len(arms) + len(approaches))
    handles, labels = [], []
    for arm, color in zip(arms, experiment_colors(len(arms))):
        pairs = tts_points(arm)
        xs = [entry["mean_reasoning_tokens"] for _, entry in pairs]
        points = [to_point(entry["accuracy"], entry.get("ci")) for _, entry in pairs]
        handles.append(error_bar(ax, xs, points, color=color, marker=None))
        labels.append(arm.name)
        for x, point, (approach, _) in zip(xs, points, pairs):
            ax.plot([x], [point.accuracy], marker=marker_of[approach], color=color, markersize=7, linestyle="")
    for approach in approaches:
        handles.append(Line2D([], [], color="0.3", marker=marker_of[approach], linestyle=""))
        labels.append(f"approach: {approach}")
    ax.set_ylabel("accuracy (%)")
    ax.set_xlabel("mean reasoning tokens per answer (error bars: 95% CI)", fontsize=8)
    legend_outside(fig, handles, labels, title="Experiment / approach")
    return fig
