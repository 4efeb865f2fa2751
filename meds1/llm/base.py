"""The LLM layer's interface: requests, results, and the offline provider's per-task registry.

Curation code builds ``LLMRequest``s and hands them to ``meds1.llm.client.LLMClient.run_many``; it never talks to a
provider directly. The ``offline`` provider answers each request with the deterministic implementation registered for
its ``task`` in ``OFFLINE_TASKS`` (trace transforms register theirs in ``meds1.traces.offline``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from meds1.plugins import PluginRegistry


@dataclass(frozen=True)
class LLMRequest:
    task: str                      # e.g. "extract:step", "perturb:answer", "restore", "judge", "specialty"
    prompt: str                    # the fully rendered prompt text (what a real model sees)
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)   # temperature, max_output_tokens, ...
    payload: dict[str, Any] = field(default_factory=dict)  # structured inputs for the offline provider (not sent)
    # The deterministic stand-in answer, fn(request) -> str | (str, meta): set by whoever builds the request, so the
    # LLM layer needs to know no transform, method or task. Not part of the cache key.
    offline: Callable[["LLMRequest"], Any] | None = field(default=None, compare=False, repr=False)


@dataclass
class LLMResult:
    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached: bool = False
    provider: str = ""
    model: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. {"offline_rule": "split sentences into steps"}


# task name -> fn(request) -> str | (str, meta dict)
OFFLINE_TASKS: PluginRegistry[Callable[[LLMRequest], Any]] = PluginRegistry("offline LLM task")
