"""The transformers backend: ``model.generate`` on CPU or GPU, batched with left padding.

Prompts are sorted longest first so that the biggest batch runs first: an out-of-memory error shows up in the first
seconds, not after an hour. Results come back in input order.

Sampling is per request: each row draws its own Gumbel noise from a generator seeded with the request's seed (argmax
of logits/T + Gumbel noise is a draw from softmax(logits/T)), so a sampled answer does not depend on which other
prompts share its batch, and a resumed run samples exactly what an uninterrupted one would. That holds bit for bit in
float32; in bfloat16 (the GPU default) the batch shape changes the rounding of the logits, so ``dtype: float32`` is
the setting for exact reruns.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from meds1.evaluate.backends.base import (BACKENDS, BackendContext, Generation, GenerationParams, Request,
                                          end_of_turn_ids, finish_generation, limit_of)
from meds1.options import opt


@dataclass(frozen=True)
class HFOptions:
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = opt(
        "auto", "weights and compute dtype; auto: bfloat16 on a GPU, float32 on CPU (bf16 is ~10x slower on CPU)")


@BACKENDS.register("hf", options=HFOptions, needs=())
class HFBackend:
    """transformers generate, on CPU or on every visible GPU (device_map auto)"""
    name = "hf"

    def __init__(self, model_path: str, *, tokenizer, options: HFOptions | None = None,
                 context: BackendContext | None = None, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM

        options, context = options or HFOptions(), context or BackendContext()
        self.tokenizer, self.batch_size = tokenizer, max(1, int(context.batch_size))
        self.prompts_per_call = self.batch_size  # the runner flushes after every batch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        on_gpu = self.device.startswith("cuda")
        dtype = {"auto": torch.bfloat16 if on_gpu else torch.float32}.get(options.dtype) or getattr(torch,
                                                                                                   options.dtype)
        # use_kernels=False: transformers 5.25 otherwise fetches Hub kernels on a GPU (the `kernels` package, a hub)
        kwargs = {"dtype": dtype, "trust_remote_code": bool(context.model.get("trust_remote_code", False)),
                  "use_kernels": False}
        if on_gpu:
            kwargs["device_map"] = "auto"  # spreads a model too big for one GPU over all visible ones
        self.model = AutoModelForCausalLM.from_pretrained(str(model_path), **kwargs)
        if not on_gpu:
            self.model.to(self.device)
        self.model.eval()
        self.end_ids = end_of_turn_ids(tokenizer, self.model.generation_config)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.end_ids)

    def generate(self, requests: list[Request], params: GenerationParams) -> list[Generation]:
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].prompt_ids))
        results: list[Generation | None] = [None] * len(requests)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            for i, out in zip(batch, self._generate_batch([requests[i] for i in batch], params)):
                results[i] = out
        return results

    def _generate_batch(self, batch: list[Request], params: GenerationParams) -> list[Generation]:
        import torch

        padded = self.tokenizer.pad({"input_ids": [list(r.prompt_ids) for r in batch]}, padding=True,
                                    return_tensors="pt").to(self.model.device)
        limits = [limit_of(r, params) for r in batch]
        stop_ids = sorted(self.end_ids | set(params.stop_token_ids))
        # Greedy decoding over seeded per-row noise: see the module docstring. Explicit sampling-off settings,
        # because a model's generation_config may turn sampling on (e.g. Llama 3 instruct).
        processors = [SeededSampling([r.seed for r in batch], params)] if params.temperature > 0 else []
        stop = {"stop_strings": list(params.stop_strings), "tokenizer": self.tokenizer} if params.stop_strings else {}
        with torch.inference_mode():
            out = self.model.generate(**padded, max_new_tokens=max(limits), min_new_tokens=params.min_tokens or None,
                                      use_cache=True, pad_token_id=self.pad_id, eos_token_id=stop_ids,
                                      do_sample=False, temperature=None, top_p=None, top_k=None,
                                      logits_processor=processors, **stop)
        new_tokens = out[:, padded["input_ids"].shape[1]:].tolist()
        return [finish_generation(self.tokenizer, ids, params=params, end_ids=self.end_ids, limit=limit)
                for ids, limit in zip(new_tokens, limits)]


class SeededSampling:
    """A logits processor: temperature, nucleus filtering, then per-row Gumbel noise from per-row generators."""

    def __init__(self, seeds: list[int], params: GenerationParams):
        import torch

        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.temperature, self.top_p = float(params.temperature), float(params.top_p)

    def __call__(self, input_ids, scores):
        import torch

        scores = scores.float() / self.temperature
        if self.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, descending=True)
            cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
            drop = cumulative - sorted_scores.softmax(dim=-1) >= self.top_p  # keeps the first token always
            scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        uniform = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
        return scores + gumbel.to(scores.device)
