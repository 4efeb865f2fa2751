"""Run the real workflow with the snakemake CLI on a scratch copy (the route users take)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_PARTS = ("Snakefile", "rules", "scripts", "envs", "report", "profiles")
# The project's own data (written for it, shipped in the package): what tests run the workflow on.
OWN_SFT = REPO / "meds1" / "resources" / "data" / "demo_sft.json"
OWN_EVAL = REPO / "meds1" / "resources" / "data" / "demo_eval.json"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def make_workdir(root: Path, *, results: dict, config: dict, workflow: dict | None = None) -> Path:
    """A runnable copy of the workflow in ``root`` with the given registry, config.json and workflow_config.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src, dst = REPO / part, root / part
        if src.exists() and not dst.exists():
            (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    (root / "results.json").write_text(json.dumps(results, indent=1))
    (root / "config.json").write_text(json.dumps(config, indent=1))
    (root / "workflow_config.yaml").write_text(yaml.safe_dump(workflow or {}))
    return root


def snakemake(workdir: Path, *args: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "--cores", "2", "--nocolor", *args]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=full_env)


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """rule -> job count from ``snakemake -n`` (the 'Job stats' table)."""
    out = snakemake(workdir, *args, "-n", "--quiet", "rules")  # targets first: --quiet takes values
    assert out.returncode == 0, out.stderr + out.stdout
    return job_counts(out.stdout + out.stderr)


def job_counts(text: str) -> dict[str, int]:
    """rule -> count from the 'Job stats' table Snakemake prints."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            counts[parts[0]] = int(parts[1])
    return counts


def tiny_config(tiny_model_dir: Path, *, sft_file: Path = OWN_SFT, eval_file: Path = OWN_EVAL) -> dict:
    """config.json for tests: the tiny model and the given datasets, offline curation LLM."""
    return {
        "model_choices": {"base": "tiny"},
        "models": {"tiny": {"hf_path": "tiny/does-not-exist", "local_path": str(tiny_model_dir), "max_length": 512,
                            "format": "huatuo"},
                   "offline-rules": {"provider": "offline", "hf_path": "offline-rules"}},
        "train_datasets": {"sft": {"file_path": str(sft_file)}},
        "eval_datasets": {"evalset": {"file_path": str(eval_file)}},
    }
