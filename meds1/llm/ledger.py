"""Cost ledger and cost ceiling. Prices are USD per 1M tokens (the llm block's ``pricing: {input, output}``).

Only successful calls add tokens and cost. The ceiling is checked BEFORE each attempt against (spent under this cache
folder by every job + estimates of every call in flight + this call's estimate), so no call is ever sent past
``max_cost_usd``, however many curate jobs run at once (``meds1.llm.limits``). A call's estimate: (prompt + system
characters) / 4 input tokens and ``max_output_tokens`` output tokens. Cached answers cost nothing and do not count.

``as_dict()`` is what ``llm_cost.json`` holds: ``calls``/``input_tokens``/``output_tokens``/``cost_usd`` summed over
every run of this experiment with this provider and model (the append-only ledger remembers killed and resumed
runs), ``cached``/``retries``/``failures`` of this run, and ``this_run`` with this run's own figures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from meds1.errors import MedS1Error
from meds1.llm.base import LLMRequest, LLMResult
from meds1.llm.limits import CeilingReached, SharedSpending
from meds1.llm.settings import Pricing

CHARS_PER_TOKEN = 4
# used for the estimate when a request sets no max_output_tokens; set max_output_tokens to make the ceiling tight
DEFAULT_OUTPUT_TOKENS_ESTIMATE = 1024

__all__ = ["CostCeilingReached", "CostLedger", "Pricing", "estimate_tokens"]


class CostCeilingReached(MedS1Error):
    """The next call could push spending past ``max_cost_usd``; nothing was sent."""


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
    shared: SharedSpending | None = None  # None: nothing is paid (the offline provider)
    calls: int = 0          # successful calls sent to the provider
    cached: int = 0         # answers served from the cache
    retries: int = 0        # attempts repeated after a transient error
    failures: int = 0       # requests given up on (retries exhausted, a blocked reply, a permanent error)
    unusable_replies: int = 0  # billed replies without usable text (empty, blocked, thinking only)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    attempt_errors: dict[str, int] = field(default_factory=dict)  # transient error kind -> count
    failure_reasons: dict[str, int] = field(default_factory=dict)  # why requests were given up on -> count

    def estimate(self, request: LLMRequest) -> float:
        return self.pricing.cost(*estimate_tokens(request))

    def reserve(self, request: LLMRequest) -> str | None:
        """Book a call's estimate before sending it, or raise if it could push spending past the ceiling."""
        if self.shared is None:
            return None
        estimate = self.estimate(request)
        try:
            return self.shared.reserve(estimate, f"'{request.task}'")
        except CeilingReached as err:
            raise CostCeilingReached(
                f"LLM cost ceiling reached: {err} > max_cost_usd ${self.max_cost_usd:g} (answers so far are cached: "
                f"a rerun pays only for the rest, within what is left of max_cost_usd)",
                experiment=self.experiment, key="llm.max_cost_usd") from None

    def release(self, token: str | None, result: LLMResult | None = None,
                unusable: tuple[int, int] | None = None) -> None:
        """The call is over: drop its booking. A successful one (``result``) is counted here and in the shared
        ledger; so are the billed tokens of a reply that had no usable text (``unusable``: input, output)."""
        if result is not None:
            self.record_success(result)
            unusable = None
        tokens = (result.input_tokens, result.output_tokens) if result is not None else unusable
        if unusable is not None:
            self.unusable_replies += 1
            self.input_tokens, self.output_tokens = self.input_tokens + unusable[0], self.output_tokens + unusable[1]
            self.cost_usd += self.pricing.cost(*unusable)
        if self.shared is None:
            return
        record = None
        if tokens is not None:
            record = {"experiment": self.experiment, "provider": self.provider, "model": self.model,
                      "input_tokens": tokens[0], "output_tokens": tokens[1], "cost_usd": self.pricing.cost(*tokens),
                      "usable": result is not None}
        self.shared.settle(token, record)

    def record_success(self, result: LLMResult) -> None:
        self.calls += 1
        self.input_tokens += result.input_tokens
        self.output_tokens += result.output_tokens
        self.cost_usd += self.pricing.cost(result.input_tokens, result.output_tokens)

    def record_retry(self) -> None:
        self.retries += 1

    def record_attempt_error(self, kind: str) -> None:
        self.attempt_errors[kind] = self.attempt_errors.get(kind, 0) + 1

    def record_failure(self, kind: str) -> None:
        self.failures += 1
        self.failure_reasons[kind] = self.failure_reasons.get(kind, 0) + 1

    def this_run(self) -> dict:
        return {"calls": self.calls, "cached": self.cached, "retries": self.retries, "failures": self.failures,
                "unusable_replies": self.unusable_replies, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cost_usd": round(self.cost_usd, 8), "attempt_errors": dict(sorted(self.attempt_errors.items())),
                "failure_reasons": dict(sorted(self.failure_reasons.items()))}

    def as_dict(self) -> dict:
        run = self.this_run()
        paid = {k: run[k] for k in ("calls", "input_tokens", "output_tokens", "cost_usd")} | {"runs": 1}
        if self.shared is not None:
            paid = self.shared.totals(experiment=self.experiment, provider=self.provider, model=self.model)
        return {"experiment": self.experiment, "provider": self.provider, "model": self.model,
                "pricing": {"input": self.pricing.input, "output": self.pricing.output},
                "max_cost_usd": self.max_cost_usd, **paid, "cached": self.cached, "retries": self.retries,
                "failures": self.failures, "attempt_errors": run["attempt_errors"], "this_run": run}
