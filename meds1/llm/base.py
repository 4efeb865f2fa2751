"""The LLM layer's interface: requests and results.

Curation code builds ``LLMRequest``s and hands them to ``meds1.llm.client.LLMClient.run_many``; it never talks to a
provider directly. Each request carries its own deterministic stand-in answer (``offline``), which the ``offline``
provider returns, so this layer knows no transform, method or task.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable



@dataclass(frozen=True)
class LLMRequest:
    task: str                      # e.g. "extract:step", "perturb:answer", "restore", "judge", "specialty"
    prompt: str                    # the fully rendered prompt text (what a real model sees)
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)   # temperature, max_output_tokens, ...
    payload: dict[str, Any] = field(default_factory=dict)  # structured inputs for the offline stand-in (not sent)
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
    error: str | None = None  # set when the request was given up on (``run_many(..., keep_going=True)``); text ""

    @property
    def failed(self) -> bool:
        return self.error is not None
