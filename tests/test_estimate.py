"""The LLM-call/cost estimate before curation: counts every request of every transform, and knows the cache."""
from __future__ import annotations

from fake_gemini import FakeGemini
from meds1.curation.estimate import estimate_experiment
from test_reliability_curation import curate_spec, run_curate, step_responder


def test_estimate_counts_calls_and_cost_then_sees_the_cache(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    with FakeGemini(responder=step_responder) as fake:
        spec = curate_spec(tmp_path, shared_data, fake.url)
        spec["curation"] |= {"n_samples": 10, "extract": ["step", "1-sentence"]}
        before = estimate_experiment(spec)
        assert fake.count == 0                                    # estimating calls nothing
        assert before["rows_selected"] == 10 and before["calls"] == 20 and before["cached"] == 0
        assert before["cost_usd"] > 0
        run_curate(spec, tmp_path / "out")
        assert fake.count == 20
        after = estimate_experiment(spec)
    assert after["calls"] == 0 and after["cached"] == 20 and after["cost_usd"] == 0
