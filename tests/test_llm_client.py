"""LLMClient without a network: the offline provider, llm-block validation, the cache files, build_client."""
from __future__ import annotations

import asyncio
import json
import multiprocessing

import pytest

from meds1.errors import MedS1Error
from meds1.llm import LLMClient, LLMRequest, LLMResult, build_client
from meds1.llm.cache import ResponseCache, request_key
from meds1.llm.ledger import Pricing, estimate_tokens


def reverse_words(request: LLMRequest) -> str:
    """Reverse the word order."""
    return " ".join(reversed(request.prompt.split()))


def count_items(request: LLMRequest):
    n = len(request.payload["items"])
    return str(n), {"offline_rule": "count payload items", "n": n}


OFFLINE = {"provider": "offline", "model": None}


def reverse(prompt: str) -> LLMRequest:
    return LLMRequest(task="test-llm:reverse", prompt=prompt, offline=reverse_words)


def test_offline_provider_answers_with_the_stand_in_each_request_carries(tmp_path):
    requests = [reverse("a b c"),
                LLMRequest(task="test-llm:count", prompt="ignored", payload={"items": [1, 2, 3]}, offline=count_items),
                reverse("one two")]
    client = LLMClient(OFFLINE, tmp_path, experiment="exp")
    results = client.run_many(requests)

    assert [r.text for r in results] == ["c b a", "3", "two one"]
    assert results[0].meta == {"offline_rule": "Reverse the word order."}
    assert results[1].meta == {"offline_rule": "count payload items", "n": 3}
    assert all(r.provider == "offline" and not r.cached for r in results)
    assert (client.ledger["calls"], client.ledger["cost_usd"]) == (3, 0.0)
    assert not (tmp_path / "llm").exists()  # offline answers are code, not cached


def test_a_request_without_a_stand_in_is_a_one_line_error_for_the_offline_provider(tmp_path):
    client = LLMClient(OFFLINE, tmp_path, experiment="exp")
    with pytest.raises(MedS1Error, match=r"experiment 'exp'.*task 'test-llm:bare' carries no offline stand-in"):
        client.run_many([LLMRequest(task="test-llm:bare", prompt="x")])
    assert client.ledger["failures"] == 1


def test_run_many_works_inside_a_running_event_loop(tmp_path):
    async def from_async_code():
        return LLMClient(OFFLINE, tmp_path).run_many([reverse("x y")])

    assert [r.text for r in asyncio.run(from_async_code())] == ["y x"]


def test_empty_request_list(tmp_path):
    client = LLMClient(OFFLINE, tmp_path)
    assert client.run_many([]) == []
    assert client.estimate([]) == {"calls": 0, "cached": 0, "est_cost_usd": 0.0}


@pytest.mark.parametrize("cfg, key, fragment", [
    ({"provider": "gemni"}, "llm.provider", "did you mean 'gemini'"),
    ({"provider": "offline", "rmp": 10}, "llm.rmp", "did you mean 'rpm'"),
    ({"provider": "gemini", "model": "m", "api_key": "abc"}, "llm.api_key", "environment only"),
    ({"provider": "gemini", "model": "m", "concurrency": 0}, "llm.concurrency", "integer >= 1"),
    ({"provider": "gemini", "model": "m", "rpm": "fast"}, "llm.rpm", "number"),
    ({"provider": "gemini", "model": "m", "max_cost_usd": 5}, "llm.pricing", "needs pricing"),
    ({"provider": "gemini", "model": "m", "pricing": {"in": 1}}, "llm.pricing", "USD per 1M"),
    ({"provider": "gemini", "model": ""}, "llm.model", "needs a model"),
    ({"model": "m"}, "llm.provider", "missing provider"),
    ({"provider": "gemini", "model": "m", "thinking": {"level": "low"}}, "llm.thinking", "thinking_level"),
    ({"provider": "gemini", "model": "m", "max_failed_share": 1.5}, "llm.max_failed_share", "<= 1"),
    ({"provider": "gemini", "model": "m", "max_output_tokens": 0}, "llm.max_output_tokens", "integer >= 1"),
])
def test_bad_llm_blocks_are_one_line_errors_naming_the_key(tmp_path, cfg, key, fragment):
    with pytest.raises(MedS1Error) as err:
        LLMClient(cfg, tmp_path, experiment="exp")
    message = str(err.value)
    assert f"key '{key}'" in message and fragment in message and "experiment 'exp'" in message
    assert "abc" not in message or key != "llm.api_key"


def test_build_client_from_a_curate_spec(tmp_path):
    spec = {"experiment": "exp-a", "cache_dir": str(tmp_path / "cache"),
            "llm": {"provider": "gemini", "model": "gemini-2.5-flash", "rpm": 1000, "concurrency": 4,
                    "pricing": {"input": 0.3, "output": 2.5}, "max_cost_usd": 1.0, "base_url": None}}
    client = build_client(spec)
    assert client.experiment == "exp-a" and client.settings.concurrency == 4 and client.settings.rpm == 1000
    assert client.cache.root == tmp_path / "cache" / "llm"
    assert client.ledger["model"] == "gemini-2.5-flash" and client.ledger["max_cost_usd"] == 1.0
    with pytest.raises(MedS1Error, match="key 'cache_dir'"):
        build_client({"llm": spec["llm"]}, "exp-a")


def test_estimate_uses_prompt_length_over_four_and_max_output_tokens():
    request = LLMRequest(task="t", prompt="x" * 401, system="y" * 3, params={"max_output_tokens": 50})
    assert estimate_tokens(request) == (101, 50)
    assert Pricing(input=2.0, output=10.0).cost(101, 50) == pytest.approx((101 * 2 + 50 * 10) / 1e6)


def test_cache_key_covers_provider_model_prompt_system_params_but_not_payload():
    base = LLMRequest(task="a", prompt="p", system="s", params={"temperature": 0})
    key = request_key("gemini", "m", base)
    assert request_key("gemini", "m", LLMRequest(task="b", prompt="p", system="s", params={"temperature": 0},
                                                 payload={"x": 1})) == key
    variants = [("offline", "m", base), ("gemini", "m2", base),
                ("gemini", "m", LLMRequest(task="a", prompt="p2", system="s", params={"temperature": 0})),
                ("gemini", "m", LLMRequest(task="a", prompt="p", system=None, params={"temperature": 0})),
                ("gemini", "m", LLMRequest(task="a", prompt="p", system="s", params={"temperature": 1}))]
    assert len({key, *(request_key(*v) for v in variants)}) == 6


def _write_same_keys(root: str, worker: int) -> None:
    cache = ResponseCache(root)
    for i in range(40):
        cache.put(f"{i:064x}", "t", LLMResult(text=f"answer {i}", input_tokens=i, output_tokens=1,
                                              provider="gemini", model="m", meta={"worker": worker}))


def test_two_processes_writing_the_same_keys_leave_complete_files(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_same_keys, args=(str(tmp_path), w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    files = sorted((tmp_path / "llm").rglob("*"))
    entries = [f for f in files if f.is_file()]
    assert len(entries) == 40 and all(f.suffix == ".json" for f in entries)  # no temp files left behind
    cache = ResponseCache(tmp_path)
    for i in (0, 17, 39):
        hit = cache.get(f"{i:064x}")
        assert hit.text == f"answer {i}" and hit.cached and hit.input_tokens == i
    assert all(json.loads(f.read_text())["text"].startswith("answer") for f in entries)


def test_an_unreadable_cache_entry_is_a_miss(tmp_path):
    cache = ResponseCache(tmp_path)
    key = "ab" + "0" * 62
    cache.path(key).parent.mkdir(parents=True)
    cache.path(key).write_text('{"text": "tor')
    assert cache.get(key) is None


def test_the_llm_blocks_output_limit_and_thinking_reach_every_request_that_sets_none(tmp_path):
    client = LLMClient({"provider": "gemini", "model": "m", "max_output_tokens": 2048,
                        "thinking": {"thinking_level": "minimal"}, "thinking_reserve_tokens": 256}, tmp_path)
    plain = client.prepare(LLMRequest(task="t", prompt="p", params={"temperature": 0.0}))
    assert plain.params == {"temperature": 0.0, "max_output_tokens": 2048 + 256,
                            "thinking_config": {"thinking_level": "minimal"}}
    short = client.prepare(LLMRequest(task="t", prompt="p", params={"max_output_tokens": 10}))
    assert short.params["max_output_tokens"] == 10 + 256  # the answer keeps its 10 tokens whatever thinking takes
    off = LLMClient({"provider": "gemini", "model": "m", "thinking": {"thinking_budget": 0},
                     "thinking_reserve_tokens": 256}, tmp_path)
    assert off.prepare(LLMRequest(task="t", prompt="p")).params["max_output_tokens"] == 8192  # seed default
    # the effective params are what is priced and cached: a different limit is a different cache entry
    assert client.estimate([LLMRequest(task="t", prompt="x" * 40)])["est_cost_usd"] == 0.0
    assert request_key("gemini", "m", plain) != request_key("gemini", "m", LLMRequest(task="t", prompt="p"))
