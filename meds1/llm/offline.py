"""The ``offline`` provider: answers each request with the deterministic function registered for its task.

Trace transforms register their implementations in ``meds1.traces.offline``
(``@OFFLINE_TASKS.register("extract:step")``); that module is imported here when it exists, so a script that only
builds a client still finds them.
"""
from __future__ import annotations

import importlib
import importlib.util

from meds1.llm.base import OFFLINE_TASKS, LLMRequest, LLMResult
from meds1.llm.providers import PROVIDERS, Provider

IMPLEMENTATION_MODULES = ("meds1.traces.offline", "meds1.curation.offline_tasks")


def load_offline_implementations() -> None:
    for module in IMPLEMENTATION_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def describe_rule(fn) -> str:
    """What the result's ``meta["offline_rule"]`` says when the function does not say it itself."""
    doc = (getattr(fn, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else getattr(fn, "__name__", "offline rule")


@PROVIDERS.register("offline")
class OfflineProvider(Provider):
    name = "offline"
    cacheable = False  # the rules are code: caching would keep stale answers after an edit, and they cost nothing
    network = False

    def __init__(self, cfg, *, experiment=None):
        super().__init__(cfg, experiment=experiment)
        self.model = self.model or "offline"
        load_offline_implementations()

    async def generate(self, request: LLMRequest) -> LLMResult:
        fn = OFFLINE_TASKS.get(request.task, experiment=self.experiment, key="llm.provider")
        answer = fn(request)
        text, meta = answer if isinstance(answer, tuple) else (answer, {})
        return LLMResult(text=str(text), provider=self.name, model=self.model,
                         meta={"offline_rule": describe_rule(fn), **dict(meta)})
