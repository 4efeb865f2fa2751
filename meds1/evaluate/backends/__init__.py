"""Eval generation backends, one plug-in module each (``hf``: transformers; ``vllm``: GPU nodes), or ``auto``.

A backend module registers a class with ``EVAL_BACKENDS.register(name, options=OptionsDataclass, needs=...)``; the
class is built as ``cls(model_path, tokenizer=..., options=<its options>, context=BackendContext(...))`` and answers
``generate(requests, params)`` (see ``base``). Nothing else spells a backend's name.

    backend = make_backend("auto", "models/smollm2-135m", context=BackendContext(model=spec["model"], seed=0))
    gens = backend.generate([Request(prompt_ids)], GenerationParams(max_new_tokens=256))
"""
from __future__ import annotations

from meds1.errors import MedS1Error
from meds1.evaluate.backends.base import (BACKENDS, Backend, BackendContext, Generation, GenerationParams, Request,
                                          encode_prompt)

__all__ = ["BACKENDS", "Backend", "BackendContext", "Generation", "GenerationParams", "Request", "encode_prompt",
           "resolve_backend_name", "make_backend", "backend_options"]

AUTO = "auto"


def gpus_visible() -> int:
    """GPUs this job can use: the project's one GPU counter (``meds1.devices``)."""
    from meds1.devices import count_gpus

    return count_gpus()


def resolve_backend_name(name: str | None) -> str:
    """``auto``: on a GPU job the first backend that needs a GPU (vLLM), on CPU the first that does not (hf).

    A GPU job whose GPU backend cannot be imported is an error, never a silent CPU-speed run."""
    name = name or AUTO
    if name != AUTO:
        BACKENDS.get(name, key="backend")
        return name
    wanted = gpus_visible() > 0
    plugin = next((p for p in BACKENDS if ("gpu" in p.needs) == wanted), None)
    if plugin is None:
        raise MedS1Error("backend auto: no eval backend is registered for this machine", key="backend")
    check = getattr(plugin.impl, "check_importable", None)
    if wanted and check is not None:
        check()
    return plugin.name


def backend_options(name: str, options: dict | None):
    """The named backend's options dataclass, built from ``eval.backend_options[name]`` (validated)."""
    plugin = BACKENDS.get(name, key="backend")
    return plugin.make_options((options or {}).get(name), prefix=f"backend_options.{name}")


def make_backend(name: str | None, model_path: str, *, context: BackendContext | None = None,
                 options: dict | None = None, tokenizer=None) -> Backend:
    """Build the named backend for ``model_path``; ``options``: ``{backend name: {option: value}}``."""
    from meds1.tokenizers import load_tokenizer

    context = context or BackendContext()
    resolved = resolve_backend_name(name)
    if tokenizer is None:
        tokenizer = load_tokenizer(context.model, model_path, padding_side="left")
    return BACKENDS.get(resolved).impl(model_path, tokenizer=tokenizer, options=backend_options(resolved, options),
                                       context=context)

