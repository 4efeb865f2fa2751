"""build_results end to end on hand-made metrics files: the CSV numbers, every figure, missing arms, one experiment."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from meds1.errors import MedS1Error
from meds1.plots import build_results, figure_names, output_paths
from meds1.plots.comparison import comparison_figsize
from meds1.plots.stats import paired_overall
from meds1.plots.style import DPI

SOURCES = {"MedQA_USLME_test": 40, "PubMedQA_test": 20}
N_ITEMS = sum(SOURCES.values())
BASELINE_ITEMS = np.array([1, 0] * (N_ITEMS // 2))  # 30 right, 30 wrong


def flipped(base_only: int, exp_only: int) -> np.ndarray:
    """The baseline's answers with ``base_only`` right ones made wrong and ``exp_only`` wrong ones made right."""
    items = BASELINE_ITEMS.copy()
    items[np.flatnonzero(BASELINE_ITEMS == 1)[:base_only]] = 0
    items[np.flatnonzero(BASELINE_ITEMS == 0)[:exp_only]] = 1
    return items


def wilson(correct: int, n: int) -> list[float]:
    ci = binomtest(correct, n).proportion_ci(method="wilson")
    return [ci.low, ci.high]


def make_metrics(name: str, items: np.ndarray, tts: dict | None = None) -> dict:
    """A metrics.json as the eval stage writes it (internals.md), from per-item correctness."""
    ids = [f"{src}-{i}" for src, n in SOURCES.items() for i in range(n)]
    sources, start = {}, 0
    for src, n in SOURCES.items():
        chunk = items[start:start + n]
        start += n
        k = int(chunk.sum())
        sources[src] = {"n": n, "correct": k, "accuracy": k / n, "wilson": wilson(k, n),
                        "bootstrap": [max(0, k / n - 0.2), min(1, k / n + 0.2)], "parsed": n, "unparsed": 0,
                        "runs": 1, "majority": None, "mean_over_runs": None}
    overall = float(np.mean([s["accuracy"] for s in sources.values()]))  # unweighted, as compute_metrics
    return {"experiment": name, "config_hash": "x", "model": {"key": "tiny", "path": "m"}, "backend": "hf",
            "ci": {"level": 0.95, "wilson": True, "bootstrap": {"method": "percentile", "resamples": 500, "seed": 7}},
            "sources": sources, "overall": {"accuracy": overall, "ci": [overall - 0.05, overall + 0.05], "n": N_ITEMS,
                                            "n_sources": len(SOURCES)},
            "per_item": dict(zip(ids, (int(v) for v in items))),
            "item_sources": {i: i.rsplit("-", 1)[0] for i in ids}, "test_time_scaling": tts,
            "seed_compatible": {"accuracy": min(1.0, overall + 0.1), "sources": {}, "rule": "seed"}}


def tts(base_accuracy: float) -> dict:
    return {approach: {"accuracy": base_accuracy + gain, "ci": [base_accuracy + gain - 0.08,
                                                               base_accuracy + gain + 0.07],
                       "mean_reasoning_tokens": tokens, "sources": {}}
            for approach, gain, tokens in (("default", 0.0, 250), ("step", 0.04, 600), ("strict", 0.06, 1400))}


def spec_entry(name, **fields) -> dict:
    entry = {"name": name, "description": f"{name} description", "model_key": "smollm2-135m", "method": None,
             "format": None, "extract": None, "perturbation": None, "rate": None, "restore": None,
             "n_samples": None, "train_size": None}
    return entry | fields


# name -> (plot-spec fields, (base_only_correct, exp_only_correct) vs the baseline, test-time scaling?)
ARMS = {
    "base": ({}, (0, 0), True),
    "random-1k": ({"method": "random", "format": "huatuo", "n_samples": 1000, "train_size": 900}, (1, 6), True),
    "random-5k": ({"method": "random", "format": "huatuo", "n_samples": 5000, "train_size": 4500}, (5, 25), False),
    "no-tokens": ({"method": "random", "format": "huatuo", "train_size": 900}, (2, 2), "no-tokens"),
    "step-1k": ({"method": "random", "format": "step", "extract": ["step"], "n_samples": 1000, "train_size": 900},
                (0, 10), False),
    "shuffle-30": ({"method": "random", "format": "step", "perturbation": "shuffle", "rate": 0.3, "restore": True,
                    "train_size": 900}, (4, 4), False),
    "shuffle-70": ({"method": "random", "format": "step", "perturbation": "shuffle", "rate": 0.7, "restore": True,
                    "train_size": 900}, (9, 2), False),
    "shuffle-70-raw": ({"method": "random", "format": "step", "perturbation": "shuffle", "rate": 0.7,
                        "restore": False, "train_size": 900}, (12, 1), False),
}
MISSING_ARM = "shuffle-30-raw"  # in the plot spec and figure lists, but never evaluated


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    paths, items = {}, {}
    for name, (_, flips, has_tts) in ARMS.items():
        items[name] = flipped(*flips)
        paths[name] = root / "eval" / name / "metrics.json"
        paths[name].parent.mkdir(parents=True)
        acc = items[name].mean()
        scaling = tts(acc) if has_tts else None
        if has_tts == "no-tokens":  # the eval stage writes None when it counted no reasoning tokens
            scaling = {a: entry | {"mean_reasoning_tokens": None} for a, entry in scaling.items()}
        paths[name].write_text(json.dumps(make_metrics(name, items[name], scaling)))
    spec = {"experiments": [spec_entry(n, **fields) for n, (fields, _, _) in ARMS.items()]
            + [spec_entry(MISSING_ARM, method="random", format="step", perturbation="shuffle", rate=0.3,
                          restore=False, train_size=900)],
            "baseline": "base",
            "figures": {"syntax": ["random-1k", "step-1k", MISSING_ARM],
                        "sample_efficiency": ["base", "random-1k", "random-5k"],
                        "perturbation": ["step-1k", "shuffle-30", "shuffle-70", "shuffle-70-raw", MISSING_ARM],
                        "tts": ["base", "random-1k", "random-5k", "no-tokens"]}}
    out = root / "results"
    report = build_results(spec, {n: str(p) for n, p in paths.items()}, str(out))
    table = pd.read_csv(out / "summary.csv").set_index("name")
    return {"report": report, "table": table, "out": out, "items": items, "spec": spec}


def test_summary_rows_follow_the_plot_spec_and_skip_unevaluated_experiments(built):
    assert list(built["table"].index) == list(ARMS)
    assert built["report"]["summary"]["experiments"] == list(ARMS)
    assert any(MISSING_ARM in n for n in built["report"]["notices"])


def test_summary_accuracy_and_ci_half_widths(built):
    row, items = built["table"].loc["random-1k"], built["items"]["random-1k"]
    medqa = items[:40]
    lo, hi = wilson(int(medqa.sum()), 40)
    assert row["MedQA_USLME_test"] == pytest.approx(100 * medqa.mean(), abs=0.005)
    assert row["MedQA_USLME_test_ci"] == pytest.approx(100 * (hi - lo) / 2, abs=0.005)
    assert row["Overall"] == pytest.approx(overall_of(items), abs=0.005)     # the unweighted mean of the sources
    assert row["Overall_ci"] == pytest.approx(5.0, abs=0.005)
    assert row["ci_method"] == "wilson"
    assert row["train_size"] == 900 and row["method"] == "random" and row["format"] == "huatuo"
    assert built["table"].loc["step-1k", "extract"] == "step"


def overall_of(items: np.ndarray) -> float:
    """Unweighted mean over SOURCES of per-source accuracy, in percent."""
    bounds = np.cumsum([0, *SOURCES.values()])
    return 100 * float(np.mean([items[a:b].mean() for a, b in zip(bounds, bounds[1:])]))


@pytest.mark.parametrize("name", ["random-1k", "random-5k", "step-1k", "shuffle-30", "shuffle-70-raw"])
def test_summary_delta_and_paired_test(built, name):
    row, base_only, exp_only = built["table"].loc[name], *ARMS[name][1]
    items = built["items"][name]
    assert row["delta"] == pytest.approx(overall_of(items) - overall_of(BASELINE_ITEMS), abs=0.005)
    assert row["paired_diff"] == pytest.approx(row["delta"], abs=0.01)   # the paired test is on the plotted Overall
    assert row["paired_lo"] <= row["paired_diff"] <= row["paired_hi"]
    # the bootstrap resamples within each source (question ids in sorted order), with the baseline eval's
    # resamples and seed (500, 7)
    diffs = dict(zip(make_metrics(name, items)["per_item"], items - BASELINE_ITEMS))
    strata = [np.array([diffs[i] for i in sorted(diffs) if i.startswith(src)]) for src in sorted(SOURCES)]
    _, lo, hi = paired_overall(strata, resamples=500, seed=7)
    assert (row["paired_lo"], row["paired_hi"]) == pytest.approx((100 * lo, 100 * hi), abs=0.005)
    assert bool(row["significant"]) == (row["paired_lo"] > 0 or row["paired_hi"] < 0)
    # pooled McNemar: a labelled secondary number
    exact = base_only + exp_only < 25
    expected = sm_mcnemar([[0, base_only], [exp_only, 0]], exact=exact, correction=True)
    assert (row["base_only_correct"], row["exp_only_correct"], row["n_paired"]) == (base_only, exp_only, N_ITEMS)
    assert row["pooled_test"] == ("exact-binomial" if exact else "chi2-continuity-corrected")
    if base_only != exp_only:  # statsmodels' chi-square does not clamp |b - c| - 1 at 0
        assert row["pooled_p_value"] == pytest.approx(expected.pvalue, rel=1e-9)


def test_per_source_mcnemar_is_holm_adjusted(built):
    row = built["table"].loc["step-1k"]  # 10 wrong->right flips, all in MedQA (the first source)
    assert row["MedQA_USLME_test_p_holm"] == pytest.approx(min(1.0, 2 * 2 / 1024))
    assert row["PubMedQA_test_p_holm"] == pytest.approx(1.0)


def test_summary_known_significance_and_baseline_row(built):
    table = built["table"]
    assert table.loc["random-1k", "pooled_p_value"] == pytest.approx(0.125)  # 1 vs 6 discordant: 2 * 8 / 128
    assert table.loc["step-1k", "pooled_p_value"] == pytest.approx(2 / 1024)  # 0 vs 10
    assert table.loc["shuffle-30", "pooled_p_value"] == pytest.approx(1.0)
    # significance is the Overall CI's: 1 vs 6 flips, all in MedQA, move it +6.25 with a CI just above 0
    assert [bool(table.loc[n, "significant"]) for n in ("random-1k", "random-5k", "step-1k", "shuffle-30")] == [
        True, True, True, False]
    assert table.loc["base", "delta"] == 0 or pd.isna(table.loc["base", "delta"])
    assert pd.isna(table.loc["base", "pooled_p_value"]) and pd.isna(table.loc["base", "significant"])
    assert table.loc["base", "Overall_seed_compatible"] == pytest.approx(100 * overall_of(BASELINE_ITEMS) / 100 + 10,
                                                                         abs=0.01)


def test_summary_markdown_has_a_row_per_experiment(built):
    text = (built["out"] / "summary.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + len(ARMS)
    step = next(line for line in lines if line.startswith("| step-1k "))
    assert "0.00195 (exact)" in step and "random / step / step" in step
    assert "MedQA_USLME_test 0.00391*, PubMedQA_test 1 |" in step        # per-source McNemar, Holm-adjusted
    assert "+12.5* [" in step                                       # the paired Overall difference, its CI excludes 0
    assert next(line for line in lines if line.startswith("| base ")).count("baseline") == 1
    assert "unweighted mean of the sources" in text and "Holm" in text and "seed system" in text


def test_constructed_case_paired_delta_equals_the_overall_delta(tmp_path):
    """Issue 15's case: a big source a little worse, a small one much better. Overall (unweighted) moves +15.0
    points; the pooled difference is +1.7. The paired test must measure the Overall difference."""
    sizes = {"MedMCQA_validation": 500, "GPQA_Medical_test": 100}
    base = {f"{s}-{i}": int(i % 2 == 0) for s, n in sizes.items() for i in range(n)}
    exp = dict(base)
    for i in range(0, 50, 2):      # 25 right -> wrong in the big source: -5 points there
        exp[f"MedMCQA_validation-{i}"] = 0
    for i in range(1, 71, 2):      # 35 wrong -> right in the small one: +35 points there
        exp[f"GPQA_Medical_test-{i}"] = 1
    paths = {}
    for name, items in (("base", base), ("exp", exp)):
        by_source = {s: [v for k, v in items.items() if k.startswith(s)] for s in sizes}
        sources = {s: {"n": len(v), "accuracy": float(np.mean(v)), "wilson": [0, 1]} for s, v in by_source.items()}
        metrics = {"sources": sources, "overall": {"accuracy": float(np.mean([float(np.mean(v))
                                                                               for v in by_source.values()]))},
                   "per_item": items, "item_sources": {k: k.rsplit("-", 1)[0] for k in items}}
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(metrics))
    build_results({"experiments": [spec_entry("base"), spec_entry("exp")], "baseline": "base"},
                  {n: str(p) for n, p in paths.items()}, str(tmp_path / "results"))
    row = pd.read_csv(tmp_path / "results" / "summary.csv").set_index("name").loc["exp"]
    assert row["delta"] == pytest.approx(15.0, abs=0.005)
    assert row["paired_diff"] == pytest.approx(15.0, abs=0.005)
    pooled = 100 * (sum(exp.values()) - sum(base.values())) / len(base)
    assert pooled == pytest.approx(1.67, abs=0.01) and abs(row["paired_diff"] - pooled) > 13


def image_size(path) -> tuple[int, int]:
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.size > 0 and float(pixels.std()) > 0  # a real, non-blank image
    return pixels.shape[1], pixels.shape[0]


def test_every_figure_is_written_as_a_valid_png(built):
    report, out = built["report"], built["out"]
    assert set(report["figures"]) == set(figure_names())
    assert set(output_paths(str(out)).values()) == {str(out / "summary.csv"), str(out / "summary.md")} | {
        f["path"] for f in report["figures"].values()}
    assert report["drawn"] == figure_names() and report["skipped"] == {}
    width, height = comparison_figsize(len(SOURCES) + 1, len(ARMS))
    assert image_size(out / "plots" / "comparison.png") == (round(width * DPI), round(height * DPI))
    for name, figure in report["figures"].items():
        assert image_size(figure["path"]) == tuple(figure["size_px"]), name


def test_figures_use_only_their_listed_experiments_and_name_the_missing_arm(built):
    figures = built["report"]["figures"]
    assert figures["syntax"]["experiments"] == ["random-1k", "step-1k"]
    assert figures["syntax"]["missing"] == {MISSING_ARM: "no metrics"}
    assert figures["perturbation"]["missing"] == {MISSING_ARM: "no metrics"}
    assert figures["tts"]["experiments"] == ["base", "random-1k"]
    assert figures["tts"]["missing"] == {"random-5k": "no test_time_scaling in metrics",
                                         "no-tokens": "no test_time_scaling approach with mean_reasoning_tokens"}
    assert figures["sample_efficiency"]["missing"] == {}


def test_single_experiment_without_baseline_or_figure_lists(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps(make_metrics("only", flipped(0, 3))))
    report = build_results({"experiments": [spec_entry("only")], "baseline": None}, {"only": str(metrics)},
                           str(tmp_path / "results"))
    table = pd.read_csv(tmp_path / "results" / "summary.csv")
    assert list(table["name"]) == ["only"] and table.loc[0, "Overall"] == pytest.approx(overall_of(flipped(0, 3)),
                                                                                         abs=0.005)
    assert pd.isna(table.loc[0, "delta"]) and pd.isna(table.loc[0, "pooled_p_value"])
    assert report["drawn"] == ["comparison"]
    assert set(report["skipped"]) == {"syntax", "sample_efficiency", "perturbation", "tts"}
    width, height = comparison_figsize(len(SOURCES) + 1, 1)
    assert image_size(report["figures"]["comparison"]["path"]) == (round(width * DPI), round(height * DPI))
    for name in report["skipped"]:  # placeholders exist so the workflow's outputs are complete
        assert image_size(report["figures"][name]["path"]) == (900, 300)


def test_a_figure_whose_arms_are_all_missing_replaces_a_stale_image_with_a_placeholder(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps(make_metrics("base", BASELINE_ITEMS)))
    stale = tmp_path / "results" / "plots" / "perturbation.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale")
    spec = {"experiments": [spec_entry("base"), spec_entry("shuffle", perturbation="shuffle", rate=0.5)],
            "baseline": "base", "figures": {"perturbation": ["shuffle"], "sample_efficiency": ["base"]}}
    report = build_results(spec, {"base": str(metrics)}, str(tmp_path / "results"))
    assert report["skipped"]["perturbation"] == "missing arms shuffle (no metrics)"
    assert "no listed experiment has a training-set size" in report["skipped"]["sample_efficiency"]
    assert image_size(stale) == (900, 300)


def test_comparison_figure_grows_with_sources_and_experiments():
    sizes = [comparison_figsize(groups, n) for groups, n in ((2, 1), (3, 1), (3, 10), (3, 30))]
    assert [w for w, _ in sizes] == sorted(w for w, _ in sizes) and len({w for w, _ in sizes}) == 4
    assert sizes[3][1] > sizes[0][1]  # a 30-entry legend needs height too


@pytest.mark.parametrize("spec, key", [
    ({"experiments": [{"name": "a"}], "baseline": "b"}, "baseline"),
    ({"experiments": [{"name": "a"}, {"name": "a"}]}, "experiments"),
    ({"experiments": [{"name": "a"}], "figures": {"sintax": ["a"]}}, None),
    ({"experiments": [{"name": "a"}], "figures": {"syntax": ["b"]}}, "figures.syntax"),
])
def test_bad_plot_spec_is_a_one_line_error(tmp_path, spec, key):
    with pytest.raises(MedS1Error) as err:
        build_results(spec, {}, str(tmp_path))
    assert "\n" not in str(err.value) and (key is None or f"key '{key}'" in str(err.value))


def test_bad_metrics_files_name_the_file(tmp_path):
    spec = {"experiments": [{"name": "a"}]}
    with pytest.raises(MedS1Error, match="metrics file not found"):
        build_results(spec, {"a": str(tmp_path / "nope.json")}, str(tmp_path))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"sources": {}}))
    with pytest.raises(MedS1Error, match=r"broken.json: experiment 'a': key 'overall'"):
        build_results(spec, {"a": str(broken)}, str(tmp_path))


def test_outputs_are_byte_identical_across_runs(built, tmp_path):
    """Snakemake's generated unit tests compare outputs byte for byte."""
    paths = {n: str(built["out"].parent / "eval" / n / "metrics.json") for n in ARMS}
    build_results(built["spec"], paths, str(tmp_path / "again"))
    for first in [built["out"] / "summary.csv", built["out"] / "summary.md", *(built["out"] / "plots").glob("*.png")]:
        assert (tmp_path / "again" / first.relative_to(built["out"])).read_bytes() == first.read_bytes(), first.name


def test_bootstrap_intervals_are_used_when_wilson_was_not_computed(tmp_path):
    metrics = make_metrics("boot", flipped(0, 3))
    metrics["ci"]["wilson"] = False
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics))
    build_results({"experiments": [spec_entry("boot")]}, {"boot": str(path)}, str(tmp_path / "results"))
    row = pd.read_csv(tmp_path / "results" / "summary.csv").iloc[0]
    lo, hi = metrics["sources"]["PubMedQA_test"]["bootstrap"]
    assert row["ci_method"] == "bootstrap"
    assert row["PubMedQA_test_ci"] == pytest.approx(100 * (hi - lo) / 2, abs=0.005)


def test_the_plot_rule_and_build_results_share_one_list_of_outputs():
    """rules/plot.smk takes its outputs from meds1.plots.outputs by name; every figure has a drawing and a caption."""
    from pathlib import Path

    from meds1.plots.figures import FIGURES
    from meds1.plots.outputs import FIGURE_NAMES, REPORT_CATEGORIES

    repo = Path(__file__).resolve().parents[1]
    assert set(FIGURE_NAMES[1:]) == set(FIGURES.names()) and FIGURE_NAMES[0] == "comparison"
    assert all((repo / "report" / f"{name}.rst").is_file() for name in REPORT_CATEGORIES)
    rule = (repo / "rules" / "plot.smk").read_text()
    assert "**plot_outputs()" in rule and ".png" not in rule and "summary.csv" not in rule
    assert "zip(" not in (repo / "scripts" / "plot.py").read_text()       # files are paired by name
