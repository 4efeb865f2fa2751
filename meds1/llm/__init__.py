"""The curation LLM layer: providers (gemini, offline), persistent cache, rate limit, retries, cost ledger.

Curation code builds ``LLMRequest``s and calls ``build_client(spec).run_many(requests)``; see ``meds1.llm.client``.
"""
from meds1.llm.base import OFFLINE_TASKS, LLMRequest, LLMResult
from meds1.llm.client import LLMClient, build_client
from meds1.llm.ledger import CostCeilingReached
from meds1.llm.providers import PROVIDERS, Provider, TransientLLMError

__all__ = ["OFFLINE_TASKS", "PROVIDERS", "CostCeilingReached", "LLMClient", "LLMRequest", "LLMResult", "Provider",
           "TransientLLMError", "build_client"]
