"""The plan: what every curate, train and eval job needs before anything is submitted, and whether it fits.

    python -m meds1.plan                          # every experiment in results.json
    python -m meds1.plan medqa-1k-random 'qwq*'   # some (names or glob patterns)
    python -m meds1.plan --gpu-memory-gib 40      # as on a site with 40 GiB GPUs

For each job: GPUs, estimated peak GPU memory per GPU, host RAM, checkpoint disk and rough GPU-hours, flagging what
will not fit. The same arithmetic runs when the Snakefile is parsed (``settle``, called by the registry): the rules
take their ``resources:`` (gpu, mem_mb, runtime) from it, so one ``snakemake --profile slurm`` run sends an 8B
experiment to 4 GPUs and a 32B one to 8, and ``snakemake -n`` refuses a train job that cannot fit with one line.

Where the numbers come from. The model's size: its entry in config.json (hidden_size, num_hidden_layers,
num_attention_heads, num_key_value_heads, intermediate_size, vocab_size, tie_word_embeddings, attention_bias: the
keys of its own config.json), else the config.json in its local folder, else ``params_b`` (weights only). A model entry's
``resources: {train|eval|curate: {gpu, mem_mb, runtime}}`` overrides what is derived. The site: GPUs of
``MEDS1_GPU_MEMORY_GIB`` (80) GiB, at most ``MEDS1_GPUS_PER_NODE`` (8) per job (``nodes: 1``), training at
``MEDS1_GPU_TFLOPS`` (300) achieved bf16 TFLOP/s per GPU.

Training memory per GPU, FSDP full shard over N GPUs, micro-batch b, sequence s = max_length (the worst case),
P parameters, hidden h, L layers, intermediate i, KV width k (= KV heads x head dim), vocabulary V; bytes:
- sharded state: P x 16 / N for ``weights_dtype: float32`` (fp32 weights 4 + fp32 grads 4 + AdamW moments 8),
  P x 8 / N for ``bfloat16`` (2 + 2 + 4);
- gathered for compute (bf16): 2 x (root + 2 layers): the root (embeddings, head, final norm) stays gathered for the
  whole step, a layer and the prefetched next one; plus their bf16 gradients before reduce-scatter (2 x layer);
- activations saved for backward, bf16, per token per layer: 18h + 4k + 8i (norm inputs in fp32, q/k/v, attention
  and projection inputs, four SwiGLU tensors; flash/SDPA attention keeps no s x s matrix). With gradient
  checkpointing: only each layer's input (2h per token per layer) plus one layer recomputed in full;
- loss: b x s x V x 10 (bf16 logits, their fp32 copy, fp32 log-softmax kept for backward);
- 2 GiB for the CUDA context and communication buffers; the sum must stay under 92 % of the GPU (fragmentation).
Host RAM: the weights once (rank 0 loads them, the others receive them) or the bf16 gather of the final model,
whichever is larger, plus 6 GiB per process. Checkpoint disk: ``keep_checkpoints`` x (weights + AdamW moments) + the
bf16 final model. GPU-hours: (6 + 2 when recomputing) x P x tokens, tokens = training rows x min(max_length, 1,000
tokens per example) x epochs.

Eval (vLLM in bf16): the fewest GPUs (tensor parallel size dividing the attention heads) holding the weights in half
of what vLLM may use (``gpu_memory_utilization`` 0.9); the rest is KV cache, reported as tokens it can hold.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from meds1.errors import MedS1Error
from meds1.plugins import STAGES
from meds1.sft.config import effective_batch

GIB = 2**30
STATE_BYTES = {"float32": 16, "bfloat16": 8}        # weights + grads + AdamW moments, per parameter
CHECKPOINT_BYTES = {"float32": 12, "bfloat16": 6}   # weights + AdamW moments, per parameter
LOAD_BYTES = {"float32": 4, "bfloat16": 2}
LOGIT_BYTES = 10
CUDA_OVERHEAD_GIB = 2.0
USABLE_SHARE = 0.92               # of a GPU's memory, for the allocator's fragmentation
VLLM_MEMORY_SHARE = 0.9           # vLLM's default gpu_memory_utilization
HOST_GIB_PER_PROCESS = 6.0
TOKENS_PER_EXAMPLE = 1000         # a HuatuoGPT-o1 SFT row (question, reasoning, answer) is roughly this long
EVAL_PROMPT_TOKENS = 1024         # question + options + template, generously
GPU_COUNTS = (1, 2, 4, 8, 16)
# What a job needs when nothing in the plan says otherwise (runtime in minutes).
DEFAULT_NEEDS = {"curate": {"gpu": 0, "mem_mb": 8000, "runtime": 12 * 60},
                 "train": {"gpu": 1, "mem_mb": 64000, "runtime": 12 * 60},
                 "eval": {"gpu": 1, "mem_mb": 32000, "runtime": 4 * 60}}


@dataclass(frozen=True)
class Site:
    gpu_memory_gib: float = 80.0
    gpus_per_node: int = 8
    gpu_tflops: float = 300.0

    @classmethod
    def from_env(cls) -> "Site":
        return _site_from_env(os.environ.get("MEDS1_GPU_MEMORY_GIB"), os.environ.get("MEDS1_GPUS_PER_NODE"),
                              os.environ.get("MEDS1_GPU_TFLOPS"))


@lru_cache(maxsize=8)
def _site_from_env(memory, per_node, tflops) -> Site:
    try:
        return Site(float(memory or Site.gpu_memory_gib), int(per_node or Site.gpus_per_node),
                    float(tflops or Site.gpu_tflops))
    except ValueError as err:
        raise MedS1Error(f"MEDS1_GPU_MEMORY_GIB / MEDS1_GPUS_PER_NODE / MEDS1_GPU_TFLOPS must be numbers ({err})")\
            from None


@dataclass(frozen=True)
class Architecture:
    """A decoder-only transformer's shape, in the names of a Hugging Face config.json."""
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    head_dim: int | None = None
    qkv_bias: bool = False

    @classmethod
    def from_config(cls, config: dict) -> "Architecture":
        heads = config["num_attention_heads"]
        return cls(config["hidden_size"], config["num_hidden_layers"], heads,
                   config.get("num_key_value_heads") or heads, config["intermediate_size"], config["vocab_size"],
                   bool(config.get("tie_word_embeddings", False)), config.get("head_dim"),
                   bool(config.get("attention_bias", config.get("model_type") == "qwen2")))

    @property
    def q_width(self) -> int:
        return self.num_attention_heads * (self.head_dim or self.hidden_size // self.num_attention_heads)

    @property
    def kv_width(self) -> int:
        return self.num_key_value_heads * (self.head_dim or self.hidden_size // self.num_attention_heads)

    @property
    def layer_params(self) -> int:
        h, q, kv = self.hidden_size, self.q_width, self.kv_width
        attention = h * q + 2 * h * kv + q * h + ((q + 2 * kv) if self.qkv_bias else 0)
        return attention + 3 * h * self.intermediate_size + 2 * h

    @property
    def root_params(self) -> int:
        embeddings = self.vocab_size * self.hidden_size
        return embeddings * (1 if self.tie_word_embeddings else 2) + self.hidden_size

    @property
    def params(self) -> int:
        return self.num_hidden_layers * self.layer_params + self.root_params

    def activation_bytes_per_token_layer(self) -> int:
        return 18 * self.hidden_size + 4 * self.kv_width + 8 * self.intermediate_size


@dataclass(frozen=True)
class ModelSize:
    params: int | None
    arch: Architecture | None
    source: str           # where the numbers came from


@dataclass(frozen=True)
class JobPlan:
    experiment: str
    stage: str
    model: str
    gpus: int
    gpu_gib: float | None          # estimated peak per GPU
    limit_gib: float
    host_gib: float | None
    disk_gib: float | None
    gpu_hours: float | None
    resources: dict                # what the rule asks for: gpu, mem_mb, runtime (minutes)
    fits: bool = True
    checkpointing: bool | None = None
    note: str = ""
    parts: dict = dataclasses.field(default_factory=dict)  # GiB by component


# ------------------------------------------------------------------------------------------------ model size
ARCHITECTURE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")


def model_size(key: str, entry: dict, base_dir: Path = Path(".")) -> ModelSize:
    """The model's parameter count and shape: the entry's own architecture keys (those of its config.json), the
    config.json in its local folder, or ``params_b``."""
    if all(entry.get(k) for k in ARCHITECTURE_KEYS):
        arch = Architecture.from_config(entry)
        return ModelSize(arch.params, arch, f"config.json models.{key}")
    local = entry.get("local_path")
    if local:
        found = _read_model_config(str(base_dir / local / "config.json"))
        if found is not None:
            arch = Architecture.from_config(found)
            return ModelSize(arch.params, arch, f"{local}/config.json")
    if entry.get("params_b"):
        return ModelSize(int(entry["params_b"] * 1e9), None, f"config.json models.{key}.params_b")
    return ModelSize(None, None, "unknown")


@lru_cache(maxsize=64)
def _read_model_config(path: str) -> dict | None:
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config.get("text_config", config) if "hidden_size" not in config else config


# ------------------------------------------------------------------------------------------------ training
def train_memory(arch: Architecture, *, gpus: int, micro_batch: int, seq: int, weights_dtype: str,
                 checkpointing: bool) -> dict[str, float]:
    """Peak GPU memory of one training process, in GiB by component (see the module docstring)."""
    tokens = micro_batch * seq
    per_layer = arch.activation_bytes_per_token_layer()
    if checkpointing:
        activations = arch.num_hidden_layers * tokens * 2 * arch.hidden_size + tokens * per_layer
    else:
        activations = arch.num_hidden_layers * tokens * per_layer
    return {
        "sharded state": arch.params * STATE_BYTES[weights_dtype] / gpus / GIB,
        "gathered weights": (2 * (arch.root_params + 2 * arch.layer_params) + 2 * arch.layer_params) / GIB,
        "activations": activations / GIB,
        "loss": tokens * arch.vocab_size * LOGIT_BYTES / GIB,
        "overhead": CUDA_OVERHEAD_GIB,
    }


def plan_train(experiment: str, model: str, size: ModelSize, settings, *, site: Site, rows: int | None,
               needs: dict | None = None) -> JobPlan:
    """GPUs (given, or the fewest that fit), memory, RAM, disk and time of one training job."""
    needs, limit = needs or {}, site.gpu_memory_gib * USABLE_SHARE
    params = settings.to_spec()
    choices = [needs["gpu"]] if needs.get("gpu") else [n for n in GPU_COUNTS if n <= site.gpus_per_node]
    modes = [settings.gradient_checkpointing] if isinstance(settings.gradient_checkpointing, bool) else [False, True]
    best = None
    for gpus in choices:
        try:
            batch = effective_batch(params, gpus, experiment=experiment)
        except MedS1Error:
            if needs.get("gpu"):
                raise
            continue
        for checkpointing in modes:
            parts = _train_parts(size, gpus, batch.per_device, settings, checkpointing)
            best = (gpus, checkpointing, parts)
            if sum(parts.values()) <= limit:
                return _train_plan(experiment, model, size, settings, site, rows, needs, best, fits=True)
    if best is None:
        raise MedS1Error(f"no GPU count up to {site.gpus_per_node} divides the batch", experiment=experiment,
                         key="config.training_params.total_batch_size")
    return _train_plan(experiment, model, size, settings, site, rows, needs, best, fits=False)


def _train_parts(size: ModelSize, gpus, micro_batch, settings, checkpointing) -> dict[str, float]:
    if size.arch is None:  # params_b only: weights, grads and optimizer state; activations unknown
        return {"sharded state": (size.params or 0) * STATE_BYTES[settings.weights_dtype] / gpus / GIB}
    return train_memory(size.arch, gpus=gpus, micro_batch=micro_batch, seq=settings.max_length,
                        weights_dtype=settings.weights_dtype, checkpointing=checkpointing)


def _train_plan(experiment, model, size, settings, site, rows, needs, chosen, *, fits) -> JobPlan:
    gpus, checkpointing, parts = chosen
    params = size.params or 0
    host = max(params * LOAD_BYTES[settings.weights_dtype], params * 2) / GIB + gpus * HOST_GIB_PER_PROCESS
    disk = (settings.keep_checkpoints * params * CHECKPOINT_BYTES[settings.weights_dtype] + params * 2) / GIB
    hours = None
    if rows and params:
        tokens = rows * min(settings.max_length, TOKENS_PER_EXAMPLE) * settings.num_epochs
        hours = (8 if checkpointing else 6) * params * tokens / (site.gpu_tflops * 1e12) / 3600
    resources = _resources("train", gpus, host if params else None, hours, needs)
    note = "" if size.arch else (f"size from {size.source}: activations not estimated" if size.params else
                                 f"size unknown: add its architecture or params_b to config.json models.{model}")
    return JobPlan(experiment, "train", model, gpus, round(sum(parts.values()), 1) if size.params else None,
                   round(site.gpu_memory_gib * USABLE_SHARE, 1), round(host, 1) if params else None,
                   round(disk, 1) if params else None, None if hours is None else round(hours, 2), resources, fits,
                   checkpointing if size.arch else None, note,
                   {k: round(v, 2) for k, v in parts.items()})


# ------------------------------------------------------------------------------------------------ eval / curation
def plan_generation(experiment: str, stage: str, model: str, size: ModelSize, *, site: Site, max_new_tokens: int,
                    needs: dict | None = None, tensor_parallel: int | None = None) -> JobPlan:
    """A job that generates with the model in bf16 (vLLM or transformers): eval, or curation's base-model probe."""
    needs = needs or {}
    usable = site.gpu_memory_gib * VLLM_MEMORY_SHARE - CUDA_OVERHEAD_GIB
    weights = (size.params or 0) * 2 / GIB
    gpus = needs.get("gpu") or tensor_parallel or _fewest_gpus(size, weights, usable, site)
    kv_tokens, fits = None, True
    if size.arch:
        heads_per_gpu = max(1, size.arch.num_key_value_heads // gpus)
        kv_per_token = 2 * size.arch.num_hidden_layers * heads_per_gpu * (size.arch.kv_width //
                                                                          size.arch.num_key_value_heads) * 2
        room = (usable - weights / gpus) * GIB
        kv_tokens = max(0, int(room // kv_per_token))
        fits = kv_tokens >= EVAL_PROMPT_TOKENS + max_new_tokens
    elif size.params:
        fits = weights / gpus < usable
    host = (weights + gpus * HOST_GIB_PER_PROCESS) if size.params else None
    note = (f"KV cache for {kv_tokens:,} tokens" if kv_tokens is not None else
            f"size from {size.source}" if size.params else
            f"size unknown: add its architecture or params_b to config.json models.{model}")
    return JobPlan(experiment, stage, model, gpus, round(weights / gpus, 1) if size.params else None,
                   round(usable, 1), _round(host), None, None, _resources(stage, gpus, host, None, needs),
                   fits, None, note, {"weights": round(weights / gpus, 2)})


def _fewest_gpus(size: ModelSize, weights_gib: float, usable: float, site: Site) -> int:
    """Fewest GPUs whose tensor-parallel split is legal (heads divide) and leaves half of each GPU to the KV cache."""
    arch, largest = size.arch, 1
    for gpus in (n for n in GPU_COUNTS if n <= site.gpus_per_node):
        legal = arch is None or (arch.num_attention_heads % gpus == 0 and
                                 (arch.num_key_value_heads % gpus == 0 or gpus % arch.num_key_value_heads == 0))
        if not legal:
            continue
        largest = gpus
        if weights_gib / gpus <= usable / 2:
            return gpus
    return largest  # none leaves half for the KV cache: the most that split legally (the KV check says if it fits)


def plan_cpu_job(experiment: str, stage: str, model: str, needs: dict | None = None) -> JobPlan:
    resources = {**DEFAULT_NEEDS[stage], **(needs or {}), "gpu": 0}
    return JobPlan(experiment, stage, model, 0, None, 0, None, None, None, resources)


def _resources(stage: str, gpus: int, host_gib: float | None, hours: float | None, needs: dict) -> dict:
    """What the rule asks SLURM for: the planned GPUs, host RAM with 20 % headroom (at least 8 GiB), twice the
    estimated wall time plus 30 minutes for loading and saving (at least 2 h); the stage's defaults where the size or
    the amount of work is unknown."""
    default = DEFAULT_NEEDS[stage]
    mem_mb = default["mem_mb"] if host_gib is None else 1024 * max(8, math.ceil(host_gib * 1.2))
    runtime = default["runtime"] if hours is None else max(120, 30 * math.ceil(4 * hours / gpus + 1))
    planned = {"gpu": gpus, "mem_mb": mem_mb, "runtime": runtime}
    return {**planned, **{k: _minutes(v) if k == "runtime" else v for k, v in needs.items()}}


def _minutes(runtime) -> int:
    """'12h', '90m', '1d' or a number of minutes -> minutes."""
    if isinstance(runtime, (int, float)):
        return int(runtime)
    text = str(runtime).strip().lower()
    units = {"d": 1440, "h": 60, "m": 1}
    return int(float(text[:-1]) * units[text[-1]]) if text[-1:] in units else int(float(text))


def _round(value):
    return None if value is None else round(value, 1)


# ------------------------------------------------------------------------------------------------ the registry
def plan_experiment(reg, exp, site: Site | None = None) -> dict[str, JobPlan]:
    """The plans of one experiment's jobs, by stage (curate, train, eval: the ones it has)."""
    site = site or Site.from_env()
    key = exp.config["model_key"]
    size, given = _model(reg, key)
    plans = {}
    if exp.trained:
        loads = STAGES.get("curate").impl.loads_model(reg, exp)  # the base model it probes (a key), or False
        probe_key = loads if isinstance(loads, str) else key
        if loads or "gpu" in exp.curation_settings.needs():
            probe_size, probe_given = _model(reg, probe_key)
            plans["curate"] = plan_generation(exp.name, "curate", probe_key, probe_size, site=site,
                                              needs=probe_given.get("curate"), max_new_tokens=EVAL_PROMPT_TOKENS)
        else:
            plans["curate"] = plan_cpu_job(exp.name, "curate", probe_key, given.get("curate"))
        n = exp.curation_settings.n_samples
        rows = int(n * (1 - reg.wf["validation_fraction"])) if n else None
        plans["train"] = plan_train(exp.name, key, size, exp.train_settings, site=site, rows=rows,
                                    needs=given.get("train"))
    if exp.eval_settings is not None:
        ev = exp.eval_settings
        tp = max([o.get("tensor_parallel_size") or 0 for o in ev.backend_options.values()] or [0]) or None
        plans["eval"] = plan_generation(exp.name, "eval", key, size, site=site, needs=given.get("eval"),
                                        max_new_tokens=ev.max_new_tokens, tensor_parallel=tp)
    return plans


def _model(reg, key: str) -> tuple[ModelSize, dict]:
    entry = reg.config["models"][key]
    return model_size(key, entry, reg.base_dir), entry.get("resources") or {}


def settle(reg, exp) -> None:
    """Parse time: plan the experiment's jobs, refuse a train job that cannot fit (one line), and write the plan's
    gradient-checkpointing decision into its training settings (so the spec says true/false, not auto)."""
    exp.plans = plan_experiment(reg, exp)
    train = exp.plans.get("train")
    if train is None:
        return
    if not train.fits and reg.refuse_unfit:  # python -m meds1.plan lists what does not fit instead of stopping
        raise MedS1Error(refusal(train, exp.train_settings), file=reg.results_file, experiment=exp.name,
                         key="config.training_params")
    if exp.train_settings.gradient_checkpointing == "auto" and train.checkpointing is not None:
        exp.train_settings = dataclasses.replace(exp.train_settings, gradient_checkpointing=bool(train.checkpointing))


def refusal(plan: JobPlan, settings) -> str:
    mode = "with" if plan.checkpointing else "without"
    return (f"train needs ~{plan.gpu_gib:.0f} GiB per GPU on {plan.gpus} GPU(s) ({settings.weights_dtype} weights, "
            f"{mode} gradient checkpointing, max_length {settings.max_length}), more than the {plan.limit_gib:.0f} "
            f"GiB usable of a {plan.limit_gib / USABLE_SHARE:.0f} GiB GPU: try weights_dtype bfloat16, "
            f"gradient_checkpointing true, a smaller batch_size or max_length, or more GPUs "
            f"(python -m meds1.plan {plan.experiment})")


def job_resources(plans: dict, stage: str) -> dict:
    plan = plans.get(stage)
    return dict(plan.resources) if plan else dict(DEFAULT_NEEDS[stage])


# ------------------------------------------------------------------------------------------------ command line
COLUMNS = ("experiment", "job", "model", "GPUs", "GiB/GPU", "limit", "ckpt", "host GiB", "disk GiB", "GPU-h",
           "mem_mb", "runtime", "fits")


def table_rows(plans: list[JobPlan]) -> list[list[str]]:
    def show(value, fmt="{:,.1f}"):
        return "?" if value is None else fmt.format(value)
    rows = []
    for p in plans:
        ckpt = {None: "-", True: "on", False: "off"}[p.checkpointing]
        rows.append([p.experiment, p.stage, p.model, str(p.gpus), show(p.gpu_gib), show(p.limit_gib, "{:.0f}"),
                     ckpt, show(p.host_gib), show(p.disk_gib), show(p.gpu_hours, "{:,.2f}"),
                     str(p.resources["mem_mb"]), f"{p.resources['runtime'] / 60:g}h",
                     ("yes" if p.fits else "NO") + (f" ({p.note})" if p.note else "")])
    return rows


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [list(COLUMNS), *rows]) for i in range(len(COLUMNS) - 1)]
    lines = []
    for row in [list(COLUMNS), *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meds1.plan", description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="*", help="names or glob patterns (default: all)")
    parser.add_argument("--workflow-config", default="workflow_config.yaml")
    parser.add_argument("--gpu-memory-gib", type=float, help="GPU memory per GPU (default MEDS1_GPU_MEMORY_GIB or 80)")
    parser.add_argument("--gpus-per-node", type=int, help="most GPUs one job may get (default 8)")
    parser.add_argument("--stages", default="curate,train,eval", help="which jobs to list")
    args = parser.parse_args(argv)
    for flag, var in ((args.gpu_memory_gib, "MEDS1_GPU_MEMORY_GIB"), (args.gpus_per_node, "MEDS1_GPUS_PER_NODE")):
        if flag is not None:
            os.environ[var] = str(flag)
    from meds1.registry import load_registry  # the command line may read the registry; the arithmetic does not
    from meds1.registry.workflow import load_yaml_file

    reg = load_registry(load_yaml_file(args.workflow_config), refuse_unfit=False)
    names = reg.match(args.experiments, key="experiments") if args.experiments else list(reg.experiments)
    stages = args.stages.split(",")
    plans = [plan for n in names for stage, plan in plan_experiment(reg, reg.experiments[n]).items()
             if stage in stages and (plan.gpus or stage != "curate")]
    print(format_table(table_rows(plans)))
    site = Site.from_env()
    print(f"\nsite: {site.gpu_memory_gib:g} GiB per GPU, up to {site.gpus_per_node} GPUs per job (one node), "
          f"{site.gpu_tflops:g} TFLOP/s per GPU; GPU-h assumes {TOKENS_PER_EXAMPLE} tokens per training row")
    return 1 if any(not p.fits for p in plans) else 0


if __name__ == "__main__":
    from meds1.cli import run_command

    run_command(main)
