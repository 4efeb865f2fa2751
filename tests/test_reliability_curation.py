"""Curation with a real LLM client against the fake Gemini: kill -9 and rerun, API faults, auth errors, secrets."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fake_gemini import FakeGemini
from meds1.errors import MedS1Error

PLANTED_KEY = "planted-test-key-0123456789abcdefXYZ"  # fake; must never be written anywhere


def step_responder(prompt: str, body: dict) -> str:
    """A deterministic 'LLM' that rewrites any trace into two titled steps (content depends on the prompt only)."""
    digest = abs(hash(prompt)) % 10_000
    return f"## Step 1: Findings\n\nKey findings noted ({digest}).\n\n## Step 2: Conclusion\n\nThis supports the answer."


def curate_spec(tmp: Path, shared_data: Path, url: str, **llm) -> dict:
    return {
        "experiment": "rel", "seed": 7, "config_hash": "x", "cache_dir": str(tmp / "cache"), "validation_fraction": 0.1,
        "model": {"key": "tiny", "system_prompt": None}, "curation_settings": {},
        "dataset": {"key": "shared", "file_path": str(shared_data / "huatuogpt-o1_demo_data.json")},
        "curation": {"method": "random", "n_samples": 40, "format": "huatuo", "extract": ["step"],
                     "perturbation": None, "restore": False},
        "llm": {"provider": "gemini", "model": "gemini-test", "base_url": url, "pricing": {"input": 1.0, "output": 2.0},
                "concurrency": 4, "max_retries": 8, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 1.0,
                **llm},
    }


def run_curate(spec: dict, out: Path) -> dict:
    from meds1.curation.pipeline import curate

    return curate(spec, dataset=str(out / "dataset"), rows=str(out / "rows.parquet"), stats=str(out / "stats.json"),
                  cost=str(out / "llm_cost.json"))


@pytest.fixture
def gemini_env(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", PLANTED_KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)


def test_faults_on_30_percent_of_calls_leave_output_identical(tmp_path, shared_data, gemini_env):
    with FakeGemini(responder=step_responder) as clean:
        ref = run_curate(curate_spec(tmp_path / "a", shared_data, clean.url), tmp_path / "a")
    faults = {"429": 0.1, "500": 0.1, "timeout": 0.05, "malformed": 0.05}
    with FakeGemini(responder=step_responder, faults=faults, seed=3, timeout_sleep=1.5) as flaky:
        got = run_curate(curate_spec(tmp_path / "b", shared_data, flaky.url), tmp_path / "b")
        injected = flaky.faults_injected()
    assert sum(injected.values()) >= 5 and set(injected) >= {"429", "500"}
    rows_a = pd.read_parquet(tmp_path / "a/rows.parquet")
    rows_b = pd.read_parquet(tmp_path / "b/rows.parquet")
    pd.testing.assert_frame_equal(rows_a, rows_b)
    ledger = json.loads((tmp_path / "b/llm_cost.json").read_text())
    assert ledger["calls"] == 40 == ref["llm"]["calls"]          # only successful calls are counted
    assert ledger["retries"] >= sum(injected.values())
    assert ledger["cost_usd"] == json.loads((tmp_path / "a/llm_cost.json").read_text())["cost_usd"]


def test_auth_error_stops_at_once_with_a_clear_message(tmp_path, shared_data, gemini_env):
    with FakeGemini(responder=step_responder, faults={"401": 1.0}) as fake:
        with pytest.raises(MedS1Error) as info:
            run_curate(curate_spec(tmp_path, shared_data, fake.url), tmp_path / "out")
        assert fake.count == 1
    assert "401" in str(info.value) and "GEMINI_API_KEY" in str(info.value)
    assert not (tmp_path / "out" / "stats.json").exists() and not (tmp_path / "out" / "dataset").exists()


KILL_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_reliability_curation import run_curate
spec = json.loads(Path({spec!r}).read_text())
run_curate(spec, Path({out!r}))
"""


def test_sigkill_mid_curation_then_rerun_reuses_every_cached_response(tmp_path, shared_data, gemini_env):
    with FakeGemini(responder=step_responder, latency=0.15) as fake:
        spec = curate_spec(tmp_path, shared_data, fake.url, concurrency=2)
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), spec=str(tmp_path / "spec.json"),
                                    out=str(tmp_path / "out"))
        proc = subprocess.Popen([sys.executable, "-c", script], env=os.environ.copy())
        deadline = time.time() + 120
        while fake.count < 12 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = fake.count
        cached = len(list((tmp_path / "cache" / "llm").rglob("*.json")))
        assert 0 < cached < 40 and not (tmp_path / "out" / "stats.json").exists()
        fake.reset()
        stats = run_curate(spec, tmp_path / "out")
        assert fake.count == 40 - cached                        # every cached response reused, nothing else skipped
        assert stats["llm"]["cached"] == cached and first >= cached
    rerun = run_curate(spec, tmp_path / "again")
    assert rerun["llm"]["calls"] == 0 and rerun["llm"]["cached"] == 40


def test_planted_api_key_appears_in_no_file(tmp_path, shared_data, gemini_env):
    with FakeGemini(responder=step_responder, faults={"429": 0.2}, seed=1) as fake:
        run_curate(curate_spec(tmp_path, shared_data, fake.url), tmp_path / "out")
        assert fake.requests[0].headers.get("x-goog-api-key") == PLANTED_KEY   # it was really used
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert PLANTED_KEY.encode() not in path.read_bytes(), path
