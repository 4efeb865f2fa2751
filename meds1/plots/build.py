"""Entry point of the plot stage: metrics files + plot spec -> summary table and every figure.

Example (what the plot rule's script does)::

    from meds1.plots import build_results
    report = build_results(plot_spec, {"base": "eval/base/metrics.json", "sft": "eval/sft/metrics.json"})
"""
from __future__ import annotations


from meds1.plots.comparison import draw_comparison
from meds1.plots.figures import Arm, draw_figure, validate_figure_lists
from meds1.plots.outputs import FIGURE_NAMES, figure_path, figure_names, output_paths  # noqa: F401 (re-exported)
from meds1.plots.style import pixel_size, save_png
from meds1.plots.summary import (accuracy_points, all_sources, load_metrics, paired_vs_baseline, summary_table,
                                 validate_plot_spec, write_summary)

COMPARISON = FIGURE_NAMES[0]


def build_results(plot_spec: dict, metrics_paths: dict[str, str], out_dir: str = "results") -> dict:
    """Write summary.csv/.md and every figure under ``out_dir``; return what was drawn, skipped and noticed.

    Returns ``{"summary": {"csv", "md", "experiments"}, "figures": {name: {"status": "drawn"|"skipped", "path",
    ...}}, "drawn": [names], "skipped": {name: reason}, "notices": [messages]}``.
    """
    validate_plot_spec(plot_spec)
    figure_lists = validate_figure_lists(plot_spec)
    notices: list[str] = []
    metrics = load_metrics(plot_spec, metrics_paths, notices)
    paired = paired_vs_baseline(plot_spec, metrics, notices)
    table = summary_table(plot_spec, metrics, paired)
    summary = write_summary(table, out_dir, plot_spec.get("baseline")) | {"experiments": list(table["name"])}

    sources = all_sources(metrics)
    points = {name: accuracy_points(m, sources) for name, m in metrics.items()}
    baseline = plot_spec.get("baseline") if plot_spec.get("baseline") in metrics else None
    comparison = draw_comparison(points, sources, baseline, paired)
    figures = {COMPARISON: {"status": "drawn", "path": save_png(comparison, figure_path(out_dir, COMPARISON)),
                            "size_px": pixel_size(comparison), "experiments": list(metrics), "missing": {}}}

    specs = {e["name"]: e for e in plot_spec["experiments"]}
    arms = {name: Arm(name, specs[name], m) for name, m in metrics.items()}
    for name in FIGURE_NAMES[1:]:
        figures[name] = draw_figure(name, figure_lists.get(name), arms, out_dir, notices)
    return {"summary": summary, "figures": figures,
            "drawn": [n for n, f in figures.items() if f["status"] == "drawn"],
            "skipped": {n: f["reason"] for n, f in figures.items() if f["status"] == "skipped"},
            "notices": notices}
