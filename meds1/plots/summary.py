"""The results table: one row per experiment (plot-spec order) with accuracies, CIs, and paired tests vs the baseline.

Accuracies, CI half-widths, deltas and paired differences are in percentage points (0-100); p-values are plain.
``paired_*`` is the paired difference of Overall (the unweighted mean over sources, as plotted) and its bootstrap CI;
``<source>_p_holm`` are per-source McNemar p-values, Holm-adjusted; ``pooled_*`` is McNemar over all pooled questions,
a secondary number (it weighs sources by size). ``Overall_seed_compatible`` is the same answers scored the seed
system's way (max of first/last letter, always guessing): comparable with the seed's tables, not with ``Overall``.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from meds1 import io
from meds1.errors import MedS1Error
from meds1.plots.stats import paired_comparison

log = logging.getLogger(__name__)

OVERALL = "Overall"
SPEC_COLUMNS = ("name", "description", "model", "method", "format", "extract", "perturbation", "rate", "restore",
                "n_samples", "train_size")
PAIRED_COLUMNS = ("n_paired", "paired_diff", "paired_lo", "paired_hi", "significant", "base_only_correct",
                  "exp_only_correct", "pooled_test", "pooled_statistic", "pooled_p_value")
INTEGER_COLUMNS = ("n_samples", "train_size", "n_paired", "base_only_correct", "exp_only_correct")
SEED_COLUMN = f"{OVERALL}_seed_compatible"
DEFAULT_BOOTSTRAP = {"resamples": 1000, "seed": 0}


@dataclass(frozen=True)
class Point:
    """One accuracy with its (possibly asymmetric) confidence interval, in percent."""
    accuracy: float
    lo: float
    hi: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


# ---------------------------------------------------------------- inputs

def validate_plot_spec(plot_spec: dict) -> dict:
    """Check the plot spec's shape: named, unique experiments and a baseline among them. Returns it unchanged."""
    experiments = plot_spec.get("experiments")
    if not isinstance(experiments, list) or not all(isinstance(e, dict) and e.get("name") for e in experiments):
        raise MedS1Error("must be a list of objects each with a 'name'", file="plot spec", key="experiments")
    names = [e["name"] for e in experiments]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise MedS1Error(f"experiment listed twice: {', '.join(duplicated)}", file="plot spec", key="experiments")
    baseline = plot_spec.get("baseline")
    if baseline is not None and baseline not in names:
        raise MedS1Error(f"baseline '{baseline}' is not one of the plot's experiments", file="plot spec",
                         key="baseline", choices=names, value=baseline)
    return plot_spec


def load_metrics(plot_spec: dict, metrics_paths: dict[str, str], notices: list[str]) -> dict[str, dict]:
    """Read the metrics of the plot-spec experiments that have a file, in plot-spec order."""
    names = [e["name"] for e in plot_spec["experiments"]]
    for extra in sorted(set(metrics_paths) - set(names)):
        notice(notices, f"metrics for '{extra}' ignored: the experiment is not in the plot spec")
    loaded = {name: read_metrics(metrics_paths[name], name) for name in names if name in metrics_paths}
    missing = [name for name in names if name not in loaded]
    if missing:
        notice(notices, f"no metrics for: {', '.join(missing)}")
    if not loaded:
        raise MedS1Error("none of the plot's experiments has a metrics file", file="plot spec", key="experiments")
    return loaded


def read_metrics(path: str, experiment: str) -> dict:
    if not Path(path).is_file():
        raise MedS1Error("metrics file not found", file=path, experiment=experiment)
    try:
        metrics = io.read_json(path)
    except json.JSONDecodeError as err:
        raise MedS1Error(f"not valid JSON ({err.msg} at line {err.lineno})", file=path, experiment=experiment) from None
    for key in ("sources", "overall"):
        if not isinstance(metrics.get(key), dict):
            raise MedS1Error("missing or not an object", file=path, experiment=experiment, key=key)
    for source, entry in metrics["sources"].items():
        if not isinstance(entry, dict) or "accuracy" not in entry:
            raise MedS1Error("has no 'accuracy'", file=path, experiment=experiment, key=f"sources.{source}")
    if "accuracy" not in metrics["overall"]:
        raise MedS1Error("has no 'accuracy'", file=path, experiment=experiment, key="overall")
    return metrics


def notice(notices: list[str], message: str) -> None:
    log.warning(message)
    notices.append(message)


# ---------------------------------------------------------------- accuracies

def all_sources(metrics: dict[str, dict]) -> list[str]:
    """Every source any experiment reports, in order of first appearance."""
    sources: list[str] = []
    for m in metrics.values():
        sources += [s for s in m["sources"] if s not in sources]
    return sources


def interval_method(metrics: dict) -> str:
    """'wilson' unless the metrics say Wilson intervals were not computed; then the bootstrap interval."""
    return "wilson" if (metrics.get("ci") or {}).get("wilson", True) else "bootstrap"


def accuracy_points(metrics: dict, sources: list[str]) -> dict[str, Point]:
    """Per-source and Overall accuracy with CI, in percent; a source the experiment lacks is left out."""
    method = interval_method(metrics)
    points = {}
    for source in sources:
        entry = metrics["sources"].get(source)
        if entry is not None and entry.get("accuracy") is not None:
            interval = entry.get(method) or entry.get("bootstrap") or entry.get("wilson")
            points[source] = to_point(entry["accuracy"], interval)
    points[OVERALL] = to_point(metrics["overall"]["accuracy"], metrics["overall"].get("ci"))
    return points


def to_point(accuracy: float, interval) -> Point:
    lo, hi = interval if interval else (accuracy, accuracy)  # no interval reported: a zero-width one
    return Point(100 * accuracy, 100 * lo, 100 * hi)


# ---------------------------------------------------------------- paired tests

def bootstrap_settings(plot_spec: dict, metrics: dict[str, dict]) -> dict:
    """Resamples and seed for the paired bootstrap: the baseline eval's (the workflow seed), else defaults."""
    from_metrics = ((metrics.get(plot_spec.get("baseline")) or {}).get("ci") or {}).get("bootstrap") or {}
    return {key: from_metrics.get(key) if from_metrics.get(key) is not None else default
            for key, default in DEFAULT_BOOTSTRAP.items()}


def paired_vs_baseline(plot_spec: dict, metrics: dict[str, dict], notices: list[str]) -> dict[str, dict]:
    """Paired test of every experiment against the baseline; experiments that cannot be paired are left out."""
    baseline = plot_spec.get("baseline")
    if baseline is None:
        return {}
    if baseline not in metrics:
        notice(notices, f"baseline '{baseline}' has no metrics: no deltas or paired tests")
        return {}
    base_items = metrics[baseline].get("per_item") or {}
    settings = bootstrap_settings(plot_spec, metrics)
    paired = {}
    for name, m in metrics.items():
        if name == baseline:
            continue
        items = m.get("per_item") or {}
        shared = len(set(items) & set(base_items))
        if shared == 0:
            notice(notices, f"'{name}' shares no per_item question ids with baseline '{baseline}': no paired test")
            continue
        if shared < max(len(items), len(base_items)):
            notice(notices, f"'{name}' vs '{baseline}': paired test on the {shared} shared question ids")
        sources = {**(metrics[baseline].get("item_sources") or {}), **(m.get("item_sources") or {})}
        if not sources:
            notice(notices, f"'{name}' vs '{baseline}': no item_sources in metrics (older eval): the paired test "
                            "pools every question")
        paired[name] = paired_comparison(items, base_items, sources=sources, resamples=settings["resamples"],
                                         seed=settings["seed"])
    return paired


# ---------------------------------------------------------------- the table

def summary_table(plot_spec: dict, metrics: dict[str, dict], paired: dict[str, dict]) -> pd.DataFrame:
    """One row per experiment with metrics, in plot-spec order (see the module docstring for units)."""
    sources = all_sources(metrics)
    baseline = plot_spec.get("baseline")
    base_overall = accuracy_points(metrics[baseline], sources)[OVERALL] if baseline in metrics else None
    rows = []
    for entry in plot_spec["experiments"]:
        name = entry["name"]
        if name not in metrics:
            continue
        points = accuracy_points(metrics[name], sources)
        row = spec_columns(entry, metrics[name])
        row["ci_method"] = interval_method(metrics[name])
        for group in sources + [OVERALL]:
            point = points.get(group)
            row[group] = round(point.accuracy, 2) if point else None
            row[f"{group}_ci"] = round(point.half_width, 2) if point else None
        row["delta"] = round(points[OVERALL].accuracy - base_overall.accuracy, 2) if base_overall else None
        seed = (metrics[name].get("seed_compatible") or {}).get("accuracy")
        row[SEED_COLUMN] = round(100 * seed, 2) if seed is not None else None
        row.update(paired_columns(paired.get(name), sources))
        rows.append(row)
    # Nullable integers: a count with blanks would otherwise be written as 120.0.
    return pd.DataFrame(rows).astype({column: "Int64" for column in INTEGER_COLUMNS})


def spec_columns(entry: dict, metrics: dict) -> dict:
    perturbation = entry.get("perturbation")
    if isinstance(perturbation, dict):  # tolerate the curate spec's {"type", "rate"} shape
        perturbation, entry = perturbation.get("type"), {**entry, "rate": entry.get("rate", perturbation.get("rate"))}
    extract = entry.get("extract")
    return {"name": entry["name"], "description": entry.get("description"),
            "model": entry.get("model_key") or (metrics.get("model") or {}).get("key"),
            "method": entry.get("method"), "format": entry.get("format"),
            "extract": "+".join(extract) if isinstance(extract, (list, tuple)) else extract,
            "perturbation": perturbation, "rate": entry.get("rate"), "restore": entry.get("restore"),
            "n_samples": entry.get("n_samples"), "train_size": entry.get("train_size")}


def paired_columns(paired: dict | None, sources: list[str]) -> dict:
    per_source = (paired or {}).get("per_source") or {}
    holm = {f"{src}_p_holm": (per_source.get(src) or {}).get("p_holm") for src in sources}
    if paired is None:
        return {column: None for column in PAIRED_COLUMNS} | holm
    columns = {column: paired[column] for column in PAIRED_COLUMNS}
    for key in ("paired_diff", "paired_lo", "paired_hi"):  # accuracy differences -> percentage points
        columns[key] = round(100 * paired[key], 2)
    return columns | holm


# ---------------------------------------------------------------- writing

def write_summary(table: pd.DataFrame, out_dir: str | Path, baseline: str | None = None) -> dict[str, str]:
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / "summary.csv", out_dir / "summary.md"
    io.write_text(csv_path, table.to_csv(index=False))
    io.write_text(md_path, markdown_table(table, baseline))
    return {"csv": str(csv_path), "md": str(md_path)}


def markdown_table(table: pd.DataFrame, baseline: str | None = None) -> str:
    """A readable table: 'acc ± ci' cells, the curation settings in one column, the paired test in two."""
    sources = [c[:-3] for c in table.columns if c.endswith("_ci") and c != f"{OVERALL}_ci"]
    header = ["Experiment", "Model", "Curation", "Train size", *sources, OVERALL, "Δ vs baseline",
              "Paired Δ Overall [95% CI]", "McNemar p per source (Holm)", "Pooled McNemar p", "Overall, seed scorer"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.to_dict("records"):
        cells = [row["name"], row["model"], curation_label(row), blank_if_none(row["train_size"]),
                 *(accuracy_cell(row, g) for g in sources + [OVERALL]),
                 "baseline" if row["name"] == baseline else signed(row["delta"]), paired_cell(row),
                 source_p_cell(row, sources), p_value_cell(row), percent_cell(row[SEED_COLUMN])]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    notes = ("\nAccuracy in % ± 95% CI half-width; Overall is the unweighted mean of the sources. Paired Δ: Overall "
             "difference vs the baseline on shared questions, bootstrap resampling questions within each source; * its "
             "95% CI excludes 0. Per-source McNemar p-values are Holm-adjusted for the number of sources (* < 0.05). "
             "Pooled McNemar weighs sources by size (a secondary number). Seed scorer: the same answers scored as the "
             "seed system did (max of first/last letter, always guessing), to compare with its published tables only.")
    return "\n".join(lines) + "\n" + notes + "\n"


def missing(value) -> bool:
    return value is None or bool(pd.isna(value))


def blank_if_none(value) -> str:
    return "" if missing(value) else str(value)


def curation_label(row: dict) -> str:
    parts = [row.get(k) for k in ("method", "format", "extract") if not missing(row.get(k))]
    if not missing(row.get("perturbation")):
        parts.append(f"{row['perturbation']}@{blank_if_none(row.get('rate'))}")
        parts.append("restored" if row.get("restore") else "not restored")
    return " / ".join(str(p) for p in parts) or "—"


def accuracy_cell(row: dict, group: str) -> str:
    return "" if missing(row[group]) else f"{row[group]:.1f} ± {row[f'{group}_ci']:.1f}"


def signed(value) -> str:
    return "" if missing(value) else f"{value:+.1f}"


def p_value_cell(row: dict) -> str:
    if missing(row["pooled_p_value"]):
        return ""
    return f"{row['pooled_p_value']:.3g} ({'exact' if row['pooled_test'].startswith('exact') else 'χ²'})"


def source_p_cell(row: dict, sources: list[str]) -> str:
    cells = [(src, row.get(f"{src}_p_holm")) for src in sources]
    return ", ".join(f"{src} {p:.3g}{'*' if p < 0.05 else ''}" for src, p in cells if not missing(p))


def percent_cell(value) -> str:
    return "" if missing(value) else f"{value:.1f}"


def paired_cell(row: dict) -> str:
    if missing(row["paired_diff"]):
        return ""
    star = "*" if row["significant"] else ""
    return (f"{row['paired_diff']:+.1f}{star} [{row['paired_lo']:+.1f}, {row['paired_hi']:+.1f}] "
            f"(n={int(row['n_paired'])})")


def with_train_sizes(plot_spec: dict, stats_paths: dict[str, str]) -> dict:
    """The plot spec with each trained experiment's real training-set size (``train`` in curated/{exp}/stats.json)."""
    import json

    rows = [dict(e, train_size=json.loads(open(stats_paths[e["name"]]).read())["train"]) if e["name"] in stats_paths
            else e for e in plot_spec["experiments"]]
    return {**plot_spec, "experiments": rows}
