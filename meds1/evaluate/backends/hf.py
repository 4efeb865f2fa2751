"""The transformers backend: on CPU continuous batching (``continuous``) where the model allows it, else (and on a
GPU) ``model.generate`` over left-padded batches.

Continuous batching keeps at most ``batch_size`` rows in flight: a row that ends leaves the batch at once and the
next prompt takes its slot, so no step computes a finished row (``generate`` decodes a batch until its last row
ends). Prompts are taken longest first, so the biggest batch runs first: an out-of-memory error shows up in the
first seconds, not after an hour. Results come back in input order.

Sampling is per request: each row draws its own Gumbel noise from a generator seeded with the request's seed (argmax
of logits/T + Gumbel noise is a draw from softmax(logits/T)), so a sampled answer does not depend on which other
prompts share its batch, and a resumed run samples exactly what an uninterrupted one would. That holds bit for bit in
float32; in bfloat16 the batch shape changes the rounding of the logits, so ``dtype: float32`` is the setting for
exact reruns.

``dtype: auto`` is bfloat16 on a GPU and float32 on CPU. bf16 on CPU is ~10x slower where it is emulated (AVX2), and
where it is native (AMX: ``meds1.devices.cpu_bf16_is_fast``), measured on SmolLM2 with the demo eval set, it was
2x faster but changed 22-27 % of the greedy answers (tolerance: 2 %; bench/README.md). ``describe()`` says what
ran, for metrics.json.
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
        "auto", "weights and compute dtype; auto: bfloat16 on a GPU, float32 on CPU (bf16 there changes answers)")
    continuous_batching: Literal["auto", "on", "off"] = opt(
        "auto", "finished rows leave the batch and waiting prompts join it (off: transformers generate per batch); "
        "auto: on CPU only (on an H200 its per-step host work made it 2.6x slower than generate)")


@BACKENDS.register("hf", options=HFOptions, needs=())
class HFBackend:
    """transformers, on CPU or on every visible GPU (device_map auto)"""
    name = "hf"

    def __init__(self, model_path: str, *, tokenizer, options: HFOptions | None = None,
                 context: BackendContext | None = None, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM

        from meds1.devices import keep_freed_memory
        from meds1.evaluate.backends import continuous

        options, context = options or HFOptions(), context or BackendContext()
        self.tokenizer, self.batch_size = tokenizer, max(1, int(context.batch_size))
        self.prompts_per_call = self.batch_size  # the runner flushes after every call
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        on_gpu = self.device.startswith("cuda")
        self.dtype = resolve_dtype(options.dtype, on_gpu)
        # use_kernels=False: transformers 5.25 otherwise fetches Hub kernels on a GPU (the `kernels` package, a hub)
        kwargs = {"dtype": getattr(torch, self.dtype), "use_kernels": False,
                  "trust_remote_code": bool(context.model.get("trust_remote_code", False))}
        if on_gpu:
            kwargs["device_map"] = "auto"  # spreads a model too big for one GPU over all visible ones
        self.model = AutoModelForCausalLM.from_pretrained(str(model_path), **kwargs)
        if not on_gpu:
            self.model.to(self.device)
            keep_freed_memory()  # activations are reallocated at every step: reuse, not page faults
        self.model.eval()
        wanted = {"auto": not on_gpu, "on": True, "off": False}[options.continuous_batching]
        self.continuous = wanted and continuous.supports(self.model)
        self.end_ids = end_of_turn_ids(tokenizer, self.model.generation_config)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.end_ids)

    def describe(self) -> dict:
        """What generated the answers, for metrics.json: dtype, engine, attention, device and CPU threads."""
        import torch

        return {"dtype": self.dtype, "engine": "continuous" if self.continuous else "generate",
                "attention": self.model.config._attn_implementation, "device": str(self.model.device),
                "batch_size": self.batch_size, "torch_threads": torch.get_num_threads()}

    def generate(self, requests: list[Request], params: GenerationParams) -> list[Generation]:
        if not requests:
            return []
        if self.continuous:
            from meds1.evaluate.backends.continuous import generate_ids

            raw = generate_ids(self.model, self.tokenizer, requests, params, max_rows=self.batch_size,
                               stop_ids=self.end_ids | set(params.stop_token_ids), pad_id=self.pad_id)
        else:
            raw = self._generate_batches(requests, params)
        return [finish_generation(self.tokenizer, ids, params=params, end_ids=self.end_ids,
                                  limit=limit_of(request, params)) for ids, request in zip(raw, requests)]

    def _generate_batches(self, requests: list[Request], params: GenerationParams) -> list[list[int]]:
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].prompt_ids))
        results: list[list[int] | None] = [None] * len(requests)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            for i, ids in zip(batch, self._generate_batch([requests[i] for i in batch], params)):
                results[i] = ids
        return results

    def _generate_batch(self, batch: list[Request], params: GenerationParams) -> list[list[int]]:
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
        return out[:, padded["input_ids"].shape[1]:].tolist()


def resolve_dtype(name: str, on_gpu: bool) -> str:
    """``auto``: bfloat16 on a GPU, float32 on CPU (see the module docstring)."""
    if name != "auto":
        return name
    return "bfloat16" if on_gpu else "float32"


class SeededSampling:
    """A logits processor for ``generate``: per-row seeded noise (``continuous.seeded_noise``) over fixed rows."""

    def __init__(self, seeds: list[int], params: GenerationParams):
        import torch

        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.params = params

    def __call__(self, input_ids, scores):
        from meds1.evaluate.backends.continuous import seeded_noise

        return seeded_noise(scores, self.generators, self.params)
