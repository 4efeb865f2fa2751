"""The real snakemake CLI on scratch workflows: dry-runs, bad input at parse time, a full tiny run, param reruns."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from workflow import REPO, make_workdir, planned_jobs, snakemake, tiny_config

TRAIN = {"learning_rate": 1e-3, "batch_size": 4, "gradient_accumulation_steps": 1, "num_epochs": 1,
         "max_length": 384, "evals_per_epoch": 1, "gradient_checkpointing": False}


def tiny_results() -> dict:
    return {"experiments": {
        "base": {"description": "tiny base", "config": {"model_key": "tiny", "curation": None, "training_params": None,
                                                         "datasets": {"curate": None, "eval": "evalset"}}},
        "rand": {"description": "tiny random", "config": {"model_key": "tiny",
                 "curation": {"method": "random", "format": "huatuo", "n_samples": 16}, "training_params": TRAIN,
                 "datasets": {"curate": "sft", "eval": "evalset"}}},
    }}


TINY_WORKFLOW = {"experiments": ["base", "rand"], "baseline": "base", "curation_llm": "offline-rules",
                 "wandb_mode": "disabled", "eval": {"max_new_tokens": 12, "limit": 3, "batch_size": 8,
                                                    "bootstrap_resamples": 200}}


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory, tiny_model_dir) -> Path:
    cfg = tiny_config(tiny_model_dir)
    return make_workdir(tmp_path_factory.mktemp("wf") / "w", results=tiny_results(), config=cfg,
                        workflow=TINY_WORKFLOW)


def test_dry_run_lists_every_selected_experiment(tiny_workdir):
    assert planned_jobs(tiny_workdir) == {"curate": 1, "train": 1, "eval": 2, "plot": 1, "all": 1}


def test_dry_run_of_one_target_lists_just_its_chain(tiny_workdir):
    assert planned_jobs(tiny_workdir, "eval/rand/metrics.json") == {"curate": 1, "train": 1, "eval": 1}
    assert planned_jobs(tiny_workdir, "eval/base/metrics.json") == {"eval": 1}


def _outputs(workdir: Path) -> set[str]:
    return {str(p.relative_to(workdir)) for d in ("curated", "ckpts", "eval", "results") if (workdir / d).exists()
            for p in (workdir / d).rglob("*")}


@pytest.mark.parametrize("mutate, words", [
    (lambda r: r["experiments"]["rand"]["config"].__setitem__("model_key", "tiyn"),
     ["results.json: experiment 'rand': key 'config.model_key'", "did you mean 'tiny'"]),
    (lambda r: r["experiments"]["rand"]["config"]["curation"].__setitem__("method", "randm"),
     ["results.json: experiment 'rand': key 'config.curation.method'", "did you mean 'random'"]),
    (lambda r: r["experiments"]["rand"]["config"]["curation"].__setitem__("perturbation", {"type": "skip", "rate": 0.5}),
     ["results.json: experiment 'rand': key 'config.curation.perturbation.rate'"]),
    (lambda r: r["experiments"]["rand"]["config"].__setitem__("training_params", "same as rand"),
     ["results.json: experiment 'rand': key 'training_params'", "cycle", "rand -> rand"]),
])
def test_bad_registry_exits_with_one_line_and_writes_nothing(tmp_path, tiny_model_dir, mutate, words):
    results = tiny_results()
    mutate(results)
    cfg = tiny_config(tiny_model_dir)
    wd = make_workdir(tmp_path / "w", results=results, config=cfg, workflow=TINY_WORKFLOW)
    out = snakemake(wd)
    assert out.returncode != 0
    errors = [l for l in (out.stdout + out.stderr).splitlines() if l.startswith("error: ")]
    assert len(errors) == 1, out.stderr
    for w in words:
        assert w in errors[0]
    assert "Traceback" not in out.stderr + out.stdout
    assert _outputs(wd) == set()


def test_unknown_target_experiment_is_one_line(tiny_workdir):
    out = snakemake(tiny_workdir, "-n", "eval/rnad/metrics.json")
    assert out.returncode != 0
    assert "error: results.json: experiment 'rnad': no such experiment (did you mean 'rand'?)" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.fixture(scope="module")
def tiny_run(tiny_workdir):
    out = snakemake(tiny_workdir, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    return tiny_workdir


def test_full_run_builds_every_target(tiny_run):
    wd = tiny_run
    for path in ("curated/rand/dataset/dataset_dict.json", "curated/rand/rows.parquet", "curated/rand/stats.json",
                 "ckpts/rand/final/config.json", "ckpts/rand/train_metrics.json", "eval/base/generations.jsonl",
                 "eval/rand/metrics.json", "results/summary.csv", "results/plots/comparison.png"):
        assert (wd / path).exists(), path
    stats = json.loads((wd / "curated/rand/stats.json").read_text())
    assert stats["rows_in"] == 160 and stats["rows_kept"] == 16 and stats["train"] + stats["validation"] == 16
    metrics = json.loads((wd / "eval/rand/metrics.json").read_text())
    assert set(metrics["sources"]) == {"Basic_Science", "Clinical_Vignettes", "Pharmacology"}  # demo_eval.json
    assert all(s["n"] == 3 for s in metrics["sources"].values())
    assert (wd / "logs/train/rand.log").exists() and (wd / "benchmarks/eval/base.tsv").exists()


def test_second_run_has_nothing_to_do(tiny_run):
    assert planned_jobs(tiny_run) == {}


def test_editing_one_experiment_reruns_only_its_jobs(tiny_run):
    wd = tiny_run
    original = (wd / "results.json").read_text()
    results = json.loads(original)
    results["experiments"]["rand"]["config"]["training_params"]["learning_rate"] = 5e-4
    (wd / "results.json").write_text(json.dumps(results))
    try:
        assert planned_jobs(wd) == {"train": 1, "eval": 1, "plot": 1, "all": 1}
        out = snakemake(wd, "-n", "--quiet", "reason")
        assert "ckpts/rand/final" in out.stdout + out.stderr
        assert "output: eval/base" not in out.stdout + out.stderr
    finally:
        (wd / "results.json").write_text(original)
    assert planned_jobs(wd) == {}
