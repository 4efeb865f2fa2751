"""The vLLM backend (GPU nodes, environment envs/eval-vllm.yaml).

``vllm`` pins its own torch and transformers, so it is never installed beside the main package: it is imported here,
lazily, only when this backend is built. Prompts are rendered and tokenized by us (the same text as the hf backend)
and handed to vLLM as token ids, so the chat template never adds a second BOS and both backends see identical inputs.
"""
from __future__ import annotations

import os

from meds1.errors import MedS1Error
from meds1.evaluate.backends.base import BACKENDS, Generation, GenerationParams, encode_prompt


def import_vllm():
    """``import vllm``, or a one-line error saying where it lives."""
    try:
        import vllm
    except Exception as err:  # ImportError, or a CUDA library that fails to load at import time
        raise MedS1Error(f"the vllm backend needs the 'vllm' package, which cannot be imported here "
                         f"({type(err).__name__}: {err}); run this rule in the envs/eval-vllm.yaml environment on a "
                         "GPU node, or set backend: hf", key="backend") from None
    return vllm


def visible_gpu_count() -> int:
    """GPUs this process may use: those listed in CUDA_VISIBLE_DEVICES (set by SLURM), else all torch sees."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


@BACKENDS.register("vllm")
class VLLMBackend:
    name = "vllm"

    def __init__(self, model_path: str, *, tokenizer, seed: int = 0, trust_remote_code: bool = False,
                 tensor_parallel_size: int | None = None, max_model_len: int | None = None, **_ignored):
        self._vllm = import_vllm()
        self.tokenizer = tokenizer
        self.llm = self._vllm.LLM(
            model=str(model_path),
            tensor_parallel_size=int(tensor_parallel_size or max(1, visible_gpu_count())),
            seed=seed,
            dtype="bfloat16",
            trust_remote_code=trust_remote_code,
            max_model_len=max_model_len,  # None: the model config's own context length
        )

    def sampling_params(self, params: GenerationParams):
        greedy = params.temperature <= 0
        return self._vllm.SamplingParams(
            n=1,
            temperature=0.0 if greedy else params.temperature,
            top_p=1.0 if greedy else params.top_p,
            top_k=-1,  # off, as in the hf backend (vLLM would otherwise take the model's generation_config default)
            max_tokens=params.max_new_tokens,
            seed=None if greedy else params.seed,
            stop=list(params.stop) or None,
            include_stop_str_in_output=True,  # same text as the hf backend's stop_strings
            skip_special_tokens=True,
        )

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Generation]:
        token_prompts = [{"prompt_token_ids": encode_prompt(self.tokenizer, p)} for p in prompts]
        outputs = self.llm.generate(token_prompts, self.sampling_params(params), use_tqdm=False)
        # LLM.generate returns one RequestOutput per prompt, in input order.
        return [Generation(out.outputs[0].text, len(out.outputs[0].token_ids)) for out in outputs]
