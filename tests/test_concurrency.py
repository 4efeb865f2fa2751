"""Several experiments in parallel (--cores 2) sharing one cache: no torn or clashing files."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from curation_helpers import DEMO_EVAL, DEMO_SFT
from fake_gemini import FakeGemini
from workflow import make_workdir, snakemake, tiny_config


def step_responder(prompt: str, body: dict) -> str:
    """A deterministic 'LLM': two titled steps whose content depends on the prompt only."""
    digest = sum(prompt.encode()) % 10_000
    return (f"## Step 1: Findings\n\nKey findings noted ({digest}).\n\n## Step 2: Conclusion\n\n"
            "This supports the answer.")


def experiment(curation: dict, epochs: int = 1) -> dict:
    return {"config": {"model_key": "tiny", "curation": {"format": "huatuo", "n_samples": 20, **curation},
                       "training_params": {"num_epochs": epochs}, "datasets": {"curate": "sft", "eval": "evalset"}}}


@pytest.fixture
def parallel_run(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    with FakeGemini(responder=step_responder, latency=0.05) as fake:
        cfg = tiny_config(tiny_model_dir, sft_file=DEMO_SFT, eval_file=DEMO_EVAL)
        cfg["models"]["gem"] = {"provider": "gemini", "hf_path": "gemini-test", "base_url": fake.url, "rpm": 6000,
                                "pricing": {"input": 1.0, "output": 1.0}, "backoff_base_s": 0.01}
        results = {"experiments": {
            "llm-a": experiment({"method": "random", "extract": "step"}),
            "llm-b": experiment({"method": "random", "extract": "step"}, epochs=2),  # its own curate job
            "div-a": experiment({"method": "embedding-diversity", "cluster_percentage": 20}),
            "div-b": experiment({"method": "embedding-diversity", "cluster_percentage": 40}),
        }}
        wd = make_workdir(tmp_path / "w", results=results, config=cfg,
                          workflow={"curation_llm": "gem", "experiments": list(results["experiments"])})
        out = snakemake(wd, "curate_all", timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        yield wd, fake.count


def test_parallel_jobs_share_the_cache_without_torn_files(parallel_run):
    wd, calls = parallel_run
    assert 20 <= calls <= 40                       # the same 20 prompts; at most each job asks once
    cache = wd / "cache"
    leftovers = [p for p in cache.rglob("*") if ".tmp-" in p.name]
    assert leftovers == []
    for path in (cache / "llm").rglob("*.json"):
        json.loads(path.read_text())              # every cache entry is complete
    assert len(list((cache / "embeddings").rglob("*.npy"))) == 1   # one matrix: computed once or twice, stored once
    a = pd.read_parquet(wd / "curated/llm-a/rows.parquet")
    b = pd.read_parquet(wd / "curated/llm-b/rows.parquet")
    pd.testing.assert_frame_equal(a, b)            # same curation -> same rows and traces, whoever wrote the cache
