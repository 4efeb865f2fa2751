"""The ``offline`` provider: answers each request with the deterministic stand-in the request carries.

Whoever builds a request attaches its stand-in (``LLMRequest(..., offline=fn)``, ``fn(request) -> text | (text,
meta)``), so this provider knows no task. The answer's ``meta["offline_rule"]`` says what the stand-in did.
"""
from __future__ import annotations

from meds1.errors import MedS1Error
from meds1.llm.base import LLMRequest, LLMResult
from meds1.llm.providers import PROVIDERS, Provider


def describe_rule(fn) -> str:
    """What the result's ``meta["offline_rule"]`` says when the function does not say it itself."""
    doc = (getattr(fn, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else getattr(fn, "__name__", "offline rule")


def offline_answer(request: LLMRequest) -> tuple[str, dict]:
    """(text, meta) of the request's stand-in; a request without one is a one-line error naming its task."""
    if request.offline is None:
        raise MedS1Error(f"the request for task '{request.task}' carries no offline stand-in (LLMRequest.offline), "
                         "so the offline provider cannot answer it", key="llm.provider")
    answer = request.offline(request)
    text, meta = answer if isinstance(answer, tuple) else (answer, {})
    return str(text), {"offline_rule": describe_rule(request.offline), **dict(meta)}


@PROVIDERS.register("offline")
class OfflineProvider(Provider):
    name = "offline"
    cacheable = False  # the rules are code: caching would keep stale answers after an edit, and they cost nothing
    network = False

    def __init__(self, cfg, *, experiment=None):
        super().__init__(cfg, experiment=experiment)
        self.model = self.model or "offline"

    async def generate(self, request: LLMRequest) -> LLMResult:
        try:
            text, meta = offline_answer(request)
        except MedS1Error as err:
            raise MedS1Error(err.message, experiment=self.experiment, key=err.key) from None
        return LLMResult(text=text, provider=self.name, model=self.model, meta=meta)
