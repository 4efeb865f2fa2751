"""Transforms without an LLM call: ``none`` (no thinking section: no-CoT SFT) and ``nejmcr`` (the case report itself
is the reasoning)."""
from __future__ import annotations

from meds1.plugins import TRACE_TRANSFORMS


@TRACE_TRANSFORMS.register("none")
def extract_none(rows, client):
    """No thinking section: the format layer then omits it."""
    return ["" for _ in rows]


@TRACE_TRANSFORMS.register("nejmcr")
def extract_nejmcr(rows, client):
    """The case report itself is the reasoning; no LLM call."""
    return [row.cot for row in rows]
