"""The curation LLM layer: providers (gemini, offline), persistent cache, shared pacing and cost ceiling, retries,
cost ledger. It imports only the base modules (errors, options, plugins, io): it knows no transform, method or task.

Curation code builds ``LLMRequest``s and calls ``build_client(spec).run_many(requests)``; see ``meds1.llm.client``.
Names are imported on first use, so reading ``meds1.llm.settings`` (the registry does, at parse time) stays cheap.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "LLMRequest": "meds1.llm.base", "LLMResult": "meds1.llm.base",
    "LLMClient": "meds1.llm.client", "build_client": "meds1.llm.client",
    "CostCeilingReached": "meds1.llm.ledger",
    "PROVIDERS": "meds1.llm.providers", "Provider": "meds1.llm.providers",
    "RequestFailed": "meds1.llm.providers", "TransientLLMError": "meds1.llm.providers",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'meds1.llm' has no attribute '{name}'")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
