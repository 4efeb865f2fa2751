"""Curation with a real LLM client against the fake Gemini: kill -9 and rerun, API faults, auth errors, secrets,
rows given up on (blocked, empty, thinking-only replies), and the wrong-answer perturbation end to end.

Data: the project's own files only (the packaged demo set, tests/data/traces_rows.json)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from datasets import load_from_disk

from fake_gemini import FakeGemini
from llm_standins import TRACE_ROWS
from meds1.errors import MedS1Error

PLANTED_KEY = "planted-test-key-0123456789abcdefXYZ"  # fake; must never be written anywhere
DEMO_SFT = Path(__file__).resolve().parents[1] / "meds1" / "resources" / "data" / "demo_sft.json"


def step_responder(prompt: str, body: dict) -> str:
    """A deterministic 'LLM' that rewrites any trace into two titled steps (content depends on the prompt only)."""
    digest = abs(hash(prompt)) % 10_000
    return f"## Step 1: Findings\n\nKey findings noted ({digest}).\n\n## Step 2: Conclusion\n\nThis supports the answer."


def curate_spec(tmp: Path, url: str, data: Path = DEMO_SFT, **llm) -> dict:
    return {
        "experiment": "rel", "seed": 7, "config_hash": "x", "cache_dir": str(tmp / "cache"), "validation_fraction": 0.1,
        "model": {"key": "tiny", "system_prompt": None}, "curation_settings": {},
        "dataset": {"key": "own", "file_path": str(data)},
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


def test_faults_on_30_percent_of_calls_leave_output_identical(tmp_path, gemini_env):
    with FakeGemini(responder=step_responder) as clean:
        ref = run_curate(curate_spec(tmp_path / "a", clean.url), tmp_path / "a")
    faults = {"429": 0.1, "500": 0.1, "timeout": 0.05, "malformed": 0.05}
    with FakeGemini(responder=step_responder, faults=faults, seed=3, timeout_sleep=1.5) as flaky:
        got = run_curate(curate_spec(tmp_path / "b", flaky.url), tmp_path / "b")
        injected = flaky.faults_injected()
    assert sum(injected.values()) >= 5 and set(injected) >= {"429", "500"}
    rows_a = pd.read_parquet(tmp_path / "a/rows.parquet")
    rows_b = pd.read_parquet(tmp_path / "b/rows.parquet")
    pd.testing.assert_frame_equal(rows_a, rows_b)
    ledger = json.loads((tmp_path / "b/llm_cost.json").read_text())
    assert ledger["calls"] == 40 == ref["llm"]["calls"]          # only successful calls are counted
    assert ledger["retries"] >= sum(injected.values())
    assert ledger["cost_usd"] == json.loads((tmp_path / "a/llm_cost.json").read_text())["cost_usd"]


def test_auth_error_stops_at_once_with_a_clear_message(tmp_path, gemini_env):
    with FakeGemini(responder=step_responder, faults={"401": 1.0}) as fake:
        with pytest.raises(MedS1Error) as info:
            run_curate(curate_spec(tmp_path, fake.url), tmp_path / "out")
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


def test_sigkill_mid_curation_then_rerun_reuses_every_cached_response(tmp_path, gemini_env):
    with FakeGemini(responder=step_responder, latency=0.15) as fake:
        spec = curate_spec(tmp_path, fake.url, concurrency=2)
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
    rerun = run_curate(spec, tmp_path / "again")  # the fake is gone: any call would fail
    assert rerun["llm"]["cached"] == 40
    # llm_cost.json sums every run of the experiment: the killed one's spending is not lost
    ledger = json.loads((tmp_path / "out" / "llm_cost.json").read_text())
    assert ledger["calls"] == 40 and stats["llm"]["calls"] == 40


def test_planted_api_key_appears_in_no_file(tmp_path, gemini_env):
    with FakeGemini(responder=step_responder, faults={"429": 0.2}, seed=1) as fake:
        run_curate(curate_spec(tmp_path, fake.url), tmp_path / "out")
        assert fake.requests[0].headers.get("x-goog-api-key") == PLANTED_KEY   # it was really used
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert PLANTED_KEY.encode() not in path.read_bytes(), path


# ---- rows given up on, and the wrong-answer perturbation, through the whole curate stage

def trace_spec(tmp: Path, url: str, **curation) -> dict:
    spec = curate_spec(tmp, url, data=TRACE_ROWS, max_retries=1)
    spec["curation"] |= {"n_samples": 12, **curation}
    return spec


def section(prompt: str, head: str) -> str:
    """The text under a "Head:" line of a rendered prompt, up to the next blank line."""
    found = re.search(rf"^{head}:\n(.*?)(?:\n\n|\Z)", prompt, re.DOTALL | re.MULTILINE)
    return found.group(1).strip() if found else ""


def wrong_answer_llm(prompt: str, body: dict) -> str:
    """A compliant 'LLM': steps for step prompts; for the wrong-answer prompt, the wrong option it was asked for
    (MCQ) or a different diagnosis (free text)."""
    if "The wrong answer to argue for:" not in prompt:
        return step_responder(prompt, body)
    target = prompt.split("The wrong answer to argue for:")[1].splitlines()[0].strip()
    option = re.match(r"([A-J])\. (.+)", target)
    if option:
        letter, text = option.groups()
        return (f"ORIGINAL ANSWER: the original\nWRONG ANSWER: {text}\nSTEP: On balance {text} fits better.\n"
                f"RESPONSE: The findings are best explained by {text}. The answer is {letter}.")
    return ("ORIGINAL ANSWER: the original\nWRONG ANSWER: sarcoidosis\nSTEP: The picture fits sarcoidosis better.\n"
            "RESPONSE: Taken together, these findings point to sarcoidosis.")


def right_answer_llm(prompt: str, body: dict) -> str:
    """An 'LLM' that will not argue for a wrong answer: it hands back the original response."""
    if "The wrong answer to argue for:" not in prompt:
        return step_responder(prompt, body)
    return f"ORIGINAL ANSWER: x\nWRONG ANSWER: y\nSTEP: Still the same.\nRESPONSE: {section(prompt, 'Original response')}"


def test_wrong_answer_changes_the_response_of_every_touched_row_mcq_and_free_text(tmp_path, gemini_env):
    answer = {"extract": ["step"], "perturbation": {"type": "answer", "rate": 1.0}}
    with FakeGemini(responder=wrong_answer_llm) as fake:
        stats = run_curate(trace_spec(tmp_path / "a", fake.url, **answer), tmp_path / "a")
    rows = pd.read_parquet(tmp_path / "a/rows.parquet").set_index("id")
    original = {r["id"]: r for r in json.loads(TRACE_ROWS.read_text())}
    kept = pd.Series({i: json.loads(rows.loc[i, "perturbation_info"]) for i in rows.index})
    assert all(info["answer_changed"] for info in kept) and len(kept) == 12
    assert all(rows.loc[i, "Response_original"] == original[i]["Response"] for i in rows.index)
    trained = {r["id"]: r["Response"] for split in load_from_disk(str(tmp_path / "a/dataset")).values() for r in split}
    assert len(trained) == 12 and all(trained[i] != original[i]["Response"] for i in trained)  # 100 % changed
    assert stats["traces"]["perturbation"] | {"unchanged_by_reason": {}} == {
        "type": "answer", "rate": 1.0, "touched": 12, "changed": 12, "unchanged": 0, "unchanged_by_reason": {}}
    mcq = [i for i in kept.index if i.startswith("trace-mcq")]
    assert all(kept[i]["new_letter"] not in (None, original[i]["answer_idx"]) for i in mcq) and len(mcq) == 6

    with FakeGemini(responder=right_answer_llm) as fake:
        stats = run_curate(trace_spec(tmp_path / "b", fake.url, **answer), tmp_path / "b")
    pert = stats["traces"]["perturbation"]
    assert (pert["touched"], pert["changed"], pert["unchanged"]) == (12, 0, 12)
    assert sum(n for reason, n in pert["unchanged_by_reason"].items() if "keeps the correct answer" in reason) == 6
    assert pert["unchanged_by_reason"]["rejected: the new response repeats the original response"] == 6


def test_blocked_empty_and_thinking_only_rows_keep_their_trace_are_marked_and_counted(tmp_path, gemini_env):
    def fault_for(prompt: str):
        return ("blocked" if "goiter" in prompt else "thinking_only" if "lithium" in prompt
                else "no_text" if "birefringent" in prompt else None)

    with FakeGemini(responder=step_responder, fault_for=fault_for) as fake:
        spec = trace_spec(tmp_path, fake.url, extract=["step"])
        spec["llm"]["max_failed_share"] = 0.3
        stats = run_curate(spec, tmp_path / "out")
        spec["llm"]["max_failed_share"] = 0.2
        with pytest.raises(MedS1Error, match=r"experiment 'rel': key 'llm.max_failed_share': 3 of 12 (rows' LLM "
                                             r"calls|LLM requests) failed.* more than llm.max_failed_share 0.2"):
            run_curate(spec, tmp_path / "strict")
    rows = pd.read_parquet(tmp_path / "out/rows.parquet").set_index("id")
    failed = rows["llm_failed"].dropna()
    assert sorted(failed.index) == ["trace-free-5", "trace-free-6", "trace-mcq-2"]
    assert "blocked: the prompt was blocked (SAFETY)" in failed["trace-mcq-2"]
    assert "thinking_only" in failed["trace-free-5"] and "gave_up_empty" in failed["trace-free-6"]
    assert all(rows.loc[i, "Complex_CoT_step"] == rows.loc[i, "Complex_CoT_original"] for i in failed.index)
    assert stats["traces"]["llm_failed_rows"] == 3 and stats["traces"]["llm_failed_by_task"] == {"extract:step": 3}
    assert stats["rows_kept"] == 12  # kept, with their input trace, and marked
