"""FSDP for a training job with more than one process: full shard, sharded resumable checkpoints, and the final
model gathered once, one tensor at a time, in bf16.

Configured here, in Python, from the training settings (the accelerate config files only start the processes):

- FSDP2 ``fully_shard`` of every decoder layer (classes from the model's ``_no_split_modules``) and of the root,
  parameters freed after each layer's forward (FULL_SHARD); FSDP's own activation checkpointing when the plan
  asks for gradient checkpointing (HF's would add an all-gather per layer in backward).
- Checkpoints as ``SHARDED_STATE_DICT``: torch.distributed.checkpoint writes one file per rank for the weights
  (``pytorch_model_fsdp_0/``) and for the optimizer (``optimizer_0/``); nothing is gathered on rank 0, and a
  resumed run (even with another process count) reads them back.
- Weights load on local rank 0 only and are broadcast (``cpu_ram_efficient_loading``): host RAM holds one copy.

One code path on GPU and CPU: accelerate enables FSDP only next to an accelerator and on CPU quietly falls back to
DDP, although torch's FSDP2 runs over gloo. ``enable_on_cpu`` takes the step accelerate skips (its FSDP plugin and
distributed type); wrapping, mixed precision, checkpoints, resume and the best-model reload are then the GPU's code.
"""
from __future__ import annotations

import os

from meds1.errors import MedS1Error


MIN_TORCH = (2, 13)


def fsdp_arguments(gradient_checkpointing: bool) -> dict:
    """SFTConfig keyword arguments that turn on FSDP2 full shard with sharded checkpoints."""
    require_torch_for_fsdp()
    # transformers reads these two to load the weights on local rank 0 only (the others start on `meta`).
    os.environ["ACCELERATE_USE_FSDP"] = "true"
    os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "true"
    return {"fsdp": "full_shard auto_wrap", "fsdp_config": {
        "version": 2,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "reshard_after_forward": True,
        "state_dict_type": "SHARDED_STATE_DICT",
        "cpu_ram_efficient_loading": True,
        "activation_checkpointing": bool(gradient_checkpointing),
    }}


def require_torch_for_fsdp() -> None:
    """trl's fused LM head computes the loss from the head's weight without calling the head, and accelerate puts
    the final norm and the head in one FSDP unit: torch < 2.13 leaves that unit half-run, and the first step after
    a checkpoint fails ("mixed torch.Tensor and DTensor", seen on an H200 with torch 2.11). torch 2.13 completes it."""
    import torch

    found = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    if found < MIN_TORCH:
        raise MedS1Error(f"FSDP training needs torch>={'.'.join(map(str, MIN_TORCH))}, this is {torch.__version__} "
                         "(trl's fused LM head skips a module of accelerate's last FSDP unit; torch 2.13 handles "
                         "it): install the train environment (envs/train.yaml)")


def enable_on_cpu(trainer) -> None:
    """Make accelerate run FSDP in a multi-process CPU job (gloo), where it would otherwise choose DDP."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if trainer.is_fsdp_enabled or not trainer.args.fsdp_plugin_args:
        return
    state = trainer.accelerator.state
    state.fsdp_plugin = FullyShardedDataParallelPlugin(**trainer.args.fsdp_plugin_args)
    if trainer.accelerator.mixed_precision != "no":
        state.fsdp_plugin.set_mixed_precision(trainer.accelerator.mixed_precision)
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    trainer.is_fsdp_enabled = True


def gathered_state_dict(model, *, dtype, keep: bool) -> dict:
    """The model's full weights, gathered one tensor at a time and cast to ``dtype`` on the CPU.

    Every process must call this (each gather is collective); only where ``keep`` is true are tensors kept, so the
    main process peaks at one full copy in ``dtype`` (bf16: 2 bytes per parameter), never at an fp32 copy.
    """
    from torch.distributed.tensor import DTensor

    # A tied weight (lm_head = embeddings) is stored once, under its first name, as save_pretrained does.
    tied = ({n for n, _ in model.named_parameters(remove_duplicate=False)} -
            {n for n, _ in model.named_parameters()})
    weights = {}
    for name, tensor in model.state_dict().items():
        if name in tied:
            continue
        full = tensor.full_tensor() if isinstance(tensor, DTensor) else tensor
        if keep:
            cast = dtype if full.is_floating_point() else full.dtype
            weights[name] = full.detach().to(device="cpu", dtype=cast, copy=True)
        del full
    return weights
