"""The curation estimate before any call: LLM calls by kind (rewrite, restore, judge, specialty), each priced with its
own output budget, base-model answers apart as GPU work, the cache seen, and a stood-in dataset scaled to its size."""
from __future__ import annotations

import json
import math

import pytest

from curation_helpers import DEMO_EVAL, DEMO_SFT, TEST_DATA, demo_rows
from fake_gemini import FakeGemini
from meds1.curation import base_model
from meds1.curation.estimate import estimate_experiment, main
from meds1.curation.methods import s1
from meds1.curation.pipeline import curate
from workflow import tiny_config

PRICING = {"input": 1.0, "output": 2.0}  # USD per 1M tokens


def step_responder(prompt: str, body: dict) -> str:
    return "## Step 1: Findings\n\nKey findings noted.\n\n## Step 2: Conclusion\n\nThis supports the answer."


def spec_for(tmp_path, url, **curation) -> dict:
    return {"experiment": "est", "seed": 7, "cache_dir": str(tmp_path / "cache"), "validation_fraction": 0.1,
            "model": {"key": "tiny", "path": "no/such/model", "system_prompt": None}, "curation_settings": {},
            "dataset": {"key": "demo-sft", "file_path": str(DEMO_SFT)},
            "curation": {"method": "random", "n_samples": 10, "format": "huatuo", "extract": [], "perturbation": None,
                         "restore": False, "options": {}, "needs": [], **curation},
            "llm": {"provider": "gemini", "model": "gemini-test", "base_url": url, "pricing": PRICING,
                    "backoff_base_s": 0.01}}


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    with FakeGemini(responder=step_responder) as server:
        yield server


def test_rewrites_are_counted_priced_then_seen_in_the_cache(tmp_path, fake):
    spec = spec_for(tmp_path, fake.url, extract=["step", "1-sentence"])
    before = estimate_experiment(spec)
    assert fake.count == 0                                     # estimating calls nothing
    assert before["rows_selected"] == 10 and before["by_kind"]["rewrite"]["calls"] == 20 and before["cached"] == 0
    assert before["calls"] == 20 and before["cost_usd"] > 0 and before["base_model_answers"] == 0
    out = tmp_path / "out"
    curate(spec, dataset=str(out / "dataset"), rows=str(out / "rows.parquet"), stats=str(out / "stats.json"),
           cost=str(out / "llm_cost.json"))
    assert fake.count == 20
    after = estimate_experiment(spec)
    assert after["calls"] == 0 and after["cached"] == 20 and after["cost_usd"] == 0


def test_s1_judge_and_specialty_calls_priced_with_their_own_budget(tmp_path, fake):
    df = demo_rows()
    cached = df["Question"].tolist()[:60]
    ctx_settings = {"curation_settings": {}}
    spec = spec_for(tmp_path, fake.url, method="s1", n_samples=20, options={"specialty_weights": None,
                                                                          "long_trace_tokens": 1000,
                                                                          "long_traces": "all"},
                    needs=["base_model", "llm", "n_samples"])
    from meds1.curation.pipeline import Context

    ctx = Context({**spec, **ctx_settings})
    kw = base_model.curation_settings(ctx)
    path = base_model.answers_file(spec["model"], kw["max_new_tokens"], kw["cache_dir"], kw["template"])
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps({"q": base_model.question_key(q), "answer": "x"}) + "\n" for q in cached))
    est = estimate_experiment(spec)
    assert fake.count == 0
    kinds = est["by_kind"]
    assert kinds["judge"]["calls"] == 160 and kinds["specialty"]["calls"] == 160 and kinds["rewrite"]["calls"] == 0
    assert est["base_model_answers"] == 100                      # 60 of the 160 questions already answered
    judged = s1.judge_requests(df, list(range(len(df))), [""] * len(df))
    want = sum(math.ceil(len(r.prompt) / 4) * PRICING["input"] + 256 * PRICING["output"] for r in judged) / 1e6
    assert kinds["judge"]["cost_usd"] == pytest.approx(want, rel=1e-6)
    assert kinds["judge"]["cost_usd"] / 160 < 8192 * PRICING["output"] / 1e6  # not priced as a rewrite


def test_methods_without_llm_calls_count_their_base_model_work(tmp_path, fake):
    spec = spec_for(tmp_path, fake.url, method="novelty-answer", needs=["base_model", "embedder", "n_samples"])
    est = estimate_experiment(spec)
    assert est["calls"] == 0 and est["base_model_answers"] == 160 and est["rows_selected"] == 10


@pytest.fixture
def workdir(tmp_path, tiny_model_dir, monkeypatch):
    cfg = tiny_config(tiny_model_dir, sft_file=DEMO_SFT, eval_file=DEMO_EVAL)
    cfg["train_datasets"]["hub-set"] = {"hf_path": "no-org/not-on-this-machine"}
    cfg["models"]["gem"] = {"provider": "gemini", "hf_path": "gemini-test", "pricing": {**PRICING, "rpm": 100}}
    exps = {"s1-arm": {"config": {"model_key": "tiny", "curation": {"method": "s1", "n_samples": 3},
                                  "datasets": {"curate": "hub-set", "eval": "evalset"}}}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "results.json").write_text(json.dumps({"experiments": exps}))
    (tmp_path / "workflow_config.yaml").write_text(f"cache_dir: {tmp_path / 'cache'}\nexperiments: ['*']\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    return tmp_path


def test_cli_table_scales_a_stood_in_sample_to_the_real_size(workdir, capsys):
    sample = TEST_DATA / "curation_columns.json"  # 3 rows standing in for a hub set of 25,371
    main(["--llm", "gem", "--stand-in", f"hub-set={sample}", "--rows", "hub-set=25371"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["experiment", "method", "rows", "in"]
    row = lines[1].split()
    assert row[:4] == ["s1-arm", "s1", "~25371", "3"]
    assert row[6:8] == ["25371", "25371"] and row[-1] == "25371"  # judge, specialty; base-model answers


def test_cli_bad_pair_is_one_line(workdir, capsys):
    with pytest.raises(SystemExit):
        main(["--stand-in", "hub-set"])
    assert "expected KEY=VALUE, got 'hub-set'" in capsys.readouterr().err
