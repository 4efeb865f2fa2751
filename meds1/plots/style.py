"""Shared drawing helpers: colours, label wrapping, legends outside the axes, deterministic atomic PNG writes.

Figures are built with the object API (``matplotlib.figure.Figure``), never pyplot: no GUI backend is needed, no global
figure state leaks between calls, and rendering goes through Agg.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from meds1 import io

DPI = 150
LEGEND_ROWS_PER_COLUMN = 18
LEGEND_COLUMN_INCHES = 2.4
PLACEHOLDER_INCHES = (6, 2)


def experiment_colors(n: int) -> list:
    """``n`` distinct qualitative colours: tab10 up to 10, tab20 up to 20, then tab20 + tab20b + tab20c (60)."""
    if n <= 10:
        palette = list(matplotlib.colormaps["tab10"].colors)
    elif n <= 20:
        palette = list(matplotlib.colormaps["tab20"].colors)
    else:
        palette = [c for name in ("tab20", "tab20b", "tab20c") for c in matplotlib.colormaps[name].colors]
    return [palette[i % len(palette)] for i in range(n)]


def wrap(label: str, width: int) -> str:
    """Wrap a name for a tick or legend; underscores count as break points so long dataset names fold."""
    # textwrap breaks only at spaces and hyphens: a space after each "_" makes it a break point, removed afterwards.
    lines = textwrap.wrap(str(label).replace("_", "_ "), width, break_on_hyphens=True)
    return "\n".join(line.replace("_ ", "_") for line in lines)


def legend_columns(n_entries: int) -> int:
    return max(1, math.ceil(n_entries / LEGEND_ROWS_PER_COLUMN))


def legend_inches(n_entries: int) -> tuple[float, float]:
    """Room (width, height) a right-hand legend with ``n_entries`` needs."""
    rows = min(n_entries, LEGEND_ROWS_PER_COLUMN)
    return legend_columns(n_entries) * LEGEND_COLUMN_INCHES, 0.9 + 0.3 * rows


def new_figure(width: float, height: float) -> Figure:
    # Constrained layout keeps the requested size (so the pixel size is known) while making room for outside legends.
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def legend_outside(fig: Figure, handles, labels, title: str | None = None) -> None:
    if handles:
        fig.legend(handles, [wrap(label, 26) for label in labels], loc="outside right upper",
                   ncols=legend_columns(len(handles)), title=title, fontsize=8, title_fontsize=8, frameon=False)


def pixel_size(fig: Figure) -> list[int]:
    width, height = fig.get_size_inches()
    return [round(width * DPI), round(height * DPI)]


def save_png(fig: Figure, path: str | Path) -> str:
    """Write the figure atomically; no metadata, so identical inputs give byte-identical files."""
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return str(path)


def save_placeholder(path: str | Path, figure: str, reason: str) -> str:
    """A small PNG that says why a figure has no data, so the workflow's outputs exist and nothing stale remains."""
    fig = Figure(figsize=PLACEHOLDER_INCHES, dpi=DPI)
    fig.text(0.5, 0.5, wrap(f"no data for {figure}: {reason}", 70), ha="center", va="center", fontsize=10)
    return save_png(fig, path)
