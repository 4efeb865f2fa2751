"""Training settings from a train spec: typed, with defaults, and ONE source of truth for the effective batch.

The effective batch depends on how many processes the job really has (accelerate's ``num_processes`` /
``WORLD_SIZE``), never on a number written in an accelerate config file.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Literal

from meds1.errors import MedS1Error
from meds1.options import build, opt

DEFAULT_NO_DECAY = ["bias", "norm.weight", "layernorm.weight", "LayerNorm.weight"]
DEFAULT_MAX_LENGTH = 2048


@dataclass(frozen=True)
class EffectiveBatch:
    per_device: int
    grad_accum: int
    num_gpus: int  # processes taking part (one per GPU; 1 on CPU)
    total: int

    def as_dict(self) -> dict:
        return asdict(self)


def effective_batch(training_params: dict, num_gpus: int, *, experiment: str | None = None) -> EffectiveBatch:
    """Per-device batch and accumulation giving ``total_batch_size`` when set, else batch x accumulation x GPUs."""
    num_gpus = max(1, int(num_gpus))
    batch_size = _positive_int(training_params, "batch_size", 1, experiment)
    total = training_params.get("total_batch_size")
    if total is None:
        grad_accum = _positive_int(training_params, "gradient_accumulation_steps", 1, experiment)
        return EffectiveBatch(batch_size, grad_accum, num_gpus, batch_size * grad_accum * num_gpus)
    total = _positive_int(training_params, "total_batch_size", None, experiment)
    per_device = min(batch_size, total // num_gpus)
    if per_device < 1 or total % (per_device * num_gpus):
        raise MedS1Error(
            f"total_batch_size {total} is not divisible by per-device batch {max(per_device, 1)} x {num_gpus} "
            f"process(es); choose a multiple of {max(per_device, 1) * num_gpus}",
            experiment=experiment, key="training_params.total_batch_size")
    return EffectiveBatch(per_device, total // (per_device * num_gpus), num_gpus, total)


def _positive_int(params: dict, key: str, default, experiment) -> int:
    value = params.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MedS1Error(f"must be a positive integer, got {value!r}", experiment=experiment,
                         key=f"training_params.{key}")
    return value


def count_processes() -> int:
    """Processes in this job: WORLD_SIZE under accelerate/torchrun, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass(frozen=True)
class OptimizerSettings:
    adam_beta1: float = opt(0.9, "AdamW beta1", minimum=0, exclusiveMaximum=1)
    adam_beta2: float = opt(0.95, "AdamW beta2 (s1/m1 and the seed: 0.95)", minimum=0, exclusiveMaximum=1)
    adam_epsilon: float = opt(1e-8, "AdamW epsilon", exclusiveMinimum=0)
    no_decay_params: list[str] = opt(DEFAULT_NO_DECAY, "parameter-name substrings that get no weight decay "
                                     "(the seed's list missed RMSNorm weights; ours names them)")


@dataclass(frozen=True)
class TrainSettings:
    """An experiment's ``training_params``: the seed's keys and defaults (its resolver and trainer), typed.

    workflow_config.yaml ``training_defaults`` < these defaults are overridden by it < the experiment's own block.
    """
    learning_rate: float = opt(5e-6, "peak learning rate (cosine schedule with warmup)", exclusiveMinimum=0)
    batch_size: int = opt(4, "per-device batch", minimum=1)
    gradient_accumulation_steps: int = opt(4, "optimizer step every N batches", minimum=1)
    total_batch_size: int | None = opt(None, "when set: the effective batch, GA derived from the job's processes",
                                       minimum=1)
    num_epochs: float = opt(3, "epochs over the training split", exclusiveMinimum=0)
    weight_decay: float = opt(0.1, "AdamW weight decay", minimum=0)
    warmup_ratio: float = opt(0.05, "share of optimizer steps spent warming up", minimum=0, exclusiveMaximum=1)
    optimizer: OptimizerSettings = opt(factory=OptimizerSettings, doc="AdamW settings")
    max_length: int | None = opt(None, "tokens per example; default: the model entry's max_length, else 2048",
                                 minimum=16)
    select: Literal["best", "last"] = opt("best", "publish the lowest-validation-loss checkpoint or the last one")
    evals_per_epoch: int = opt(4, "validations (and checkpoints) per epoch", minimum=1)
    gradient_checkpointing: bool | Literal["auto"] = opt("auto", "recompute activations in backward; auto: when "
                                                         "the plan (python -m meds1.plan) says it is needed")
    weights_dtype: Literal["float32", "bfloat16"] = opt(
        "float32", "float32: fp32 master weights, gradients and AdamW moments sharded by FSDP, bf16 compute on GPU "
        "(16 bytes per parameter); bfloat16: everything in bf16 as s1 loads Qwen2.5-32B (8 bytes per parameter, "
        "updates below bf16 resolution are lost)")
    keep_checkpoints: int = opt(2, "resumable checkpoints kept in ckpts/{exp}/work (the best one counts among them)",
                                minimum=1)
    group_by_length: bool = opt(False, "batch examples of similar length together")
    packing: bool = opt(False, "trl best-fit-decreasing packing (padding-free rows of max_length)")
    seed: int = opt(42, "training seed (the workflow seed overrides it)")

    @property
    def adam_beta1(self) -> float:
        return self.optimizer.adam_beta1

    @property
    def adam_beta2(self) -> float:
        return self.optimizer.adam_beta2

    @property
    def adam_epsilon(self) -> float:
        return self.optimizer.adam_epsilon

    @property
    def no_decay_params(self) -> list[str]:
        return list(self.optimizer.no_decay_params)

    @classmethod
    def from_block(cls, block: dict | None, *, defaults: dict | None = None, model: dict | None = None,
                   seed: int | None = None, **where) -> "TrainSettings":
        """Validate ``training_params`` (over workflow ``defaults``) and fill every default; ``where``: file,
        experiment, prefix for the one-line error."""
        merged = _merge(defaults or {}, block or {})
        if merged.get("max_length") is None:
            merged["max_length"] = (model or {}).get("max_length") or DEFAULT_MAX_LENGTH
        if seed is not None:
            merged["seed"] = int(seed)
        return build(cls, merged, **where)

    @classmethod
    def from_spec(cls, spec: dict) -> "TrainSettings":
        """The train job's settings from its spec (``training_params`` as the registry resolved it)."""
        return cls.from_block(spec.get("training_params"), model=spec.get("model"), seed=spec.get("seed"),
                              experiment=spec.get("experiment"), prefix="training_params")

    def to_spec(self) -> dict:
        return asdict(self)


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
