"""The cluster route: profiles/slurm (+ profiles/slurm-ci) on a real single-node SLURM, conda env files.

The SLURM tests need a running cluster (CI: `.ci/run` starts one with `.ci/start_slurm.sh`). By hand:

    eval "$(bash .ci/start_slurm.sh)"
    .venv/bin/pytest -q tests/test_slurm.py
    bash .ci/stop_slurm.sh

They are skipped only when the SLURM binaries are absent; installed binaries with no cluster answering is a failure.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_workflow import TINY_WORKFLOW, tiny_results
from workflow import REPO, SNAKEMAKE, make_workdir, planned_jobs, snakemake, tiny_config

PROFILES = ("--profile", "profiles/slurm", "--profile", "profiles/slurm-ci")
GPU_RULES = {"train", "eval"}
CI_TIMING_KEYS = {"seconds-between-status-checks", "slurm-init-seconds-before-status-checks", "latency-wait"}
# Run (--precommand) in every SLURM job before Snakemake starts the rule there: prints the job's GPUs to its log.
# No `$` in it: the plugin puts the command inside sbatch --wrap="...", where the submitting shell would expand it.
GPU_PROBE = (f"{sys.executable} -c \"import os; print('meds1-probe CUDA_VISIBLE_DEVICES='"
             f" + os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))\"")


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# ---------------------------------------------------------------- profiles and env files (no cluster needed)

def test_slurm_profile_maps_gpu_rules_to_gpus_without_tasks():
    profile = load_yaml(REPO / "profiles/slurm/config.yaml")
    assert profile["executor"] == "slurm" and profile["jobs"] >= 1
    assert profile["slurm-status-command"] == "squeue"  # sacct hangs without slurmdbd
    assert profile["latency-wait"] >= 30 and profile["rerun-incomplete"] is True
    assert "slurm_account" not in profile["default-resources"]
    rules = profile["set-resources"]
    for rule in GPU_RULES:
        assert rules[rule]["gpu"] >= 1 and "tasks" not in rules[rule] and "cpus_per_task" not in rules[rule], rule
        assert re.fullmatch(r"\d+h", rules[rule]["runtime"]), rule
    for rule in ("curate", "prepare_model"):
        assert not {"gpu", "gres", "gpu_model"} & set(rules[rule]), rule
    assert not {"plot", "all"} & set(rules)  # localrules


def test_ci_overlay_holds_only_timing_keys():
    # A later --profile replaces whole top-level keys: anything else here would drop the base profile's requests.
    overlay = load_yaml(REPO / "profiles/slurm-ci/config.yaml")
    assert set(overlay) == CI_TIMING_KEYS
    assert overlay["latency-wait"] < load_yaml(REPO / "profiles/slurm/config.yaml")["latency-wait"]


def test_no_default_profile_that_snakemake_would_apply_silently():
    assert not (REPO / "profiles/default").exists()


def conda_envs_of_rules() -> dict[str, str]:
    """rule name -> env file, from the `conda:` directives in rules/*.smk."""
    found = {}
    for smk in (REPO / "rules").glob("*.smk"):
        for rule, env in re.findall(r'^rule (\w+):.*?conda:\s*"\.\./(envs/[\w.-]+)"', smk.read_text(), re.M | re.S):
            found[rule] = env
    return found


def pip_requirements(env: dict) -> list[str]:
    return next((d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d), [])


def test_every_rule_env_file_exists_with_python_311():
    envs = conda_envs_of_rules()
    assert {"curate", "train", "eval", "plot", "prepare_model"} <= set(envs)
    for rule, path in envs.items():
        env = load_yaml(REPO / path)
        assert "python=3.11" in env["dependencies"], path
        assert env["channels"][0] == "conda-forge", path
        assert not any(str(r).startswith("-e") for r in pip_requirements(env)), path  # not portable


@pytest.mark.parametrize("name, needs", [
    ("curate", {"torch", "transformers", "datasets", "sentence-transformers", "google-genai", "gguf"}),
    ("train", {"torch", "transformers", "datasets", "trl", "accelerate"}),
])
def test_torch_envs_pin_torch_under_pip(name, needs):
    pip = pip_requirements(load_yaml(REPO / f"envs/{name}.yaml"))
    assert "torch>=2.6,<2.14" in pip  # a bare torch pulls the newest CUDA build, incompatible with the stack
    names = {re.split(r"[<>=!~ ]", r, maxsplit=1)[0] for r in pip}
    assert needs <= names


def test_plot_env_has_no_torch():
    env = load_yaml(REPO / "envs/plot.yaml")
    assert not any("torch" in str(d) for d in env["dependencies"])
    assert any(str(d).startswith("matplotlib") for d in env["dependencies"])


# ---------------------------------------------------------------- a real SLURM

@pytest.fixture(scope="module")
def cluster():
    """Skip without SLURM binaries; fail when they exist but no cluster answers (CI must have started one)."""
    missing = [b for b in ("sbatch", "sinfo") if not shutil.which(b)]
    if missing:
        pytest.skip(f"SLURM binaries not installed ({', '.join(missing)}); CI installs and starts SLURM in .ci/run")
    hint = 'start one with: eval "$(bash .ci/start_slurm.sh)"'
    answer = probe(["sinfo", "-h", "-o", "%P %a %T %G"])
    if answer.returncode != 0 or not answer.stdout.strip():
        pytest.fail(f"SLURM is installed but no cluster answers sinfo ({answer.stderr.strip()[:200]}); {hint}")
    # slurm-jobstep strips SLURM_CONF before its inner srun: srun must find the config without it.
    step = probe(["env", "-u", "SLURM_CONF", "srun", "-n1", "true"])
    if step.returncode != 0:
        pytest.fail(f"srun fails without SLURM_CONF ({step.stderr.strip()[:200]}): put the srun wrapper "
                    f"from .ci/start_slurm.sh first on PATH; {hint}")
    return answer.stdout


def probe(cmd: list[str]) -> subprocess.CompletedProcess:
    """A quick SLURM client command; clients retry a missing config or controller for a minute: give up sooner."""
    try:
        return run(cmd, timeout=20)
    except subprocess.TimeoutExpired as hung:
        stderr = hung.stderr.decode(errors="replace") if isinstance(hung.stderr, bytes) else hung.stderr or ""
        return subprocess.CompletedProcess(cmd, 124, "", stderr or "no answer within 20 s")


def run(cmd: list[str], *, cwd: Path | None = None, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def snakemake_on_slurm(workdir: Path, *args: str, limit: int = 240) -> subprocess.CompletedProcess:
    """The workflow through both profiles. SIGINT on overrun: snakemake then cancels its SLURM jobs (it ignores
    SIGTERM while remote jobs run); -k 60 is the last resort, and subprocess's timeout only guards `timeout`."""
    cmd = ["timeout", "-s", "INT", "-k", "60", str(limit), SNAKEMAKE, "--nocolor", *PROFILES,
           "--precommand", GPU_PROBE, *args]
    out = run(cmd, cwd=workdir, timeout=limit + 90)
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    return out


def slurm_jobs(workdir: Path) -> dict[str, dict[str, str]]:
    """rule -> {wildcards: jobid} from .snakemake/slurm_logs/rule_<rule>/<wildcards>/<jobid>.log."""
    jobs: dict[str, dict[str, str]] = {}
    for log in (workdir / ".snakemake/slurm_logs").glob("rule_*/*/*.log"):
        jobs.setdefault(log.parent.parent.name.removeprefix("rule_"), {})[log.parent.name] = log.stem
    return jobs


def job_log(workdir: Path, rule: str, wildcards: str) -> str:
    logs = list((workdir / f".snakemake/slurm_logs/rule_{rule}/{wildcards}").glob("*.log"))
    assert len(logs) == 1, logs
    return logs[0].read_text()


def job_gres(jobid: str) -> str:
    """The generic resources SLURM gave a job, e.g. 'gpu:1' (finished jobs stay listed: MinJobAge=600)."""
    out = run(["scontrol", "-d", "show", "job", jobid], timeout=30)
    assert out.returncode == 0, out.stderr
    match = re.search(r"\bJOB_GRES=(\S+)", out.stdout)
    return match.group(1) if match else ""


def assert_gpu_slurm_job(workdir: Path, rule: str, wildcards: str, submitted: str) -> None:
    jobid = slurm_jobs(workdir)[rule][wildcards]
    assert re.search(rf"\bSLURM jobid {jobid}\b", submitted), f"{rule}/{wildcards}: job {jobid} not in output"
    assert re.fullmatch(r"gpu(:\w+)?:1", job_gres(jobid)), f"{rule}/{wildcards}: GRES {job_gres(jobid)!r}"
    visible = re.findall(r"meds1-probe CUDA_VISIBLE_DEVICES=(\S+)", job_log(workdir, rule, wildcards))
    assert visible and visible[0] in ("0", "1"), f"{rule}/{wildcards}: CUDA_VISIBLE_DEVICES {visible}"


@pytest.fixture(scope="module")
def pristine_workdir(tmp_path_factory, tiny_model_dir, shared_data) -> Path:
    """The tiny two-experiment workflow (base: no training; rand: random curation + training), never run."""
    cfg = tiny_config(tiny_model_dir, sft_file=shared_data / "huatuogpt-o1_demo_data.json",
                      eval_file=shared_data / "med-s1_eval_data_samples.json")
    return make_workdir(tmp_path_factory.mktemp("slurm") / "pristine", results=tiny_results(), config=cfg,
                        workflow=TINY_WORKFLOW)


@pytest.fixture(scope="module")
def slurm_workdir(pristine_workdir) -> Path:
    return Path(shutil.copytree(pristine_workdir, pristine_workdir.with_name("on-slurm")))


@pytest.fixture(scope="module")
def local_run(pristine_workdir) -> Path:
    """The same workflow run locally (--cores 2), the reference the SLURM run must equal."""
    workdir = Path(shutil.copytree(pristine_workdir, pristine_workdir.with_name("local")))
    out = snakemake(workdir, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    return workdir


@pytest.fixture(scope="module")
def base_eval_on_slurm(cluster, slurm_workdir) -> str:
    """A base model's chain (one eval job); returns snakemake's output."""
    out = snakemake_on_slurm(slurm_workdir, "eval/base/metrics.json")
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def full_run_on_slurm(base_eval_on_slurm, slurm_workdir) -> str:
    """The rest of the workflow after the base eval: curate -> train -> eval(rand) on SLURM, plot locally."""
    out = snakemake_on_slurm(slurm_workdir, limit=420)
    return out.stdout + out.stderr


@pytest.mark.slurm
def test_base_model_eval_is_one_gpu_slurm_job(base_eval_on_slurm, slurm_workdir):
    assert {rule: set(w) for rule, w in slurm_jobs(slurm_workdir).items()} == {"eval": {"base"}}
    assert_gpu_slurm_job(slurm_workdir, "eval", "base", base_eval_on_slurm)
    metrics = json.loads((slurm_workdir / "eval/base/metrics.json").read_text())
    assert metrics["experiment"] == "base" and metrics["overall"]["n"] == 12  # 3 items x 4 sources


@pytest.mark.slurm
def test_full_workflow_runs_gpu_rules_as_slurm_jobs(full_run_on_slurm, slurm_workdir):
    jobs = slurm_jobs(slurm_workdir)
    assert {rule: set(w) for rule, w in jobs.items()} == {"curate": {"rand"}, "train": {"rand"},
                                                          "eval": {"base", "rand"}}  # plot and all run locally
    assert "gpu" not in job_gres(jobs["curate"]["rand"])  # a CPU job holds no GPU
    assert_gpu_slurm_job(slurm_workdir, "train", "rand", full_run_on_slurm)
    assert_gpu_slurm_job(slurm_workdir, "eval", "rand", full_run_on_slurm)
    assert (slurm_workdir / "results/plots/comparison.png").stat().st_size > 0


@pytest.mark.slurm
@pytest.mark.parametrize("exp", ["base", "rand"])
def test_slurm_outputs_equal_a_local_run(full_run_on_slurm, slurm_workdir, local_run, exp):
    # The tiny model is deterministic and decoding greedy: the cluster must change where jobs run, not what they give.
    for name in ("metrics.json", "generations.jsonl"):
        assert (slurm_workdir / "eval" / exp / name).read_text() == (local_run / "eval" / exp / name).read_text()


@pytest.mark.slurm
def test_forcing_eval_reruns_only_eval_jobs(full_run_on_slurm, slurm_workdir):
    assert planned_jobs(slurm_workdir, *PROFILES) == {}
    assert planned_jobs(slurm_workdir, *PROFILES, "-R", "eval") == {"eval": 2, "plot": 1, "all": 1}
