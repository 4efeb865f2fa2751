"""Stand-in LLM clients for trace tests: the offline provider's behaviour, and a scripted 'LLM'."""
from __future__ import annotations

from meds1.llm.base import OFFLINE_TASKS, LLMResult


class OfflineStandIn:
    """What the offline provider does: answer each request with OFFLINE_TASKS[request.task]."""

    def __init__(self):
        self.requests = []

    def run_many(self, requests):
        self.requests += requests
        answers = [OFFLINE_TASKS.get(r.task)(r) for r in requests]
        return [LLMResult(text=a[0] if isinstance(a, tuple) else a) for a in answers]


class Scripted:
    """Answers each request with ``reply(request)``; records the requests."""

    def __init__(self, reply):
        self.reply, self.requests = reply, []

    def run_many(self, requests):
        self.requests += requests
        return [LLMResult(text=self.reply(r)) for r in requests]
