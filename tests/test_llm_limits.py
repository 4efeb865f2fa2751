"""Limits shared by every curate job on one cache folder (meds1.llm.limits): the pacer and the cost ceiling."""
from __future__ import annotations

import bisect
import json
import multiprocessing
import os

import pytest

from fake_gemini import FakeGemini
from meds1.llm import CostCeilingReached, LLMClient, LLMRequest
from meds1.llm.limits import SharedPacer, SharedState, bucket_for


def most_in_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    return max(bisect.bisect_right(ordered, t + window) - i for i, t in enumerate(ordered))


class Clock:
    def __init__(self):
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("rpm", [1, 60, 600, 2000])
def test_two_pacers_on_one_folder_never_exceed_rpm_in_any_60s_window_and_keep_99_percent(tmp_path, rpm):
    clock = Clock()
    jobs = [SharedPacer(SharedState(tmp_path), "gemini/m", rpm, clock=clock) for _ in range(2)]
    n = max(3 * rpm, 30)  # three minutes of traffic, the two jobs taking in turn as fast as they can
    sends = []
    while len(sends) < n:
        for job in jobs:
            wait = job.take()
            clock.now += wait + (0.003 if wait else 0.0)  # a waiter wakes a little late
            if wait == 0.0:
                sends.append(clock.now)
    assert most_in_window(sends, 60.0) <= rpm
    pace = (n - 1) / (sends[-1] - sends[0]) * 60.0
    assert pace >= 0.99 * rpm or rpm < 100  # at tiny rpm one burst token is a large share of a minute


def test_the_bucket_keeps_a_closed_60s_window_under_rpm_plus_one():
    for rpm in (1, 7, 60, 199, 200, 2000, 30_000):
        burst, rate = bucket_for(rpm)
        assert 1 <= burst <= 10 and burst + rate * 60.0 < rpm + 1


def _spend(cache: str, url: str, worker: int) -> None:
    os.environ.update({"GOOGLE_GEMINI_BASE_URL": url, "GEMINI_API_KEY": "test-key"})
    cfg = {"provider": "gemini", "model": "m", "pricing": {"input": 1000.0, "output": 1000.0}, "max_cost_usd": 0.5,
           "concurrency": 2, "max_retries": 0, "timeout_s": 5}
    requests = [LLMRequest(task="judge", prompt=f"{worker}:{i:03d}" + "x" * 394, params={"max_output_tokens": 100})
                for i in range(10)]
    try:
        LLMClient(cfg, cache, experiment=f"job-{worker}").run_many(requests)
    except CostCeilingReached:
        pass


def test_the_cost_ceiling_holds_across_parallel_jobs(tmp_path):
    # each call: estimate $0.2 (400 chars / 4 + 100 max tokens at $1000 per 1M), actual $0.101; ceiling $0.5
    with FakeGemini(responder=lambda prompt, body: "ok", latency=0.05) as fake:
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_spend, args=(str(tmp_path), fake.url, w)) for w in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        sent = fake.count
    assert [p.exitcode for p in procs] == [0, 0, 0]
    lines = [json.loads(x) for x in (tmp_path / "llm_usage" / "ledger.jsonl").read_text().splitlines()]
    spent = sum(x["cost_usd"] for x in lines)
    assert len(lines) == sent and spent <= 0.5          # three jobs together stayed under one ceiling
    assert spent > 0.5 - 0.2 - 0.101                    # and stopped only when the next call could cross it
    assert len({x["experiment"] for x in lines}) >= 1
    # a fourth job on the same cache may spend only what is left
    with FakeGemini(responder=lambda prompt, body: "ok") as fake:
        _spend(str(tmp_path), fake.url, 9)
        fourth = fake.count
    total = sum(json.loads(x)["cost_usd"] for x in (tmp_path / "llm_usage" / "ledger.jsonl").read_text().splitlines())
    assert total <= 0.5 < total + 0.2 and (fourth == 0) == (spent + 0.2 > 0.5)
