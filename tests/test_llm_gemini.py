"""The gemini provider through the real google-genai client against the fake Gemini server (tests/fake_gemini.py)."""
from __future__ import annotations

import json
import random

import pytest

from fake_gemini import FakeGemini, count_tokens
from meds1.errors import MedS1Error
from meds1.llm import CostCeilingReached, LLMClient, LLMRequest

FAST = {"concurrency": 8, "max_retries": 8, "backoff_base_s": 0.005, "backoff_max_s": 0.02, "timeout_s": 0.5}
PRICING = {"input": 0.3, "output": 2.5}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GEMINI_BASE_URL",
                "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def serve(monkeypatch):
    """serve(**FakeGemini kwargs) -> a running fake the environment points at; stopped after the test."""
    fakes = []

    def start(api_key: str = "test-key", **kwargs) -> FakeGemini:
        fake = FakeGemini(**{"timeout_sleep": 0.8, **kwargs}).start()
        fakes.append(fake)
        for var, value in fake.client_env(api_key).items():
            monkeypatch.setenv(var, value)
        return fake

    yield start
    for fake in fakes:
        fake.stop()


def upper(prompt: str, body: dict) -> str:
    return prompt.upper()


def gemini_cfg(**overrides) -> dict:
    return {"provider": "gemini", "model": "gemini-test", "rpm": None, "pricing": PRICING, **FAST, **overrides}


def make_requests(n: int, *, prefix: str = "question", **params) -> list[LLMRequest]:
    return [LLMRequest(task="judge", prompt=f"{prefix} {i}: is it {i % 4}?", system="Answer briefly.",
                       params={"temperature": 0.0, "max_output_tokens": 64, **params}) for i in range(n)]


def expected_cost(prompts: list[str], texts: list[str]) -> float:
    tokens_in = sum(count_tokens(p) for p in prompts)
    tokens_out = sum(count_tokens(t) for t in texts)
    return (tokens_in * PRICING["input"] + tokens_out * PRICING["output"]) / 1e6


def test_answers_come_back_in_request_order_with_usage_and_cost(serve, tmp_path):
    rng = random.Random(1)
    fake = serve(responder=upper, latency=lambda: rng.uniform(0.0, 0.05))  # answers finish out of order
    requests = make_requests(16)
    results = LLMClient(gemini_cfg(), tmp_path, experiment="exp").run_many(requests, desc="test")

    assert [r.text for r in results] == [q.prompt.upper() for q in requests]
    assert all(not r.cached and r.provider == "gemini" and r.model == "gemini-test" for r in results)
    assert fake.count == 16
    body = fake.requests[0].body
    assert body["systemInstruction"]["parts"][0]["text"] == "Answer briefly."
    assert body["generationConfig"] == {"temperature": 0.0, "maxOutputTokens": 64}
    assert fake.requests[0].path == "/v1/models/gemini-test:generateContent"


def test_ledger_counts_tokens_and_cost_of_successful_calls(serve, tmp_path):
    serve(responder=upper)
    requests = make_requests(5)
    client = LLMClient(gemini_cfg(), tmp_path)
    results = client.run_many(requests)
    ledger = client.ledger
    assert (ledger["calls"], ledger["cached"], ledger["retries"], ledger["failures"]) == (5, 0, 0, 0)
    assert ledger["input_tokens"] == sum(count_tokens(q.prompt) for q in requests)
    assert ledger["input_tokens"] == sum(r.input_tokens for r in results)
    assert ledger["output_tokens"] == sum(count_tokens(r.text) for r in results)
    assert ledger["cost_usd"] == pytest.approx(expected_cost([q.prompt for q in requests], [r.text for r in results]))
    client.write_ledger(tmp_path / "llm_cost.json")
    assert json.loads((tmp_path / "llm_cost.json").read_text())["calls"] == 5


@pytest.mark.parametrize("fault", ["429", "500", "503", "timeout", "malformed", "no_text"])
def test_a_transient_fault_is_retried_once_then_succeeds(serve, tmp_path, fault):
    fake = serve(responder=upper, schedule=[fault])
    client = LLMClient(gemini_cfg(), tmp_path)
    [result] = client.run_many(make_requests(1))

    assert result.text == "QUESTION 0: IS IT 0?"
    assert fake.count == 2
    assert [r.fault for r in fake.requests] == [fault, None]
    kind = {"503": "503", "malformed": "malformed", "no_text": "empty"}.get(fault, fault)
    ledger = client.ledger
    assert (ledger["calls"], ledger["retries"], ledger["failures"]) == (1, 1, 0)
    assert ledger["attempt_errors"] == {kind: 1}
    # an error costs nothing; an empty reply was answered, so its billed prompt tokens are counted
    billed = 2 if fault == "no_text" else 1
    assert ledger["input_tokens"] == billed * count_tokens("question 0: is it 0?")


def test_a_reply_that_is_not_the_requested_json_is_retried(serve, tmp_path):
    replies = iter(["Sure! here is JSON: {", '{"specialty": "cardiology"}'])
    fake = serve(responder=lambda prompt, body: next(replies))
    client = LLMClient(gemini_cfg(), tmp_path)
    [result] = client.run_many(make_requests(1, response_mime_type="application/json"))
    assert json.loads(result.text) == {"specialty": "cardiology"}
    assert fake.count == 2 and client.ledger["attempt_errors"] == {"malformed": 1}


def test_retries_give_up_after_max_retries_with_a_clear_error(serve, tmp_path):
    fake = serve(faults={"500": 1.0})
    client = LLMClient(gemini_cfg(max_retries=2), tmp_path, experiment="exp")
    with pytest.raises(MedS1Error, match=r"failed after 3 attempts.*500") as err:
        client.run_many(make_requests(3))
    assert "experiment 'exp'" in str(err.value)
    assert fake.count == 3  # the first request alone: its failure stops the batch before the others are sent
    assert (client.ledger["calls"], client.ledger["retries"], client.ledger["failures"]) == (0, 2, 1)


def test_thirty_percent_mixed_faults_give_the_fault_free_output(serve, tmp_path):
    requests = make_requests(30)
    clean = serve(responder=upper)
    clean_client = LLMClient(gemini_cfg(), tmp_path / "clean")
    clean_texts = [r.text for r in clean_client.run_many(requests)]
    clean.stop()

    faults = {"429": 0.1, "500": 0.08, "malformed": 0.05, "no_text": 0.04, "timeout": 0.03}
    faulty = serve(responder=upper, faults=faults, seed=3, latency=0.005)
    client = LLMClient(gemini_cfg(), tmp_path / "faulty")
    texts = [r.text for r in client.run_many(requests)]

    assert texts == clean_texts
    injected = faulty.faults_injected()
    assert sum(injected.values()) >= 3  # the seed does inject faults
    ledger, clean_ledger = client.ledger, clean_client.ledger
    assert ledger["calls"] == 30 and ledger["failures"] == 0
    # every extra request the server saw was a retry; on a busy machine a slow answer may add a timeout retry
    assert ledger["retries"] == faulty.count - 30 >= sum(injected.values())
    # failed attempts cost nothing; only the empty replies' billed prompt tokens are added
    assert ledger["this_run"]["unusable_replies"] == injected.get("no_text", 0)
    assert ledger["output_tokens"] == clean_ledger["output_tokens"]
    assert ledger["input_tokens"] >= clean_ledger["input_tokens"]


@pytest.mark.parametrize("fault", ["401", "403", "400_api_key_invalid"])
def test_rejected_credentials_stop_at_once(serve, tmp_path, fault):
    fake = serve(faults={fault: 1.0})
    client = LLMClient(gemini_cfg(), tmp_path, experiment="exp")
    with pytest.raises(MedS1Error) as err:
        client.run_many(make_requests(10))
    message = str(err.value)
    assert "Gemini rejected the credentials (HTTP" in message and "set GEMINI_API_KEY" in message
    assert "\n" not in message
    assert fake.count == 1
    assert (client.ledger["calls"], client.ledger["retries"], client.ledger["failures"]) == (0, 0, 1)


def test_a_fatal_error_mid_batch_sends_nothing_more_and_a_rerun_resumes(serve, tmp_path):
    fake = serve(responder=upper, schedule=[None, None, "401"])
    requests = make_requests(8)
    with pytest.raises(MedS1Error, match="rejected the credentials"):
        LLMClient(gemini_cfg(concurrency=1), tmp_path).run_many(requests)
    assert fake.count == 3

    fake.reset()
    fake.schedule = []
    results = LLMClient(gemini_cfg(concurrency=1), tmp_path).run_many(requests)
    assert [r.text for r in results] == [q.prompt.upper() for q in requests]
    assert fake.count == 6  # the two answers before the error came from the cache
    assert [r.cached for r in results[:2]] == [True, True]


def test_a_rerun_with_the_same_cache_makes_zero_requests(serve, tmp_path):
    fake = serve(responder=upper)
    requests = make_requests(6)
    first = LLMClient(gemini_cfg(), tmp_path / "cache")
    assert first.estimate(requests)["calls"] == 6
    texts = [r.text for r in first.run_many(requests)]
    assert fake.count == 6

    again = LLMClient(gemini_cfg(), tmp_path / "cache")
    assert again.estimate(requests) == {"calls": 0, "cached": 6, "est_cost_usd": 0.0}
    results = again.run_many(requests)
    assert fake.count == 6
    assert [r.text for r in results] == texts and all(r.cached for r in results)
    run = again.ledger["this_run"]
    assert (run["calls"], run["cached"], run["cost_usd"]) == (0, 6, 0.0)
    assert again.ledger["calls"] == 6 and again.ledger["runs"] == 1  # all runs: the first one paid for all six
    assert len(list((tmp_path / "cache" / "llm").rglob("*.json"))) == 6


def test_a_different_model_or_param_is_a_different_cache_entry(serve, tmp_path):
    fake = serve(responder=upper)
    requests = make_requests(2)
    LLMClient(gemini_cfg(), tmp_path).run_many(requests)
    LLMClient(gemini_cfg(model="gemini-other"), tmp_path).run_many(requests)
    LLMClient(gemini_cfg(), tmp_path).run_many(make_requests(2, temperature=0.7))
    assert fake.count == 6


def test_identical_requests_in_one_batch_cost_one_call(serve, tmp_path):
    fake = serve(responder=upper)
    requests = make_requests(1) * 3
    client = LLMClient(gemini_cfg(), tmp_path)
    assert client.estimate(requests) == {"calls": 1, "cached": 2, "est_cost_usd": pytest.approx(
        client.estimate(requests[:1])["est_cost_usd"])}
    results = client.run_many(requests)
    assert fake.count == 1 and len({r.text for r in results}) == 1
    assert [r.cached for r in results] == [False, True, True]


def test_fully_cached_reruns_need_no_credentials(serve, tmp_path, monkeypatch):
    serve(responder=upper)
    requests = make_requests(3)
    LLMClient(gemini_cfg(), tmp_path).run_many(requests)
    monkeypatch.delenv("GEMINI_API_KEY")
    assert all(r.cached for r in LLMClient(gemini_cfg(), tmp_path).run_many(requests))
    with pytest.raises(MedS1Error, match=r"no Gemini credentials \(GEMINI_API_KEY not set\)"):
        LLMClient(gemini_cfg(), tmp_path).run_many(make_requests(1, prefix="new"))


@pytest.mark.parametrize("concurrency", [1, 8])
def test_the_cost_ceiling_stops_before_a_call_that_could_exceed_it(serve, tmp_path, concurrency):
    fake = serve(responder=lambda prompt, body: "ok")
    price = {"input": 1000.0, "output": 1000.0}
    # each call: estimate (400 chars / 4 + 100 max tokens) = 200 tokens = $0.2; actual 100 + 1 tokens = $0.101
    requests = [LLMRequest(task="judge", prompt=f"{i:04d}" + "x" * 396, params={"max_output_tokens": 100})
                for i in range(10)]
    client = LLMClient(gemini_cfg(pricing=price, max_cost_usd=0.5, concurrency=concurrency), tmp_path)
    assert client.estimate(requests)["est_cost_usd"] == pytest.approx(2.0)
    with pytest.raises(CostCeilingReached, match="max_cost_usd"):
        client.run_many(requests)
    ledger = client.ledger
    assert fake.count == ledger["calls"] >= 1
    assert ledger["cost_usd"] <= 0.5
    assert ledger["cost_usd"] + 0.2 > 0.5 - 0.2 * (concurrency - 1)  # it stopped only when the ceiling was near
    if concurrency == 1:
        assert ledger["calls"] == 3 and ledger["cost_usd"] == pytest.approx(0.303)


def test_requests_are_paced_to_rpm_across_batches_and_clients(serve, tmp_path):
    fake = serve(responder=upper)
    # rpm 600: a burst of 3, then one request per ~0.1 s, whichever client of this cache folder sends it
    LLMClient(gemini_cfg(rpm=600), tmp_path).run_many(make_requests(5))
    LLMClient(gemini_cfg(rpm=600), tmp_path).run_many(make_requests(5, prefix="again"))
    times = sorted(r.time for r in fake.requests)
    assert len(times) == 10
    assert times[-1] - times[0] > (10 - 3) * 0.1 * 0.9  # only the burst came early: lateness only adds spacing


def test_concurrency_bounds_requests_in_flight(serve, tmp_path):
    fake = serve(responder=upper, latency=0.1)
    LLMClient(gemini_cfg(concurrency=3), tmp_path).run_many(make_requests(10))
    assert 2 <= fake.max_in_flight <= 3


def test_a_planted_api_key_is_in_no_cache_or_ledger_file(serve, tmp_path):
    secret = "planted-SECRET-key-8f3a1c"
    fake = serve(api_key=secret, responder=upper, schedule=[None, "429"])
    client = LLMClient(gemini_cfg(), tmp_path / "cache", experiment="exp")
    client.run_many(make_requests(4))
    client.write_ledger(tmp_path / "llm_cost.json")
    fake.schedule = [None] * fake.count + ["401"]
    with pytest.raises(MedS1Error) as err:
        client.run_many(make_requests(1, prefix="fresh"))

    assert fake.requests[0].headers["x-goog-api-key"] == secret  # the key was really used
    assert secret not in str(err.value)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len([p for p in files if p.parent.parent.name == "llm"]) == 4  # the four cached answers
    assert (tmp_path / "cache" / "llm_usage" / "ledger.jsonl").exists() and (tmp_path / "llm_cost.json").exists()
    assert not [p for p in files if secret in p.read_text()]


def test_base_url_from_the_llm_block(serve, tmp_path, monkeypatch):
    fake = serve(responder=upper)
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL")
    [result] = LLMClient(gemini_cfg(base_url=fake.url), tmp_path).run_many(make_requests(1))
    assert result.text == "QUESTION 0: IS IT 0?" and fake.count == 1


def test_an_unknown_model_is_a_clear_error_without_retries(serve, tmp_path):
    fake = serve(faults={"404": 1.0})
    with pytest.raises(MedS1Error, match=r"key 'llm.model'.*'gemini-test' \(HTTP 404"):
        LLMClient(gemini_cfg(), tmp_path, experiment="exp").run_many(make_requests(5))
    assert fake.count == 1  # not retried (max_retries 8): the same request would be blocked again


def test_unknown_generation_params_fail_before_any_request(serve, tmp_path):
    fake = serve()
    with pytest.raises(MedS1Error, match=r"key 'llm.params'.*temprature"):
        LLMClient(gemini_cfg(), tmp_path).run_many([LLMRequest(task="judge", prompt="x", params={"temprature": 0})])
    assert fake.count == 0


def test_vertex_ai_needs_project_and_location(tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    monkeypatch.setenv("GEMINI_API_KEY", "ignored-under-vertex")
    with pytest.raises(MedS1Error, match=r"GOOGLE_CLOUD_PROJECT, GOOGLE_CLOUD_LOCATION not set"):
        LLMClient(gemini_cfg(), tmp_path).run_many(make_requests(1))


def test_vertex_ai_without_usable_default_credentials_is_a_clear_error(tmp_path, monkeypatch):
    for var, value in {"GOOGLE_GENAI_USE_VERTEXAI": "true", "GOOGLE_CLOUD_PROJECT": "proj",
                       "GOOGLE_CLOUD_LOCATION": "us-central1",
                       "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json")}.items():
        monkeypatch.setenv(var, value)
    client = LLMClient(gemini_cfg(), tmp_path)
    with pytest.raises(MedS1Error, match=r"Gemini credentials unusable \(DefaultCredentialsError.*application-default"):
        client.run_many(make_requests(3))
    assert (client.ledger["failures"], client.ledger["retries"]) == (1, 0)


# ---- replies without text, per-request give-up, what each call carries

def test_blocked_empty_and_thinking_only_replies_come_back_failed_when_the_caller_keeps_going(serve, tmp_path):
    # arrival order (concurrency 1, no retries): ok, prompt blocked, answer withheld, thinking only, empty, ok
    fake = serve(responder=upper, schedule=[None, "blocked", "blocked_reply", "thinking_only", "no_text"])
    client = LLMClient(gemini_cfg(concurrency=1, max_retries=0, max_failed_share=1.0), tmp_path)
    results = client.run_many(make_requests(6), keep_going=True)

    assert [r.failed for r in results] == [False, True, True, True, True, False]
    assert "blocked (SAFETY)" in results[1].error and "withheld (finish reason SAFETY)" in results[2].error
    assert "thinking_only" in results[3].error and "thinking_reserve_tokens" in results[3].error
    assert "gave_up_empty" in results[4].error and all(r.text == "" for r in results[1:5])
    assert fake.count == 6
    ledger = client.ledger
    assert (ledger["calls"], ledger["failures"]) == (2, 4)
    assert ledger["this_run"]["failure_reasons"] == {"blocked": 2, "gave_up_empty": 1, "thinking_only": 1}
    assert ledger["this_run"]["unusable_replies"] == 4  # billed: the thinking tokens cost money
    assert ledger["output_tokens"] >= 500
    assert len(list((tmp_path / "llm").rglob("*.json"))) == 2  # failures are not cached: a rerun asks again


def test_without_keep_going_a_blocked_reply_stops_the_batch_with_one_line(serve, tmp_path):
    fake = serve(responder=upper, faults={"blocked": 1.0})
    with pytest.raises(MedS1Error, match=r"experiment 'exp': key 'llm': gemini call for task 'judge' gave up: "
                                         r"blocked: the prompt was blocked \(SAFETY\)"):
        LLMClient(gemini_cfg(), tmp_path, experiment="exp").run_many(make_requests(5))
    assert fake.count == 1  # not retried (max_retries 8): the same request would be blocked again


def test_more_failures_than_max_failed_share_stop_the_batch(serve, tmp_path):
    fake = serve(responder=upper, faults={"blocked": 1.0})
    client = LLMClient(gemini_cfg(concurrency=1, max_failed_share=0.2), tmp_path, experiment="exp")
    with pytest.raises(MedS1Error, match=r"key 'llm.max_failed_share': 3 of 10 LLM requests failed, more than "
                                         r"llm.max_failed_share 0.2"):
        client.run_many(make_requests(10), keep_going=True)
    assert fake.count == 3  # nothing more is sent once the share is exceeded


def test_every_call_goes_out_with_safety_filters_off_and_the_blocks_thinking_settings(serve, tmp_path):
    fake = serve(responder=upper)
    cfg = gemini_cfg(thinking={"thinking_level": "minimal"}, thinking_reserve_tokens=100, max_output_tokens=4000)
    LLMClient(cfg, tmp_path).run_many(make_requests(1) + [LLMRequest(task="rewrite", prompt="long one")])
    short, long = (r.body for r in sorted(fake.requests, key=lambda r: r.prompt != "question 0: is it 0?"))
    assert {s["category"]: s["threshold"] for s in short["safetySettings"]} == {
        "HARM_CATEGORY_HARASSMENT": "OFF", "HARM_CATEGORY_HATE_SPEECH": "OFF",
        "HARM_CATEGORY_SEXUALLY_EXPLICIT": "OFF", "HARM_CATEGORY_DANGEROUS_CONTENT": "OFF"}
    assert short["generationConfig"]["maxOutputTokens"] == 64 + 100  # the call's own limit + the thinking reserve
    assert long["generationConfig"]["maxOutputTokens"] == 4000 + 100  # the llm block's max_output_tokens
    assert short["generationConfig"]["thinkingConfig"] == {"thinking_level": "MINIMAL"}


def test_spending_of_a_resumed_run_adds_to_the_earlier_runs(serve, tmp_path):
    serve(responder=upper)
    requests = make_requests(5)
    first = LLMClient(gemini_cfg(), tmp_path, experiment="exp")
    first.run_many(requests[:3])                       # the run that was killed after 3 answers
    resumed = LLMClient(gemini_cfg(), tmp_path, experiment="exp")
    results = resumed.run_many(requests)               # 3 from the cache, 2 paid now
    ledger = resumed.ledger
    assert ledger["this_run"]["calls"] == 2 and ledger["this_run"]["cached"] == 3
    assert (ledger["calls"], ledger["runs"]) == (5, 2)
    assert ledger["cost_usd"] == pytest.approx(expected_cost([q.prompt for q in requests], [r.text for r in results]))
    assert ledger["cost_usd"] == pytest.approx(first.ledger["this_run"]["cost_usd"] + ledger["this_run"]["cost_usd"])
    other = LLMClient(gemini_cfg(), tmp_path, experiment="other")
    assert other.ledger["calls"] == 0  # each experiment sums its own lines
