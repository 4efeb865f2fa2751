"""Training settings from a train spec: typed, with defaults, and ONE source of truth for the effective batch.

The effective batch depends on how many processes the job really has (accelerate's ``num_processes`` /
``WORLD_SIZE``), never on a number written in an accelerate config file.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from meds1.errors import MedS1Error

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


def count_gpus() -> int:
    """GPUs this job may use: CUDA_VISIBLE_DEVICES when set (SLURM sets it), else what torch sees."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [d for d in visible.split(",") if d.strip() and d.strip() != "-1"]
        if not ids:
            return 0
    try:
        import torch
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        available = 0
    return min(len(ids), available) if visible is not None else available


@dataclass(frozen=True)
class TrainSettings:
    """``training_params`` of a train spec, with defaults filled in."""
    learning_rate: float = 1e-5
    num_epochs: float = 3
    weight_decay: float = 1e-4
    warmup_ratio: float = 0.05
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-8
    no_decay_params: list[str] = field(default_factory=lambda: list(DEFAULT_NO_DECAY))
    max_length: int = DEFAULT_MAX_LENGTH
    select: str = "best"
    evals_per_epoch: int = 4
    gradient_checkpointing: bool = False
    group_by_length: bool = False
    packing: bool = False  # trl's best-fit-decreasing packing (padding-free rows of max_length); bench/bench_train.py
    seed: int = 42

    @classmethod
    def from_spec(cls, spec: dict) -> "TrainSettings":
        params, exp = spec.get("training_params") or {}, spec.get("experiment")
        optimizer = params.get("optimizer") or {}
        given = {k: v for k, v in {**params, **optimizer}.items() if v is not None and k in cls.__dataclass_fields__}
        given["max_length"] = params.get("max_length") or (spec.get("model") or {}).get("max_length") \
            or DEFAULT_MAX_LENGTH
        if spec.get("seed") is not None:
            given["seed"] = int(spec["seed"])
        settings = cls(**given)
        settings._check(exp)
        return settings

    def _check(self, experiment) -> None:
        if self.select not in ("best", "last"):
            raise MedS1Error(f"must be 'best' or 'last', got {self.select!r}", experiment=experiment,
                             key="training_params.select", choices=["best", "last"], value=self.select)
        for key in ("max_length", "evals_per_epoch"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise MedS1Error(f"must be a positive integer, got {getattr(self, key)!r}", experiment=experiment,
                                 key=f"training_params.{key}")
        for key in ("num_epochs", "learning_rate"):
            if not getattr(self, key) > 0:
                raise MedS1Error(f"must be positive, got {getattr(self, key)!r}", experiment=experiment,
                                 key=f"training_params.{key}")
        if not 0 <= self.warmup_ratio < 1:
            raise MedS1Error(f"must be in [0, 1), got {self.warmup_ratio!r}", experiment=experiment,
                             key="training_params.warmup_ratio")
