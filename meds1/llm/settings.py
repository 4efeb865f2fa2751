"""The llm block: what a curate job's LLM client is told (``spec["llm"]``), validated strictly, defaults in one place.

The block is built by the registry from a config.json model entry (``ENTRY_KEYS``) plus ``provider``, ``model`` and
the workflow's ``max_cost_usd``. Anything odd is one MedS1Error line naming ``llm.<key>``.

    settings = parse_settings({"provider": "gemini", "model": "gemini-3.1-flash-lite", "rpm": 2000})
    settings.max_output_tokens      # 8192: the default cap of a call that sets none (the seed's)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meds1.errors import MedS1Error

# What the client takes from a config.json model entry (the one list; meds1.registry.entries reads it).
ENTRY_KEYS = ("rpm", "pricing", "base_url", "concurrency", "max_retries", "timeout_s", "backoff_base_s",
              "backoff_max_s", "max_output_tokens", "thinking", "thinking_reserve_tokens", "max_failed_share")
LLM_KEYS = ("provider", "model", "max_cost_usd", *ENTRY_KEYS)
THINKING_KEYS = ("thinking_level", "thinking_budget", "include_thoughts")  # google-genai ThinkingConfig fields

DEFAULT_CONCURRENCY = 32
DEFAULT_MAX_RETRIES = 6
DEFAULT_BACKOFF_BASE_S = 1.0
DEFAULT_BACKOFF_MAX_S = 60.0
DEFAULT_MAX_OUTPUT_TOKENS = 8192   # the seed's limit for every rewrite
DEFAULT_MAX_FAILED_SHARE = 0.05    # more failed requests than this share of a batch (or rows of a job) fails the job


@dataclass(frozen=True)
class Pricing:
    input: float = 0.0   # USD per 1M input tokens
    output: float = 0.0  # USD per 1M output tokens (thinking tokens are billed as output)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1e6


@dataclass(frozen=True)
class LLMSettings:
    provider: str
    model: str
    pricing: Pricing
    rpm: float | None
    max_cost_usd: float | None
    concurrency: int
    max_retries: int
    backoff_base_s: float
    backoff_max_s: float
    max_output_tokens: int
    thinking: dict | None              # ThinkingConfig fields sent with every call that sets none
    thinking_reserve_tokens: int       # added to every call's max_output_tokens when the model thinks
    max_failed_share: float

    def default_params(self) -> dict:
        """Generation params every request gets unless it sets its own (so they reach the cache key and the cost)."""
        out: dict[str, Any] = {"max_output_tokens": self.max_output_tokens}
        if self.thinking is not None:
            out["thinking_config"] = dict(self.thinking)
        return out

    @property
    def thinks(self) -> bool:
        return self.thinking is None or self.thinking.get("thinking_budget") != 0


def parse_settings(cfg: Any, experiment: str | None = None) -> LLMSettings:
    """Validate the llm block strictly: one-line MedS1Error naming the key on anything odd."""
    if not isinstance(cfg, dict):
        raise MedS1Error("the llm block must be a mapping", experiment=experiment, key="llm")
    _check_keys(cfg, experiment)
    num = _NumberReader(cfg, experiment)
    max_cost = num.get("max_cost_usd", None, minimum=0.0)
    if max_cost is not None and not cfg.get("pricing"):
        raise MedS1Error("max_cost_usd needs pricing {input, output} (USD per 1M tokens)", experiment=experiment,
                         key="llm.pricing")
    return LLMSettings(
        provider=str(cfg["provider"]), model=str(cfg.get("model") or ""), pricing=_parse_pricing(cfg, experiment),
        rpm=num.get("rpm", None, minimum=1e-9), max_cost_usd=max_cost,
        concurrency=num.get("concurrency", DEFAULT_CONCURRENCY, minimum=1, integer=True),
        max_retries=num.get("max_retries", DEFAULT_MAX_RETRIES, minimum=0, integer=True),
        backoff_base_s=num.get("backoff_base_s", DEFAULT_BACKOFF_BASE_S, minimum=0.0),
        backoff_max_s=num.get("backoff_max_s", DEFAULT_BACKOFF_MAX_S, minimum=0.0),
        max_output_tokens=num.get("max_output_tokens", DEFAULT_MAX_OUTPUT_TOKENS, minimum=1, integer=True),
        thinking=_parse_thinking(cfg.get("thinking"), experiment),
        thinking_reserve_tokens=num.get("thinking_reserve_tokens", 0, minimum=0, integer=True),
        max_failed_share=num.get("max_failed_share", DEFAULT_MAX_FAILED_SHARE, minimum=0.0, maximum=1.0),
    )


def _check_keys(cfg: dict, experiment: str | None) -> None:
    from meds1.llm.providers import PROVIDERS

    for key in cfg:
        if "api_key" in key.lower() or key.lower() in ("key", "credentials", "token"):
            raise MedS1Error("credentials are read from the environment only (GEMINI_API_KEY / GOOGLE_API_KEY or "
                             "Vertex AI settings); remove it from the config", experiment=experiment, key=f"llm.{key}")
        if key not in LLM_KEYS:
            raise MedS1Error("unknown key", experiment=experiment, key=f"llm.{key}", choices=LLM_KEYS, value=key)
    if not cfg.get("provider"):
        raise MedS1Error("missing provider", experiment=experiment, key="llm.provider", choices=PROVIDERS.names())


@dataclass
class _NumberReader:
    cfg: dict
    experiment: str | None
    prefix: str = "llm"

    def get(self, key: str, default, *, minimum: float, maximum: float | None = None, integer: bool = False):
        value = self.cfg.get(key)
        if value is None:
            return default
        if isinstance(value, float) and integer and value.is_integer():
            value = int(value)
        ok = (isinstance(value, int if integer else (int, float)) and not isinstance(value, bool) and value >= minimum
              and (maximum is None or value <= maximum))
        if not ok:
            kind = "an integer" if integer else "a number"
            bound = f" and <= {maximum:g}" if maximum is not None else ""
            raise MedS1Error(f"must be {kind} >= {minimum:g}{bound}, got {value!r}", experiment=self.experiment,
                             key=f"{self.prefix}.{key}")
        return value if integer else float(value)


def _parse_pricing(cfg: dict, experiment: str | None) -> Pricing:
    pricing = cfg.get("pricing") or {}
    if not isinstance(pricing, dict) or set(pricing) - {"input", "output"}:
        raise MedS1Error(f"must be {{'input': USD per 1M tokens, 'output': USD per 1M tokens}}, got {pricing!r}",
                         experiment=experiment, key="llm.pricing")
    num = _NumberReader(pricing, experiment, "llm.pricing")
    return Pricing(input=num.get("input", 0.0, minimum=0.0), output=num.get("output", 0.0, minimum=0.0))


def _parse_thinking(value: Any, experiment: str | None) -> dict | None:
    """``{"thinking_level": "minimal"}`` (Gemini 3) or ``{"thinking_budget": 0}`` (Gemini 2.5: 0 = off)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value or set(value) - set(THINKING_KEYS):
        raise MedS1Error(f"must be a mapping of {', '.join(THINKING_KEYS)} (e.g. {{'thinking_level': 'minimal'}}), "
                         f"got {value!r}", experiment=experiment, key="llm.thinking")
    return dict(value)
