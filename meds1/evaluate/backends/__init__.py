"""Eval generation backends: ``hf`` (transformers, CPU or GPU) and ``vllm`` (GPU nodes), picked by name or ``auto``.

    backend = make_backend("auto", "models/smollm2-135m", model=spec["model"], seed=0, sampling=spec["sampling"])
    texts = backend.generate(prompts, GenerationParams(max_new_tokens=256))
"""
from __future__ import annotations

import importlib.util

from meds1.evaluate.backends.base import (BACKENDS, Backend, Generation, GenerationParams, encode_prompt,
                                          load_tokenizer)

__all__ = ["BACKENDS", "Backend", "Generation", "GenerationParams", "encode_prompt", "load_tokenizer",
           "resolve_backend_name", "make_backend", "vllm_importable"]


def vllm_importable() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        import vllm  # noqa: F401
    except Exception:
        return False
    return True


def resolve_backend_name(name: str | None) -> str:
    """``auto`` -> ``vllm`` when a GPU is visible and vllm imports, else ``hf``; other names are checked."""
    name = name or "auto"
    if name == "auto":
        import torch

        return "vllm" if torch.cuda.is_available() and vllm_importable() else "hf"
    BACKENDS.get(name, key="backend")
    return name


def make_backend(name: str | None, model_path: str, *, model: dict | None = None, seed: int = 0,
                 sampling: dict | None = None, tensor_parallel_size: int | None = None, tokenizer=None) -> Backend:
    """Build the named backend for ``model_path`` with the model entry's chat template and trust settings."""
    from meds1.evaluate.prompts import resolve_chat_template

    model, sampling = model or {}, sampling or {}
    resolved = resolve_backend_name(name)
    trust = bool(model.get("trust_remote_code", False))
    if tokenizer is None:
        tokenizer = load_tokenizer(model_path, chat_template=resolve_chat_template(model.get("chat_template")),
                                   trust_remote_code=trust)
    return BACKENDS.get(resolved).impl(model_path, tokenizer=tokenizer, seed=seed, trust_remote_code=trust,
                                  batch_size=int(sampling.get("batch_size") or 8),
                                  tensor_parallel_size=tensor_parallel_size,
                                  max_model_len=sampling.get("max_model_len"))
