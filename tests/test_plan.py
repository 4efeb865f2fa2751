"""The plan (meds1.plan): per-job GPUs, memory, disk and time from the model's shape and the training settings,
checked against figures computed by hand for the real Llama-3.1-8B, Qwen2.5-7B and QwQ-32B configs
(tests/data/model_configs); the registry's resources per experiment; the parse-time refusal at `snakemake -n`."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from meds1 import plan
from meds1.errors import MedS1Error
from meds1.sft.config import TrainSettings
from workflow import REPO, make_workdir, snakemake, tiny_config

CONFIGS = Path(__file__).resolve().parent / "data" / "model_configs"
GIB = 2**30


def size_of(name: str) -> plan.ModelSize:
    return plan.model_size(name, {"local_path": str(CONFIGS / name)})


def settings(**params) -> TrainSettings:
    return TrainSettings.from_block({"batch_size": 2, "total_batch_size": 128, "max_length": 8192, **params})


def near(value: float, hand: float) -> bool:
    return abs(value - hand) <= 0.10 * hand


# ---------------------------------------------------------------------------------------------- model sizes
@pytest.mark.parametrize("name, published", [
    ("llama-3.1-8b", 8_030_261_248), ("qwen2.5-7b", 7_615_616_512), ("qwq-32b", 32_763_876_352)])
def test_parameter_counts_from_config_json_match_the_published_ones(name, published):
    size = size_of(name)
    assert size.params == published and size.source.endswith(f"{name}/config.json")


def test_size_from_a_config_json_entry_or_params_b():
    entry = json.loads((CONFIGS / "llama-3.1-8b" / "config.json").read_text())
    assert plan.model_size("m", entry).params == 8_030_261_248  # the same keys, copied into config.json
    assert plan.model_size("m", {"params_b": 8.0}).params == 8_000_000_000
    assert plan.model_size("m", {"params_b": 8.0}).arch is None
    assert plan.model_size("m", {"hf_path": "org/m"}).params is None


# ---------------------------------------------------------------------------------------------- training memory
# By hand, Llama-3.1-8B (h 4096, 32 layers, 32 heads / 8 KV heads of 128, i 14336, V 128256, untied), fp32 master
# weights, 4 GPUs, micro-batch 2 x 8192 tokens, gradient checkpointing:
#   weights+grads+AdamW: 16 B x 8.03e9 / 4                         = 32.12e9 B = 29.9 GiB
#   gathered bf16: embeddings+head 1.05e9 + 2 layers of 218.1e6, x2 B, + one layer's bf16 grads = 3.41e9 B = 3.2 GiB
#   checkpointed layer inputs: 32 x 16384 tokens x 4096 x 2 B     =  4.29e9 B = 4.0 GiB
#   one layer recomputed: 16384 x (18 x 4096 + 4 x 1024 + 8 x 14336) B = 3.15e9 B = 2.9 GiB
#   loss: 16384 x 128256 x 10 B                                   = 21.01e9 B = 19.6 GiB
#   CUDA context and buffers                                                   2.0 GiB   -> 61.6 GiB
LLAMA_8B_4GPU_GIB = (32.12e9 + 3.41e9 + 4.29e9 + 3.15e9 + 21.01e9) / GIB + 2
# Qwen2.5-7B (h 3584, 28 layers, 28 / 4 KV heads of 128, i 18944, V 152064, qkv bias), same settings:
#   16 x 7.616e9 / 4 = 30.46e9; gathered 2 x (1.090e9 + 2 x 233.1e6) + 2 x 233.1e6 = 3.58e9;
#   inputs 28 x 16384 x 3584 x 2 = 3.29e9; one layer 16384 x (18 x 3584 + 4 x 512 + 8 x 18944) = 3.57e9;
#   loss 16384 x 152064 x 10 = 24.91e9                                               -> 63.3 GiB
QWEN_7B_4GPU_GIB = (30.46e9 + 3.58e9 + 3.29e9 + 3.57e9 + 24.91e9) / GIB + 2


@pytest.mark.parametrize("name, hand", [("llama-3.1-8b", LLAMA_8B_4GPU_GIB), ("qwen2.5-7b", QWEN_7B_4GPU_GIB)])
def test_train_memory_per_gpu_matches_the_hand_computation(name, hand):
    parts = plan.train_memory(size_of(name).arch, gpus=4, micro_batch=2, seq=8192, weights_dtype="float32",
                              checkpointing=True)
    assert near(sum(parts.values()), hand)


def test_without_checkpointing_activations_of_every_layer_are_kept():
    # Llama-3.1-8B: 32 layers x 16384 tokens x 192,512 B = 100.9e9 B = 94 GiB of activations
    parts = plan.train_memory(size_of("llama-3.1-8b").arch, gpus=4, micro_batch=2, seq=8192,
                              weights_dtype="float32", checkpointing=False)
    assert near(parts["activations"], 32 * 16384 * 192_512 / GIB)


@pytest.mark.parametrize("name, gpus, gib", [("llama-3.1-8b", 4, LLAMA_8B_4GPU_GIB), ("qwen2.5-7b", 4, QWEN_7B_4GPU_GIB)])
def test_the_plan_picks_the_fewest_gpus_that_fit_and_turns_checkpointing_on(name, gpus, gib):
    job = plan.plan_train("e", name, size_of(name), settings(), site=plan.Site(), rows=900)
    assert (job.gpus, job.checkpointing, job.fits) == (gpus, True, True)
    assert near(job.gpu_gib, gib)
    # host RAM: the fp32 weights once (rank 0 loads them) + 6 GiB per process; disk: 2 x (fp32 weights + AdamW) +
    # the bf16 final model; time: 8 x P x 900 rows x 1000 tokens x 3 epochs at 300 TFLOP/s
    params = size_of(name).params
    assert near(job.host_gib, 4 * params / GIB + 4 * 6)
    assert near(job.disk_gib, (2 * 12 * params + 2 * params) / GIB)
    assert near(job.gpu_hours, 8 * params * 900 * 1000 * 3 / 300e12 / 3600)
    assert job.resources["gpu"] == gpus and job.resources["mem_mb"] >= 1.2 * job.host_gib * 1024


def test_32b_fits_one_node_only_with_bf16_weights_as_s1_loads_them():
    size = size_of("qwq-32b")
    s1 = settings(batch_size=1, total_batch_size=16, weights_dtype="bfloat16")
    job = plan.plan_train("e", "qwq", size, s1, site=plan.Site(), rows=900)
    # 8 B x 32.76e9 / 8 = 32.8e9; gathered 2 x (1.557e9 + 2 x 487.6e6) + 2 x 487.6e6 = 6.04e9; inputs 64 x 8192 x
    # 5120 x 2 = 5.37e9; one layer 8192 x (18 x 5120 + 4 x 1024 + 8 x 27648) = 2.60e9; loss 8192 x 152064 x 10 = 12.46e9
    assert (job.gpus, job.fits) == (8, True)
    assert near(job.gpu_gib, (32.76e9 + 6.04e9 + 5.37e9 + 2.60e9 + 12.46e9) / GIB + 2)
    fp32 = plan.plan_train("e", "qwq", size, settings(batch_size=1, total_batch_size=16), site=plan.Site(), rows=900)
    assert not fp32.fits and fp32.gpus == 8  # 16 B x 32.8e9 / 8 = 61 GiB of state alone
    assert "weights_dtype bfloat16" in plan.refusal(fp32, settings())


def test_a_given_gpu_count_is_checked_not_changed():
    job = plan.plan_train("e", "llama", size_of("llama-3.1-8b"), settings(), site=plan.Site(), rows=None,
                          needs={"gpu": 1, "runtime": "24h"})
    assert (job.gpus, job.fits, job.resources["gpu"], job.resources["runtime"]) == (1, False, 1, 24 * 60)


def test_smaller_gpus_need_more_of_them():
    site = plan.Site(gpu_memory_gib=40)  # 36.8 GiB usable
    one = plan.plan_train("e", "llama", size_of("llama-3.1-8b"), settings(batch_size=1), site=site, rows=None)
    assert (one.gpus, one.fits) == (8, True)  # state 15 + gathered 3.2 + activations 3.5 + loss 9.8 + 2 GiB
    two = plan.plan_train("e", "llama", size_of("llama-3.1-8b"), settings(), site=site, rows=None)
    assert (two.gpus, two.fits) == (8, False)  # micro-batch 2 doubles the loss's 9.8 GiB: a smaller batch_size


# ---------------------------------------------------------------------------------------------- eval
@pytest.mark.parametrize("name, gpus", [("llama-3.1-8b", 1), ("qwen2.5-7b", 1), ("qwq-32b", 2)])
def test_eval_gpus_hold_the_bf16_weights_in_half_of_what_vllm_may_use(name, gpus):
    job = plan.plan_generation("e", "eval", name, size_of(name), site=plan.Site(), max_new_tokens=2048)
    assert (job.gpus, job.fits) == (gpus, True)
    assert near(job.gpu_gib, 2 * size_of(name).params / gpus / GIB)


def test_eval_tensor_parallel_sizes_divide_the_attention_heads():
    qwen = size_of("qwen2.5-7b")  # 14.2 GiB of bf16 weights, 28 query / 4 KV heads: 1, 2 or 4 GPUs, never 8
    small = plan.Site(gpu_memory_gib=12)  # 8.8 GiB for vLLM, half of it for weights: 4 GPUs
    assert plan.plan_generation("e", "eval", "q", qwen, site=small, max_new_tokens=512).gpus == 4
    tiny = plan.plan_generation("e", "eval", "q", qwen, site=plan.Site(gpu_memory_gib=6), max_new_tokens=512)
    assert (tiny.gpus, tiny.fits) == (4, False)  # 3.4 GiB each holds no quarter of 14.2; 28 heads never split 8 ways
    assert plan._minutes("90m") == 90 and plan._minutes("1d") == 1440 and plan._minutes(30) == 30


# ---------------------------------------------------------------------------------------------- the registry
@pytest.fixture(scope="module")
def repo_registry():
    import yaml

    from meds1.registry import load_registry

    return load_registry(yaml.safe_load((REPO / "workflow_config.yaml").read_text()), REPO)


def test_the_repo_registry_sends_8b_and_7b_to_4_gpus_and_32b_to_8(repo_registry):
    gpus = {(name, stage): repo_registry.resources(name, stage)["gpu"]
            for name in ("medqa-1k-random", "medqa-1k-random-qwen2.5-7b", "medqa-1k-random-qwq-32b")
            for stage in ("curate", "train", "eval")}
    assert gpus == {("medqa-1k-random", "curate"): 0, ("medqa-1k-random", "train"): 4,
                    ("medqa-1k-random", "eval"): 1,
                    ("medqa-1k-random-qwen2.5-7b", "curate"): 0, ("medqa-1k-random-qwen2.5-7b", "train"): 4,
                    ("medqa-1k-random-qwen2.5-7b", "eval"): 1,
                    ("medqa-1k-random-qwq-32b", "curate"): 0, ("medqa-1k-random-qwq-32b", "train"): 8,
                    ("medqa-1k-random-qwq-32b", "eval"): 2}
    assert repo_registry.resources("demo-random", "train")["gpu"] == 1  # the demo plans one GPU (or CPU, asked)


def test_the_plans_checkpointing_decision_reaches_the_train_spec(repo_registry):
    assert repo_registry.spec("medqa-1k-random", "train")["training_params"]["gradient_checkpointing"] is True
    assert repo_registry.spec("demo-random", "train")["training_params"]["gradient_checkpointing"] is False


def test_plan_command_prints_every_job(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert plan.main(["medqa-1k-random*", "--stages", "train,eval"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.split("\n\n")[0].splitlines()
    assert header.split()[:5] == ["experiment", "job", "model", "GPUs", "GiB/GPU"]
    train = next(r.split() for r in rows if r.startswith("medqa-1k-random ") and " train " in r)
    assert train[3] == "4" and near(float(train[4]), LLAMA_8B_4GPU_GIB) and train[6] == "on"
    assert any(r.startswith("medqa-1k-random-qwq-32b ") and r.split()[3] == "8" for r in rows)
    assert "80 GiB per GPU" in out


def test_plan_command_lists_what_does_not_fit_and_fails(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("MEDS1_GPU_MEMORY_GIB", "16")
    assert plan.main(["medqa-1k-random", "--stages", "train"]) == 1
    assert re.search(r"medqa-1k-random\s+train .* NO", capsys.readouterr().out)


# ---------------------------------------------------------------------------------------------- snakemake -n
def test_too_small_allocation_is_refused_at_dry_run_with_one_line(tmp_path, tiny_model_dir):
    """An 8B model (its real config.json) pinned to 1 GPU by config.json resources: snakemake -n stops at parse time
    with one line naming the experiment, the need and the limit."""
    cfg = tiny_config(tiny_model_dir)
    cfg["models"]["llama"] = {"hf_path": "meta-llama/Llama-3.1-8B-Instruct", "local_path": str(CONFIGS / "llama-3.1-8b"),
                              "max_length": 8192, "resources": {"train": {"gpu": 1}}}
    results = {"experiments": {"big": {"description": "8B on one GPU", "config": {
        "model_key": "llama", "curation": {"method": "random", "n_samples": 8},
        "training_params": {"batch_size": 2, "total_batch_size": 16},
        "datasets": {"curate": "sft", "eval": "evalset"}}}}}
    wd = make_workdir(tmp_path / "w", results=results, config=cfg, workflow={"curation_llm": "offline-rules"})
    out = snakemake(wd, "-n")
    assert out.returncode != 0
    errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in out.stderr
    assert errors[0].startswith("error: results.json: experiment 'big': key 'config.training_params': train needs ~")
    assert re.search(r"needs ~1\d\d GiB per GPU on 1 GPU\(s\).* the 74 GiB usable of a 80 GiB GPU", errors[0])


def dry_run_resources(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """(rule, exp) -> resources, from the job blocks of `snakemake -n`."""
    found = {}
    for block in re.split(r"^(?=(?:local)?rule \w+:)", text, flags=re.M):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        exp = re.search(r"wildcards: exp=(\S+)", block)
        res = re.search(r"resources: (.*)", block)
        if rule and exp and res:
            found[rule.group(1), exp.group(1)] = dict(kv.split("=", 1) for kv in res.group(1).split(", "))
    return found


def test_dry_run_of_the_repo_registry_asks_each_experiment_for_its_gpus(tmp_path):
    """The rules take gpu/mem_mb/runtime from the plan per experiment: 8B trains on 4 GPUs, 32B on 8."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "eval_data.json").write_text("{}")
    wd = make_workdir(tmp_path / "w", results=json.loads((REPO / "results.json").read_text()),
                      config=json.loads((REPO / "config.json").read_text()))
    out = snakemake(wd, "-n", "eval/medqa-1k-random/metrics.json", "eval/medqa-1k-random-qwq-32b/metrics.json",
                    env={"MEDS1_DATA": str(tmp_path / "data")})
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = dry_run_resources(out.stdout)
    assert jobs["train", "medqa-1k-random"]["gpu"] == "4"
    assert jobs["train", "medqa-1k-random-qwq-32b"]["gpu"] == "8"
    assert (jobs["eval", "medqa-1k-random"]["gpu"], jobs["eval", "medqa-1k-random-qwq-32b"]["gpu"]) == ("1", "2")
    assert jobs["curate", "medqa-1k-random"]["gpu"] == "0"
    assert int(jobs["train", "medqa-1k-random-qwq-32b"]["mem_mb"]) > int(jobs["train", "medqa-1k-random"]["mem_mb"])


def test_unknown_model_size_keeps_the_defaults():
    job = plan.plan_train("e", "m", plan.ModelSize(None, None, "unknown"), settings(), site=plan.Site(), rows=900)
    assert job.resources == plan.DEFAULT_NEEDS["train"] and job.fits and job.checkpointing is None
    assert "add its architecture or params_b" in job.note


def test_bad_site_variables_are_one_line(monkeypatch):
    monkeypatch.setenv("MEDS1_GPU_MEMORY_GIB", "eighty")
    with pytest.raises(MedS1Error, match="MEDS1_GPU_MEMORY_GIB"):
        plan.Site.from_env()
