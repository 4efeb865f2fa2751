"""The plot stage's files, by name: ONE list that the plot rule's ``output:`` and ``build_results`` both use.

Kept free of matplotlib and pandas: the plot rule reads it when the Snakefile is parsed. A figure is a name here, a
drawing function registered under the same name in ``meds1.plots.figures`` (a test checks the two agree) and a caption
``report/<name>.rst``.
"""
from __future__ import annotations

from pathlib import Path

SUMMARY_FILES = {"summary": "summary.csv", "summary_md": "summary.md"}
FIGURE_NAMES = ("comparison", "syntax", "sample_efficiency", "perturbation", "tts")  # comparison is always drawn
REPORT_CATEGORIES = {"summary": "Summary", **{name: "Figures" for name in FIGURE_NAMES}}


def figure_path(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir) / "plots" / f"{name}.png"


def output_paths(out_dir: str = "results") -> dict[str, str]:
    """name -> path of every file build_results writes under ``out_dir``."""
    paths = {name: str(Path(out_dir) / file) for name, file in SUMMARY_FILES.items()}
    return paths | {name: str(figure_path(out_dir, name)) for name in FIGURE_NAMES}


def figure_names() -> list[str]:
    """Every figure build_results writes (``<out_dir>/plots/<name>.png``), comparison first."""
    return list(FIGURE_NAMES)
