"""The loss head of a CPU training process: logits only where a label is trained, in plain torch ops.

trl's SFTTrainer computes the loss through its fused LM head (``trl.trainer.utils.add_fused_lm_head``). On a GPU
it scores only the trained positions with a Triton kernel; on CPU it falls back to scoring EVERY position (prompt and
padding included) in vocabulary tiles folded by a dozen elementwise torch ops each, with the weight gradient in
float32. On SmolLM2 (49,152-token vocabulary) that fallback took 55 % of a CPU training step (bench/README.md).

``use_on_cpu`` replaces it, in a single CPU process only (never under FSDP or on a GPU, whose path stays trl's),
with: the backbone, the LM head on the trained positions only (under the run's autocast), and log-softmax in
float32. It returns the same ``FusedCausalLMOutput`` fields trl's trainer reads (per-token log-probabilities,
entropy and top-1 hits, zero where the label is -100), so the loss, its normalisation over gradient accumulation and
the logged metrics are trl's own.
"""
from __future__ import annotations

import types

import torch

# Heads that scale or cap their logits (Gemma, Granite, ...) keep trl's head, which knows how.
SCALED_HEAD_KEYS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                    "logits_scaling")


def use_on_cpu(trainer) -> bool:
    """Swap trl's fused head for ``trained_positions_forward`` when the trainer runs one CPU process on a model with
    a plain head; True when it did."""
    model = trainer.model
    config = model.config.get_text_config()
    plain_head = all(getattr(config, key, None) is None for key in SCALED_HEAD_KEYS)
    if trainer.args.device.type != "cpu" or trainer.is_fsdp_enabled or not plain_head:
        return False
    if not getattr(model.forward, "__wrapped__", None):  # trl's patch (functools.wraps) is not there: leave it
        return False
    model.forward = types.MethodType(trained_positions_forward(model.forward), model)
    return True


def trained_positions_forward(fused_forward):
    """A model forward that answers ``fused_lm_head=True`` calls itself and passes every other call to trl's."""

    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head or shift_labels is not None or kwargs.get("output_router_logits"):
            return fused_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                                 num_items_in_batch=num_items_in_batch, **kwargs)
        return score_trained_positions(self, args, kwargs, labels, num_items_in_batch)

    return forward


def score_trained_positions(model, args, kwargs, labels, num_items_in_batch):
    from trl.trainer.utils import FusedCausalLMOutput

    kwargs["use_cache"] = False
    hidden = model.base_model(*args, **kwargs).last_hidden_state[:, :-1]
    targets = labels[:, 1:]
    mask = targets != -100
    head = model.get_output_embeddings()
    with torch.autocast("cpu", enabled=False):
        logits = torch.nn.functional.linear(hidden[mask].float(), head.weight.float())
    log_softmax = logits.log_softmax(dim=-1)
    chosen = targets[mask]
    picked = log_softmax.gather(1, chosen[:, None]).squeeze(1)
    with torch.no_grad():
        entropy = -(log_softmax.exp() * log_softmax).sum(dim=-1)
        is_top1 = logits.argmax(dim=-1) == chosen
    spread = lambda values: values.new_zeros(mask.shape).masked_scatter(mask, values)  # noqa: E731
    log_probs = spread(picked)  # masked_scatter keeps an all-masked batch connected to the graph (trl does the same)
    loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
    return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=spread(entropy), log_sum_sq_probs=None,
                               mean_logits=None, is_top1=spread(is_top1), label_mask=mask, aux_loss=None)
