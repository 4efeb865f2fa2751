"""The cluster route: profiles/slurm (+ profiles/slurm-ci) on a real single-node SLURM, conda env files, and the
planned GPU counts reaching sbatch (--gpus=N --nodes=1, the profile's partition kept).

The SLURM tests need a running cluster (CI: `.ci/run` starts one with `.ci/start_slurm.sh`). By hand:

    eval "$(bash .ci/start_slurm.sh)"
    .venv/bin/pytest -q tests/test_slurm.py
    bash .ci/stop_slurm.sh

They are skipped only when the SLURM binaries are absent; installed binaries with no cluster answering is a failure.
"""
from __future__ import annotations

import json
import os
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
NEEDS = {"gpu", "gres", "mem_mb", "runtime", "tasks", "cpus_per_task"}  # planned per experiment, never in the profile
# Run (--precommand) in every SLURM job before Snakemake starts the rule there: prints the job's GPUs to its log.
# No `$` in it: the plugin puts the command inside sbatch --wrap="...", where the submitting shell would expand it.
GPU_PROBE = (f"{sys.executable} -c \"import os; print('meds1-probe CUDA_VISIBLE_DEVICES='"
             f" + os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))\"")


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# ---------------------------------------------------------------- profiles and env files (no cluster needed)

def test_slurm_profile_holds_site_settings_only():
    profile = load_yaml(REPO / "profiles/slurm/config.yaml")
    assert profile["executor"] == "slurm" and profile["jobs"] >= 1
    assert profile["slurm-status-command"] == "squeue"  # sacct hangs without slurmdbd
    assert profile["latency-wait"] >= 30 and profile["rerun-incomplete"] is True
    assert profile["software-deployment-method"] == "conda"
    assert "slurm_account" not in profile["default-resources"]
    rules = profile["set-resources"]
    for rule in (*GPU_RULES, "curate"):
        assert rules[rule]["nodes"] == 1 and not NEEDS & set(rules[rule]), rule  # GPUs/memory/time: the plan's
    assert "gpu_model" not in rules["curate"]  # gpu_model alone would give every curate job a GPU
    assert not {"plot", "all"} & set(rules)  # localrules


def test_ci_overlay_holds_only_timing_keys_and_no_conda():
    # A later --profile replaces whole top-level keys: anything else here would drop the base profile's requests.
    overlay = load_yaml(REPO / "profiles/slurm-ci/config.yaml")
    assert set(overlay) == CI_TIMING_KEYS | {"software-deployment-method"}
    assert overlay["software-deployment-method"] == "env-modules"  # no rule declares envmodules: nothing deployed
    assert overlay["latency-wait"] < load_yaml(REPO / "profiles/slurm/config.yaml")["latency-wait"]


def test_local_profile_asks_for_cpu_explicitly():
    local = load_yaml(REPO / "profiles/local/config.yaml")
    assert local["default-resources"] == {"allow_cpu": 1} and local["resources"]["gpu"] >= 1


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
        assert "python=3.11" in env["dependencies"] and "pip" in env["dependencies"], path
        assert env["channels"][0] == "conda-forge", path
        assert not any(str(r).startswith("-e") for r in pip_requirements(env)), path  # relative to a copy: no
        assert "PYTHONPATH" not in (REPO / path).read_text(), path  # nothing sets it; the env installs meds1


def test_every_env_installs_this_checkout_and_scripts_need_no_path_hack(tmp_path):
    """Snakemake runs <env>.post-deploy.sh inside each new env: it installs $MEDS1_SOURCE editable, so a rule's
    script and the processes it starts (accelerate's workers) import this checkout, with or without --directory."""
    for env in sorted((REPO / "envs").glob("*.yaml")):
        deploy = env.with_suffix(".post-deploy.sh")
        text = deploy.read_text()
        assert deploy.stat().st_mode & 0o111 and text.startswith("#!/usr/bin/env bash"), deploy
        assert 'pip install --no-deps --editable "$MEDS1_SOURCE"' in text, deploy
    assert 'os.environ["MEDS1_SOURCE"] = workflow.basedir' in (REPO / "rules/common.smk").read_text()
    # Without MEDS1_SOURCE the script stops with a message instead of installing something else.
    done = subprocess.run(["bash", str(REPO / "envs/train.post-deploy.sh")], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "MEDS1_SOURCE"})
    assert done.returncode != 0 and "MEDS1_SOURCE is not set" in done.stderr
    for script in (REPO / "scripts").glob("*.py"):
        assert "sys.path" not in script.read_text(), script


@pytest.mark.parametrize("name, torch, needs", [
    ("curate", "torch>=2.6,<2.14",
     {"torch", "transformers", "datasets", "sentence-transformers", "google-genai", "gguf", "filelock"}),
    ("train", "torch>=2.13,<2.14",  # FSDP with trl's fused LM head (meds1.sft.fsdp.require_torch_for_fsdp)
     {"torch", "transformers", "datasets", "trl", "accelerate", "jsonschema"}),
])
def test_torch_envs_pin_torch_under_pip(name, torch, needs):
    pip = pip_requirements(load_yaml(REPO / f"envs/{name}.yaml"))
    assert torch in pip  # a bare torch pulls the newest CUDA build, incompatible with the stack
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


def run(cmd: list[str], *, cwd: Path | None = None, timeout: int, env: dict | None = None) \
        -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def snakemake_on_slurm(workdir: Path, *args: str, limit: int = 240) -> subprocess.CompletedProcess:
    """The workflow through both profiles. SIGINT on overrun: snakemake then cancels its SLURM jobs (it ignores
    SIGTERM while remote jobs run); -k 60 is the last resort, and subprocess's timeout only guards `timeout`.
    ``sbatch`` is the recording wrapper of ``record_sbatch``; MEDS1_ALLOW_CPU=1 (conftest) reaches the jobs
    (--export=ALL): the CI node's GPUs are fake, so the GPU rules run on CPU, as asked."""
    cmd = ["timeout", "-s", "INT", "-k", "60", str(limit), SNAKEMAKE, "--nocolor", *PROFILES,
           "--precommand", GPU_PROBE, *args]
    env = {**os.environ, "PATH": f"{workdir / 'sbatch-recorder'}{os.pathsep}{os.environ['PATH']}"}
    out = run(cmd, cwd=workdir, timeout=limit + 90, env=env)
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


def assert_gpu_slurm_job(workdir: Path, rule: str, wildcards: str, submitted: str, gpus: int = 1) -> None:
    jobid = slurm_jobs(workdir)[rule][wildcards]
    assert re.search(rf"\bSLURM jobid {jobid}\b", submitted), f"{rule}/{wildcards}: job {jobid} not in output"
    assert re.fullmatch(rf"gpu(:\w+)?:{gpus}(\(IDX:\S+\))?", job_gres(jobid)), \
        f"{rule}/{wildcards}: GRES {job_gres(jobid)!r}"
    visible = re.findall(r"meds1-probe CUDA_VISIBLE_DEVICES=(\S+)", job_log(workdir, rule, wildcards))
    assert visible and len(visible[0].split(",")) == gpus, f"{rule}/{wildcards}: CUDA_VISIBLE_DEVICES {visible}"


def sbatch_calls(workdir: Path) -> dict[tuple[str, str], str]:
    """(rule, exp) -> the sbatch command line the plugin ran, as the recording wrapper saw it."""
    calls = {}
    for line in (workdir / "sbatch-recorder" / "calls.log").read_text().splitlines():
        found = re.search(r"slurm_logs/rule_(\w+)/([^/]+)/%j\.log", line)
        if found:
            calls[found.group(1), found.group(2)] = line.split(" --wrap=")[0]
    return calls


def record_sbatch(workdir: Path) -> None:
    """An `sbatch` first on PATH that writes its arguments to calls.log and hands over to the real one."""
    real = shutil.which("sbatch")
    folder = workdir / "sbatch-recorder"
    folder.mkdir()
    (folder / "sbatch").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{folder}/calls.log"\nexec {real} "$@"\n')
    (folder / "sbatch").chmod(0o755)


def as_a_site(workdir: Path) -> None:
    """Fill in the slurm profile's site keys as a site would (the CI cluster has a partition called gpu)."""
    path = workdir / "profiles/slurm/config.yaml"
    profile = load_yaml(path)
    for rule in GPU_RULES:
        profile["set-resources"][rule]["slurm_partition"] = "gpu"
    path.write_text(yaml.safe_dump(profile))


def wide_results() -> dict:
    """tiny_results plus 'wide': rand's recipe on a model whose config.json entry says its jobs need 2 GPUs."""
    results = tiny_results()
    wide = json.loads(json.dumps(results["experiments"]["rand"]))
    wide["config"]["model_key"] = "tiny-wide"
    wide["description"] = "tiny random, two GPUs per job"
    results["experiments"]["wide"] = wide
    return results


@pytest.fixture(scope="module")
def pristine_workdir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny workflow (base: no training; rand: random curation + training; wide: the same on a model planned
    for 2 GPUs), never run, with a site's partition in its slurm profile."""
    cfg = tiny_config(tiny_model_dir)  # the project's own demo data
    cfg["models"]["tiny-wide"] = {**cfg["models"]["tiny"], "resources": {"train": {"gpu": 2}, "eval": {"gpu": 2}}}
    workflow = {**TINY_WORKFLOW, "experiments": [*TINY_WORKFLOW["experiments"], "wide"]}
    workdir = make_workdir(tmp_path_factory.mktemp("slurm") / "pristine", results=wide_results(), config=cfg,
                           workflow=workflow)
    as_a_site(workdir)
    return workdir


@pytest.fixture(scope="module")
def slurm_workdir(pristine_workdir) -> Path:
    workdir = Path(shutil.copytree(pristine_workdir, pristine_workdir.with_name("on-slurm")))
    record_sbatch(workdir)
    return workdir


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
    """The rest of the workflow after the base eval: curate -> train -> eval of rand and wide on SLURM, plot
    locally."""
    out = snakemake_on_slurm(slurm_workdir, limit=540)
    return out.stdout + out.stderr


@pytest.mark.slurm
def test_base_model_eval_is_one_gpu_slurm_job(base_eval_on_slurm, slurm_workdir):
    assert {rule: set(w) for rule, w in slurm_jobs(slurm_workdir).items()} == {"eval": {"base"}}
    assert_gpu_slurm_job(slurm_workdir, "eval", "base", base_eval_on_slurm)
    metrics = json.loads((slurm_workdir / "eval/base/metrics.json").read_text())
    assert metrics["experiment"] == "base" and metrics["overall"]["n"] == 9  # 3 items x 3 sources


@pytest.mark.slurm
def test_full_workflow_runs_gpu_rules_as_slurm_jobs(full_run_on_slurm, slurm_workdir):
    jobs = slurm_jobs(slurm_workdir)
    assert {rule: set(w) for rule, w in jobs.items()} == {"curate": {"rand", "wide"}, "train": {"rand", "wide"},
                                                          "eval": {"base", "rand", "wide"}}  # plot, all: local
    assert "gpu" not in job_gres(jobs["curate"]["rand"])  # a CPU job holds no GPU
    assert_gpu_slurm_job(slurm_workdir, "train", "rand", full_run_on_slurm)
    assert_gpu_slurm_job(slurm_workdir, "eval", "rand", full_run_on_slurm)
    assert_gpu_slurm_job(slurm_workdir, "train", "wide", full_run_on_slurm, gpus=2)
    assert_gpu_slurm_job(slurm_workdir, "eval", "wide", full_run_on_slurm, gpus=2)
    assert (slurm_workdir / "results/plots/comparison.png").stat().st_size > 0


@pytest.mark.slurm
def test_sbatch_lines_carry_each_experiments_gpus_one_node_and_the_sites_partition(full_run_on_slurm,
                                                                                  slurm_workdir):
    """The rules' planned resources and the profile's site settings meet in one sbatch line per job."""
    calls = sbatch_calls(slurm_workdir)
    for (rule, exp), gpus in {("train", "rand"): 1, ("eval", "rand"): 1, ("eval", "base"): 1,
                              ("train", "wide"): 2, ("eval", "wide"): 2}.items():
        line = calls[rule, exp]
        assert f" --gpus={gpus}" in line and " --nodes=1" in line and " -p gpu" in line, line
        assert " --cpus-per-gpu=8" in line and " --mem " in line and " -t " in line, line
        assert "--ntasks" not in line, line  # one task: accelerate starts the processes
    curate = calls["curate", "rand"]
    assert "--gpus" not in curate and " --nodes=1" in curate and " -p gpu" not in curate, curate
    # the training job saw its two GPUs and, finding no CUDA behind the fake GRES, ran on CPU as the run asked
    log = (slurm_workdir / "logs/train/wide.log").read_text()
    assert "no usable GPU (CUDA_VISIBLE_DEVICES='0,1'" in log and "running on CPU as this run asked" in log


@pytest.mark.slurm
@pytest.mark.parametrize("exp", ["base", "rand"])
def test_slurm_outputs_equal_a_local_run(full_run_on_slurm, slurm_workdir, local_run, exp):
    # The tiny model is deterministic and decoding greedy: the cluster must change where jobs run, not what they give.
    for name in ("metrics.json", "generations.jsonl"):
        assert (slurm_workdir / "eval" / exp / name).read_text() == (local_run / "eval" / exp / name).read_text()


@pytest.mark.slurm
def test_forcing_eval_reruns_only_eval_jobs(full_run_on_slurm, slurm_workdir):
    assert planned_jobs(slurm_workdir, *PROFILES) == {}
    assert planned_jobs(slurm_workdir, *PROFILES, "-R", "eval") == {"eval": 3, "plot": 1, "all": 1}


@pytest.mark.slurm
def test_dry_run_of_the_repo_registry_with_the_slurm_profile(cluster, tmp_path):
    """llama3.1:8b trains on 4 GPUs and QwQ-32B on 8, each on one node, in the partition the profile names."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "eval_data.json").write_text("{}")
    workdir = make_workdir(tmp_path / "w", results=json.loads((REPO / "results.json").read_text()),
                           config=json.loads((REPO / "config.json").read_text()))
    as_a_site(workdir)
    out = snakemake(workdir, "eval/medqa-1k-random/metrics.json", "eval/medqa-1k-random-qwq-32b/metrics.json",
                    *PROFILES, "-n", env={"MEDS1_DATA": str(tmp_path / "data")}, timeout=120)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    from test_plan import dry_run_resources

    jobs = dry_run_resources(out.stdout)
    for (rule, exp), gpus in {("train", "medqa-1k-random"): "4", ("train", "medqa-1k-random-qwq-32b"): "8",
                              ("eval", "medqa-1k-random"): "1", ("eval", "medqa-1k-random-qwq-32b"): "2"}.items():
        assert (jobs[rule, exp]["gpu"], jobs[rule, exp]["nodes"], jobs[rule, exp]["slurm_partition"]) == \
            (gpus, "1", "gpu"), (rule, exp, jobs[rule, exp])
