"""Curation LLM client against the loopback fake Gemini: achieved request rate under an ``rpm`` limit, and a cached rerun.

    .venv/bin/python bench/bench_llm.py             # 3 runs of 1,000 prompts at rpm 2000 (about 30 s each) + cached reruns
    .venv/bin/python bench/bench_llm.py --quick     # 200 prompts per run (about 6 s each)
    .venv/bin/python bench/bench_llm.py --prompts 3000 --rpm 2000   # > 60 s of traffic: the 60 s window really binds

The real google-genai client talks to ``tests/fake_gemini.py`` (0.2 s latency per answer) through
``meds1.llm.client.LLMClient`` with ``concurrency: 64``; the pacer is the one every job on a cache folder shares
(``meds1.llm.limits``: a token bucket booked under a file lock). Rates come from the fake's recorded arrival times:

- overall rate = (arrivals - 1) / (last - first arrival) x 60, the pace the pacer kept (target >= 99 % of rpm);
- the most arrivals in any sliding 60 s window (must never exceed rpm), and the same for shorter windows against
  what the pacer's bucket allows there (burst + refill x w, + 1 for the closed window's edge), which shows bursts a
  short run cannot hit in 60 s;
- a second client on the same cache folder answers every prompt with 0 calls to the fake.
"""
from __future__ import annotations

import argparse
import bisect
import os
import statistics
import tempfile
from pathlib import Path

from common import import_tests_helpers, load_banner, median, print_table, timed, verdict

import_tests_helpers()
from fake_gemini import FakeGemini  # noqa: E402

from meds1.llm.base import LLMRequest  # noqa: E402
from meds1.llm.client import LLMClient  # noqa: E402
from meds1.llm.limits import bucket_for  # noqa: E402

PRICING = {"input": 0.25, "output": 1.50}  # USD per 1M tokens (gemini-3.1-flash-lite, config.json)
TARGET_FRACTION = 0.99


def max_in_window(times: list[float], window_s: float) -> int:
    """The most arrivals inside any window [t, t + window_s] (a window starting at each arrival is enough)."""
    ordered = sorted(times)
    return max((bisect.bisect_right(ordered, t + window_s) - i for i, t in enumerate(ordered)), default=0)


def overall_rpm(times: list[float]) -> float:
    span = max(times) - min(times)
    return (len(times) - 1) / span * 60.0 if span > 0 else float("inf")


def make_client(url: str, rpm: float, cache_dir: Path) -> LLMClient:
    cfg = {"provider": "gemini", "model": "m", "base_url": url, "rpm": rpm, "concurrency": 64, "pricing": PRICING}
    return LLMClient(cfg, cache_dir)


def prompts(n: int) -> list[LLMRequest]:
    return [LLMRequest(task="bench", prompt=f"Question {i}: which option is right?", params={"temperature": 0.0})
            for i in range(n)]


def window_rows(times: list[float], rpm: float) -> list[tuple]:
    burst, rate = bucket_for(rpm)
    rows = []
    for window in (1.0, 5.0, 15.0, 60.0):
        allowed = min(rpm, burst + rate * window)
        most = max_in_window(times, window)
        rows.append((f"{window:g} s", most, allowed, "ok" if most <= int(allowed) + 1 else "ABOVE"))
    return rows


def gap_summary(times: list[float], rpm: float) -> str:
    """Where the pace goes: the first call is sent alone (its answer is awaited), then each gap vs 60 / rpm."""
    ordered = sorted(times)
    gaps = [b - a for a, b in zip(ordered, ordered[1:])]
    if len(gaps) < 2:
        return "too few arrivals for gap statistics"
    rest = gaps[1:]
    return (f"first gap {gaps[0] * 1e3:.0f} ms (the first request goes alone); later gaps: median "
            f"{statistics.median(rest) * 1e3:.2f} ms, mean {statistics.mean(rest) * 1e3:.2f} ms, max "
            f"{max(rest) * 1e3:.1f} ms; the limit allows {60e3 / rpm:.2f} ms")


def cold_and_cached(fake: FakeGemini, n: int, rpm: float, cache_dir: Path) -> dict:
    """One cold run (every prompt a call) and a rerun on the same cache with a fresh client."""
    fake.reset()
    first, first_s = timed(lambda: make_client(fake.url, rpm, cache_dir).run_many(prompts(n), desc="cold"))
    times, calls_cold = [r.time for r in fake.requests], fake.count
    fake.reset()
    rerun, rerun_s = timed(lambda: make_client(fake.url, rpm, cache_dir).run_many(prompts(n), desc="cached"))
    assert calls_cold == n, f"expected {n} calls, the fake saw {calls_cold}"
    return {"times": times, "calls_cold": calls_cold, "cold_s": first_s, "calls_warm": fake.count,
            "warm_s": rerun_s, "same_answers": [r.text for r in first] == [r.text for r in rerun]}


def run(n: int, rpm: float, latency: float, runs: int) -> None:
    results = []
    with FakeGemini(latency=latency) as fake:
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as tmp:  # a fresh cache per run: every run starts cold
                results.append(cold_and_cached(fake, n, rpm, Path(tmp)))
    print(f"\n{n} prompts, rpm limit {rpm:g}, latency {latency} s, concurrency 64, {runs} run(s)")
    print_table(["run", "calls cold", "cold wall s", "pace req/min", "% of limit", "max in 60 s", "calls rerun",
                 "rerun wall s"],
                [(i + 1, r["calls_cold"], r["cold_s"], overall_rpm(r["times"]), 100 * overall_rpm(r["times"]) / rpm,
                  max_in_window(r["times"], 60.0), r["calls_warm"], r["warm_s"]) for i, r in enumerate(results)])
    last = results[-1]
    print("\nmost arrivals in any sliding window, last run (limit scaled to the window; +1 for the closed edge)")
    print_table(["window", "most arrivals", "allowed", "check"], window_rows(last["times"], rpm), digits=1)
    print(gap_summary(last["times"], rpm))
    pace = median(overall_rpm(r["times"]) for r in results)
    worst_60s = max(max_in_window(r["times"], 60.0) for r in results)
    warm_calls = max(r["calls_warm"] for r in results)
    print(f"\nmedian pace: {pace:,.1f} req/min = {pace / rpm:.1%} of the limit (target >= {TARGET_FRACTION:.0%}): "
          f"{verdict(pace / rpm, TARGET_FRACTION)}{'' if pace <= rpm * 1.001 else '  ABOVE THE LIMIT'}")
    print(f"most arrivals in any 60 s window: {worst_60s} <= {rpm:g}: {'met' if worst_60s <= rpm else 'NOT met'}")
    print(f"rerun on the same cache: at most {warm_calls} calls (target 0): {'met' if warm_calls == 0 else 'NOT met'}"
          f"; answers identical: {all(r['same_answers'] for r in results)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=1000)
    ap.add_argument("--rpm", type=float, default=2000)
    ap.add_argument("--latency", type=float, default=0.2, help="the fake's answer delay (s)")
    ap.add_argument("--runs", type=int, default=3, help="cold runs (each with a fresh cache); the median is reported")
    ap.add_argument("--quick", action="store_true", help="200 prompts")
    args = ap.parse_args()
    # a dummy key in this process only: a real one must never reach even a loopback server's request log
    os.environ["GEMINI_API_KEY"] = "bench-dummy-key"
    os.environ.pop("GOOGLE_API_KEY", None)  # the SDK prefers it over GEMINI_API_KEY
    print(load_banner("start"), flush=True)
    run(200 if args.quick else args.prompts, args.rpm, args.latency, args.runs)
    print(load_banner("end"))


if __name__ == "__main__":
    main()
