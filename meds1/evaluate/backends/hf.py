"""The transformers backend: ``model.generate`` on CPU or GPU, batched with left padding.

Prompts are sorted longest first so that the biggest batch runs first: an out-of-memory error shows up in the first
seconds, not after an hour. Results come back in input order.
"""
from __future__ import annotations

from meds1.evaluate.backends.base import BACKENDS, Generation, GenerationParams, encode_prompt


def _eos_ids(model, tokenizer) -> set[int]:
    """Every id that ends a turn: the generation config may list several (e.g. Llama 3's eot and eos)."""
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


@BACKENDS.register("hf")
class HFBackend:
    name = "hf"

    def __init__(self, model_path: str, *, tokenizer, batch_size: int = 8, trust_remote_code: bool = False,
                 device: str | None = None, **_ignored):
        import torch
        from transformers import AutoModelForCausalLM

        self.tokenizer, self.batch_size = tokenizer, max(1, int(batch_size))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        on_gpu = self.device.startswith("cuda")
        kwargs = {"dtype": torch.bfloat16 if on_gpu else torch.float32, "trust_remote_code": trust_remote_code}
        if on_gpu:
            kwargs["device_map"] = "auto"  # spreads a model too big for one GPU over all visible ones
        self.model = AutoModelForCausalLM.from_pretrained(str(model_path), **kwargs)
        if not on_gpu:
            self.model.to(self.device)
        self.model.eval()
        self.eos_ids = _eos_ids(self.model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Generation]:
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        results: list[Generation | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            outputs = self._generate_batch([encoded[i] for i in batch], params, batch_seed=params.seed + start)
            for i, out in zip(batch, outputs):
                results[i] = out
        return results

    def _sampling_kwargs(self, params: GenerationParams) -> dict:
        if params.temperature <= 0:
            # Explicit, because a model's generation_config may turn sampling on (e.g. Llama 3 instruct).
            return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        # top_k off, as in the vLLM backend: only temperature and nucleus sampling shape the distribution.
        return {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": None}

    def _generate_batch(self, rows: list[list[int]], params: GenerationParams, *, batch_seed: int) -> list[Generation]:
        import torch

        padded = self.tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt").to(self.model.device)
        if params.temperature > 0:
            torch.manual_seed(batch_seed)
        stop = {"stop_strings": list(params.stop), "tokenizer": self.tokenizer} if params.stop else {}
        with torch.inference_mode():
            out = self.model.generate(**padded, max_new_tokens=params.max_new_tokens, use_cache=True,
                                      pad_token_id=self.pad_id, eos_token_id=sorted(self.eos_ids),
                                      **self._sampling_kwargs(params), **stop)
        new_tokens = out[:, padded["input_ids"].shape[1]:].tolist()
        return [self._to_generation(ids) for ids in new_tokens]

    def _to_generation(self, ids: list[int]) -> Generation:
        """Cut at the first end-of-turn token (kept in the count) and drop the padding of finished rows."""
        end = next((pos + 1 for pos, tok in enumerate(ids) if tok in self.eos_ids), len(ids))
        ids = ids[:end]
        if self.pad_id not in self.eos_ids:  # rows stopped by a stop string are padded, not ended with eos
            while ids and ids[-1] == self.pad_id:
                ids.pop()
        return Generation(self.tokenizer.decode(ids, skip_special_tokens=True), len(ids))
