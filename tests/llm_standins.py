"""Stand-in LLM clients for trace tests (the offline provider's behaviour, a scripted 'LLM') and the trace fixture."""
from __future__ import annotations

import json
from pathlib import Path

from meds1.llm.base import LLMResult
from meds1.llm.offline import offline_answer

TRACE_ROWS = Path(__file__).parent / "data" / "traces_rows.json"


def trace_rows(kind: str | None = None) -> list[dict]:
    """Our own 12 training rows (6 MCQ, 6 free text) with multi-paragraph HuatuoGPT-o1-style traces."""
    rows = json.loads(TRACE_ROWS.read_text())
    return [r for r in rows if kind is None or r["id"].startswith(f"trace-{kind}")]


class OfflineStandIn:
    """What the offline provider does: answer each request with the stand-in it carries (``request.offline``)."""

    def __init__(self):
        self.requests, self.results = [], []

    def run_many(self, requests, desc: str = "", **kw):
        results = []
        for request in requests:
            text, meta = offline_answer(request)
            results.append(LLMResult(text=text, provider="offline", meta=meta))
        self.requests += requests
        self.results += results
        return results


class Scripted:
    """Answers each request with ``reply(request)`` (None: the call failed after retries); records the requests."""

    def __init__(self, reply):
        self.reply, self.requests = reply, []

    def run_many(self, requests, desc: str = "", **kw):
        self.requests += requests
        out = []
        for r in requests:
            text = self.reply(r)
            out.append(LLMResult(text="", error="gave_up_500: scripted failure") if text is None else LLMResult(text=text))
        return out
