"""Optimizer parameter groups: weight decay everywhere except biases and normalisation weights.

A parameter is excluded from decay when any ``no_decay`` pattern is a substring of its name. The defaults match
biases, LayerNorm weights and RMSNorm weights (``model.norm.weight``, ``input_layernorm.weight``,
``post_attention_layernorm.weight``), whatever wrapper prefix (DDP, FSDP) the names carry.
"""
from __future__ import annotations

from typing import Iterable

import torch

from meds1.sft.config import DEFAULT_NO_DECAY


def is_no_decay(name: str, no_decay: Iterable[str]) -> bool:
    return any(pattern in name for pattern in no_decay)


def param_groups(model: torch.nn.Module, weight_decay: float, no_decay: Iterable[str] | None = None) -> list[dict]:
    """Decay and no-decay groups of the trainable parameters.

    Each group carries ``param_names`` (a key torch optimizers keep and save), so the split can be inspected.
    """
    no_decay = list(DEFAULT_NO_DECAY if no_decay is None else no_decay)
    decay = {"params": [], "param_names": [], "weight_decay": weight_decay}
    keep = {"params": [], "param_names": [], "weight_decay": 0.0}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = keep if is_no_decay(name, no_decay) else decay
        group["params"].append(param)
        group["param_names"].append(name)
    return [g for g in (decay, keep) if g["params"]]


def build_adamw(model: torch.nn.Module, *, learning_rate: float, weight_decay: float, betas: tuple[float, float],
                eps: float, no_decay: Iterable[str] | None = None) -> torch.optim.AdamW:
    groups = param_groups(model, weight_decay, no_decay)
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps, **step_kernel(groups))


def step_kernel(groups: list[dict]) -> dict:
    """The fused AdamW kernel for plain CPU parameters: one pass over each tensor instead of a dozen elementwise ops
    (torch's CPU default is a per-parameter loop). Elsewhere torch's own choice: foreach on CUDA, and sharded FSDP
    parameters (DTensors) stay off the fused path."""
    params = [p for g in groups for p in g["params"]]
    plain_cpu = all(type(p) is torch.nn.Parameter and p.device.type == "cpu" for p in params)
    return {"fused": True} if params and plain_cpu else {}
