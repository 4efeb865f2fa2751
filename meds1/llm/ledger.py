"""Cost ledger and cost ceiling. Prices are USD per 1M tokens (the llm block's ``pricing: {input, output}``).

Only successful calls add tokens and cost. The ceiling is checked BEFORE each attempt against
(spent + estimates of the calls in flight + this call's estimate), so no call is ever sent past ``max_cost_usd``.
A call's estimate: (prompt + system characters) / 4 input tokens and ``max_output_tokens`` output tokens.
The ceiling applies per client (one curate job); cached answers cost nothing and do not count.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from meds1.errors import MedS1Error
from meds1.llm.base import LLMRequest, LLMResult

CHARS_PER_TOKEN = 4
# used for the estimate when a request sets no max_output_tokens; set max_output_tokens to make the ceiling tight
DEFAULT_OUTPUT_TOKENS_ESTIMATE = 1024


class CostCeilingReached(MedS1Error):
    """The next call could push spending past ``max_cost_usd``; nothing was sent."""


@dataclass(frozen=True)
class Pricing:
    input: float = 0.0   # USD per 1M input tokens
    output: float = 0.0  # USD per 1M output tokens

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1e6


def estimate_tokens(request: LLMRequest) -> tuple[int, int]:
    chars = len(request.prompt) + len(request.system or "")
    output = request.params.get("max_output_tokens") or DEFAULT_OUTPUT_TOKENS_ESTIMATE
    return math.ceil(chars / CHARS_PER_TOKEN), int(output)


@dataclass
class CostLedger:
    provider: str
    model: str
    pricing: Pricing
    max_cost_usd: float | None = None
    experiment: str | None = None
    calls: int = 0          # successful calls sent to the provider
    cached: int = 0         # answers served from the cache
    retries: int = 0        # attempts repeated after a transient error
    failures: int = 0       # requests given up on (retries exhausted or a permanent error)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    attempt_errors: dict[str, int] = field(default_factory=dict)  # transient error kind -> count
    _reserved: float = 0.0  # estimates of calls in flight

    def estimate(self, request: LLMRequest) -> float:
        return self.pricing.cost(*estimate_tokens(request))

    def reserve(self, request: LLMRequest) -> float:
        """Book a call's estimate before sending it, or raise if it could push spending past the ceiling."""
        estimate = self.estimate(request)
        if self.max_cost_usd is not None and self.cost_usd + self._reserved + estimate > self.max_cost_usd:
            raise CostCeilingReached(
                f"LLM cost ceiling reached: spent ${self.cost_usd:.6f}, ${self._reserved:.6f} in flight, the next "
                f"'{request.task}' call may cost ${estimate:.6f} > max_cost_usd ${self.max_cost_usd:g} (answers so "
                f"far are cached: a rerun pays only for the rest, again up to max_cost_usd)",
                experiment=self.experiment, key="llm.max_cost_usd")
        self._reserved += estimate
        return estimate

    def release(self, estimate: float) -> None:
        self._reserved = max(0.0, self._reserved - estimate)

    def record_success(self, result: LLMResult) -> None:
        self.calls += 1
        self.input_tokens += result.input_tokens
        self.output_tokens += result.output_tokens
        self.cost_usd += self.pricing.cost(result.input_tokens, result.output_tokens)

    def record_retry(self) -> None:
        self.retries += 1

    def record_attempt_error(self, kind: str) -> None:
        self.attempt_errors[kind] = self.attempt_errors.get(kind, 0) + 1

    def as_dict(self) -> dict:
        return {"experiment": self.experiment, "provider": self.provider, "model": self.model,
                "pricing": {"input": self.pricing.input, "output": self.pricing.output},
                "max_cost_usd": self.max_cost_usd, "calls": self.calls, "cached": self.cached,
                "retries": self.retries, "failures": self.failures, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cost_usd": round(self.cost_usd, 8),
                "attempt_errors": dict(sorted(self.attempt_errors.items()))}
