"""docs/extending.md is true: its example files, copied into a scratch workflow, run as the guide says."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from workflow import REPO, make_workdir, planned_jobs, snakemake, tiny_config

GUIDE = REPO / "docs" / "extending.md"
BLOCK = re.compile(r"```python\n# file: (?P<path>\S+)\n(?P<code>.*?)```", re.DOTALL)


def guide_files() -> dict[str, str]:
    return {m["path"]: m["code"] for m in BLOCK.finditer(GUIDE.read_text(encoding="utf-8"))}


def test_the_guide_has_the_examples():
    assert {"plugins/shortest.py", "plugins/checklist.py", "plugins/lengths_stage.py", "rules/lengths.smk",
            "scripts/lengths.py"} <= set(guide_files())


@pytest.fixture
def guided_workdir(tmp_path, tiny_model_dir) -> Path:
    experiments = {
        "base": {"config": {"model_key": "tiny", "curation": None, "datasets": {"curate": None, "eval": "evalset"}}},
        "short": {"config": {"model_key": "tiny", "curation": {"method": "shortest", "n_samples": 12,
                                                                "column": "Question"},
                             "training_params": {"num_epochs": 1, "batch_size": 4, "gradient_accumulation_steps": 1,
                                                 "max_length": 384, "evals_per_epoch": 1},
                             "datasets": {"curate": "sft", "eval": "evalset"}}},
        "checklist": {"config": {"model_key": "tiny", "curation": {"method": "random", "n_samples": 6,
                                                                    "extract": "checklist"},
                                 "datasets": {"curate": "sft", "eval": "evalset"}}},
    }
    wd = make_workdir(tmp_path / "w", results={"experiments": experiments}, config=tiny_config(tiny_model_dir),
                      workflow={"experiments": ["base", "short", "checklist"], "baseline": "base",
                                "curation_llm": "offline-rules", "wandb_mode": "disabled",
                                "eval": {"max_new_tokens": 8, "limit": 2},
                                "plugins": ["plugins/shortest.py", "plugins/checklist.py", "plugins/lengths_stage.py"]})
    for path, code in guide_files().items():
        (wd / path).parent.mkdir(parents=True, exist_ok=True)
        (wd / path).write_text(code)
    snakefile = wd / "Snakefile"
    snakefile.write_text(snakefile.read_text().replace('include: "rules/plot.smk"\n',
                                                       'include: "rules/plot.smk"\ninclude: "rules/lengths.smk"\n'))
    return wd


def test_a_new_method_and_a_new_stage_plan_and_run(guided_workdir):
    wd = guided_workdir
    assert planned_jobs(wd, "lengths/short/stats.json") == {"curate": 1, "train": 1, "eval": 1, "lengths": 1}
    out = snakemake(wd, "curated/short/stats.json", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = pd.read_parquet(wd / "curated/short/rows.parquet")
    kept = rows[rows["status"] == "kept"]
    assert len(kept) == 12 and kept["text_length"].max() <= rows.loc[rows["status"] == "removed", "text_length"].min()
    out = snakemake(wd, "lengths/base/stats.json", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    stats = json.loads((wd / "lengths/base/stats.json").read_text())
    assert stats["experiment"] == "base" and stats["n"] > 0


def test_a_bad_option_of_the_new_method_is_one_line(guided_workdir):
    results = json.loads((guided_workdir / "results.json").read_text())
    results["experiments"]["short"]["config"]["curation"]["colum"] = "Question"
    (guided_workdir / "results.json").write_text(json.dumps(results))
    out = snakemake(guided_workdir, "-n")
    errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("error: ")]
    assert out.returncode != 0 and len(errors) == 1
    assert "key 'config.curation.colum'" in errors[0] and "did you mean 'column'" in errors[0]


def test_a_new_trace_transform_plans_and_rewrites_the_selected_traces(guided_workdir):
    wd = guided_workdir
    assert planned_jobs(wd, "eval/checklist/metrics.json") == {"curate": 1, "train": 1, "eval": 1}
    out = snakemake(wd, "curated/checklist/stats.json", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = pd.read_parquet(wd / "curated/checklist/rows.parquet")
    kept = rows[rows["status"] == "kept"]
    assert len(kept) == 6 and kept["llm_failed"].isna().all()
    for original, checklist in zip(kept["Complex_CoT_original"], kept["Complex_CoT_checklist"]):
        lines = checklist.splitlines()
        assert lines and [line.split(". ", 1)[0] for line in lines] == [str(i) for i in range(1, len(lines) + 1)]
        assert lines[0].split(". ", 1)[1] in " ".join(original.split())  # the trace's own first sentence
    stats = json.loads((wd / "curated/checklist/stats.json").read_text())
    assert stats["trace_writer"]["stand_in"] and stats["traces"]["llm_failed_rows"] == 0
    from datasets import load_from_disk

    train = load_from_disk(str(wd / "curated/checklist/dataset"))["train"]
    assert all("\n1. " in example["completion"][0]["content"] for example in train)
