"""The fake Gemini server itself: routes, recording, deterministic fault injection (so other tests can rely on it)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from google import genai
from google.genai import types

from fake_gemini import FakeGemini, count_tokens


def post(url: str, body: dict) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def sdk_client(fake: FakeGemini) -> genai.Client:
    return genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url=fake.url, timeout=5000, retry_options=types.HttpRetryOptions(attempts=1)))


def test_generate_stream_and_count_tokens_through_the_real_sdk():
    with FakeGemini(responder=lambda prompt, body: f"<{prompt}>") as fake:
        client = sdk_client(fake)
        response = client.models.generate_content(model="m1", contents="hi there")
        assert response.text == "<hi there>"
        assert response.usage_metadata.prompt_token_count == count_tokens("hi there")
        chunks = list(client.models.generate_content_stream(model="m1", contents="abc"))
        assert "".join(c.text for c in chunks) == "<abc>"
        assert client.models.count_tokens(model="m1", contents="12345678").total_tokens == 2
        client.close()
    assert [r.method for r in fake.requests] == ["generateContent", "streamGenerateContent", "countTokens"]
    assert fake.requests[0].model == "m1" and fake.requests[0].headers["x-goog-api-key"] == "k"


def test_v1beta_route_error_bodies_and_unknown_routes():
    with FakeGemini(schedule=["429"]) as fake:
        status, body = post(f"{fake.url}/v1beta/models/m:generateContent", {"contents": [{"parts": [{"text": "x"}]}]})
        assert status == 429 and json.loads(body)["error"]["status"] == "RESOURCE_EXHAUSTED"
        status, body = post(f"{fake.url}/v1beta/models/m:generateContent", {"contents": [{"parts": [{"text": "x"}]}]})
        assert status == 200 and json.loads(body)["candidates"][0]["content"]["parts"][0]["text"] == "echo: x"
        assert post(f"{fake.url}/v2/elsewhere", {})[0] == 404
    assert fake.count == 2  # unknown routes are not recorded


def test_seeded_faults_repeat_exactly():
    def faults_for(seed: int) -> list:
        with FakeGemini(faults={"500": 0.3, "429": 0.2}, seed=seed) as fake:
            for _ in range(30):
                post(f"{fake.url}/v1/models/m:generateContent", {"contents": []})
            return [r.fault for r in fake.requests]

    first = faults_for(5)
    assert first == faults_for(5)
    assert 0 < first.count("500") and 0 < first.count("429") and first.count(None) > 10
    assert first != faults_for(6)


def test_unknown_fault_kinds_are_refused():
    with pytest.raises(ValueError, match="unknown fault kinds"):
        FakeGemini(faults={"418": 0.5})
