"""Generation on the tiny model: hf batching, the vLLM wiring, test-time scaling, and resumable evaluate()."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import types
from collections import Counter
from pathlib import Path

import pytest

from meds1.errors import MedS1Error
from meds1.evaluate import run as eval_run
from meds1.evaluate.backends import GenerationParams, make_backend, resolve_backend_name
from meds1.evaluate.prompts import build_prompt
from meds1.evaluate.tts import ApproachContext, RANDOM_CUES, choose_cue, run_approach
from meds1.io import read_jsonl

REPO = Path(__file__).resolve().parents[1]
GEN_PROMPT = "<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with larger random weights: its greedy outputs differ per prompt and vary in length.

    (The stock tiny model, with tied embeddings and tiny layer weights, greedily repeats its last input token, which
    would make "batched equals one by one" trivially true.)
    """
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("diverse") / "tiny-diverse"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2 and "embed" not in name:
                param.normal_(0.0, 0.4)
    model.save_pretrained(out)
    for name in os.listdir(tiny_model_dir):
        if name.startswith(("tokenizer", "chat_template", "special_tokens")):
            shutil.copy(Path(tiny_model_dir) / name, out / name)
    return out


@pytest.fixture(scope="module")
def backend(model_dir):
    return make_backend("hf", str(model_dir), sampling={"batch_size": 4})


@pytest.fixture(scope="module")
def items(shared_data):
    from meds1.data.eval_items import load_eval_items, select_items

    return select_items(load_eval_items({"file_path": str(shared_data / "med-s1_eval_data_samples.json")}), limit=2)


class RecordingBackend:
    """Wraps a backend; remembers every prompt it was asked to continue."""

    def __init__(self, inner):
        self.inner, self.name, self.tokenizer = inner, inner.name, inner.tokenizer
        self.prompts: list[str] = []

    def generate(self, prompts, params):
        self.prompts.extend(prompts)
        return self.inner.generate(prompts, params)


# ------------------------------------------------------------------------------------------------------ hf backend
def test_hf_batched_greedy_equals_one_by_one_in_input_order(backend, items):
    prompts = [build_prompt(i, backend.tokenizer, prompting="step", system_prompt=None) for i in items]
    params = GenerationParams(max_new_tokens=24)
    batched = backend.generate(prompts, params)  # 8 prompts of different lengths, batches of 4, sorted inside
    alone = [backend.generate([p], params)[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert [g.n_output_tokens for g in batched] == [g.n_output_tokens for g in alone]
    assert len({g.text for g in batched}) > 1 and all(1 <= g.n_output_tokens <= 24 for g in batched)
    reversed_out = backend.generate(prompts[::-1], params)
    assert [g.text for g in reversed_out] == [g.text for g in batched][::-1]


def test_hf_sampling_is_seeded(backend, items):
    prompts = [build_prompt(i, backend.tokenizer, prompting=None, system_prompt=None) for i in items[:3]]
    a, b, c = (backend.generate(prompts, GenerationParams(max_new_tokens=16, temperature=1.0, seed=s))
               for s in (3, 3, 4))
    assert a == b and a != c


# ---------------------------------------------------------------------------------------------------- vllm wiring
def _fake_vllm(calls: dict):
    """A stand-in ``vllm`` module with the real API's shape (LLM, SamplingParams, RequestOutput.outputs[0])."""
    class SamplingParams:
        def __init__(self, **kwargs):
            calls["sampling"] = kwargs

    class LLM:
        def __init__(self, **kwargs):
            calls["llm"] = kwargs

        def generate(self, prompts, sampling_params, use_tqdm=True):
            calls["prompts"] = prompts
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f"out{n}", token_ids=[1] * (n + 2))])
                    for n, _ in enumerate(prompts)]

    return types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams)


def test_vllm_backend_calls_the_real_api_shape(monkeypatch, model_dir):
    calls: dict = {}
    monkeypatch.setitem(sys.modules, "vllm", _fake_vllm(calls))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    backend = make_backend("vllm", str(model_dir), model={"key": "tiny"}, seed=5, sampling={"max_model_len": 4096})
    assert calls["llm"] == {"model": str(model_dir), "tensor_parallel_size": 2, "seed": 5, "dtype": "bfloat16",
                            "trust_remote_code": False, "max_model_len": 4096}
    out = backend.generate(["<|im_start|>user\nhi<|im_end|>\n", "x"], GenerationParams(max_new_tokens=7))
    assert [(g.text, g.n_output_tokens) for g in out] == [("out0", 2), ("out1", 3)]
    assert calls["prompts"][0]["prompt_token_ids"] == backend.tokenizer("<|im_start|>user\nhi<|im_end|>\n",
                                                                         add_special_tokens=False)["input_ids"]
    assert calls["sampling"]["temperature"] == 0.0 and calls["sampling"]["max_tokens"] == 7
    assert calls["sampling"]["n"] == 1 and calls["sampling"]["seed"] is None
    backend.generate(["x"], GenerationParams(max_new_tokens=3, temperature=0.6, top_p=0.9, seed=11, stop=("##",)))
    assert {k: calls["sampling"][k] for k in ("temperature", "top_p", "seed", "stop")} == {
        "temperature": 0.6, "top_p": 0.9, "seed": 11, "stop": ["##"]}


def test_vllm_missing_is_a_clear_error_and_auto_falls_back(monkeypatch, model_dir):
    import torch

    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(MedS1Error, match="vllm backend needs the 'vllm' package.*envs/eval-vllm.yaml"):
        make_backend("vllm", str(model_dir))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_backend_name("auto") == "hf"  # a GPU but no vllm
    monkeypatch.setitem(sys.modules, "vllm", _fake_vllm({}))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())
    assert resolve_backend_name("auto") == "vllm"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_backend_name("auto") == "hf"  # vllm but no GPU
    with pytest.raises(MedS1Error, match="unknown eval backend 'vlm'.*did you mean 'vllm'"):
        resolve_backend_name("vlm")


# ---------------------------------------------------------------------------------------------- test-time scaling
def _tts(backend, items, name, **params):
    recorder = RecordingBackend(backend)
    prompts = [build_prompt(i, backend.tokenizer, prompting=None, system_prompt=None) for i in items]
    ctx = ApproachContext(recorder, GenerationParams(max_new_tokens=params.pop("max_new_tokens", 12), **params))
    return run_approach(name, ctx, prompts, keys=[i["id"] for i in items]), recorder.prompts, prompts


def test_reasoning_2x_thinks_longer_and_waits_inside_the_assistant_turn(backend, items):
    base, _, _ = _tts(backend, items[:3], "reasoning")
    extended, seen, prompts = _tts(backend, items[:3], "reasoning_2x")
    assert all(e.n_reasoning_tokens > b.n_reasoning_tokens for e, b in zip(extended, base))
    waits = [p for p in seen if p.endswith("\nWait")]
    assert len(waits) == 6  # 2 rounds x 3 items
    for text in waits:
        turn = text[text.index(GEN_PROMPT) + len(GEN_PROMPT):]
        assert "<|im_end|>" not in turn and text.startswith(tuple(prompts))
    assert all(a.output.count("\nWait") >= 2 for a in extended)


def test_random_cues_are_seeded_and_immediate_and_budget_answers(backend, items):
    assert choose_cue("q1", 0, 0, True) == choose_cue("q1", 0, 0, True)
    assert {choose_cue(f"q{n}", 0, 0, True) for n in range(40)} == set(RANDOM_CUES)
    randomized, seen, _ = _tts(backend, items[:2], "reasoning_1x_random")
    assert all(p.endswith(tuple("\n" + c for c in RANDOM_CUES)) for p in seen[2:4])
    immediate, seen, _ = _tts(backend, items[:2], "immediate")
    assert all(p.endswith(GEN_PROMPT + "## Final Response\n\nThe answer is") for p in seen)
    assert all(a.n_reasoning_tokens == 0 and a.output.startswith("## Final Response") for a in immediate)
    budget, seen, prompts = _tts(backend, items[:2], "budget_5", max_new_tokens=50)
    assert all(a.n_reasoning_tokens <= 6 and "\n\n## Final Response\n\nThe answer is" in a.output for a in budget)
    assert all("<|im_end|>" not in p[len(q):] for p, q in zip(seen[2:], prompts))
    with pytest.raises(MedS1Error, match="unknown reasoning approach 'reasoning_2y'"):
        _tts(backend, items[:1], "reasoning_2y")


def test_answer_marker_and_system_prompt_follow_the_trace_format():
    pytest.importorskip("meds1.traces.formats")
    from meds1.evaluate.tts import answer_marker_for

    assert answer_marker_for(None) == answer_marker_for("huatuo") == "## Final Response"
    assert answer_marker_for("qwen") == "</think>"
    nemotron = {"format": "nemotron", "model": {"system_prompt": None}}
    assert eval_run.system_prompt_for(nemotron) == "detailed thinking on"
    assert eval_run.system_prompt_for({"format": "nemotron", "model": {"system_prompt": "Be brief."}}) == "Be brief."


# ------------------------------------------------------------------------------------------------------- evaluate()
def _spec(shared_data, model_dir, **over) -> dict:
    spec = {"experiment": "tiny-eval", "seed": 0, "config_hash": "abc123",
            "model": {"key": "tiny", "path": str(model_dir), "system_prompt": None, "chat_template": None},
            "dataset": {"key": "samples", "file_path": str(shared_data / "med-s1_eval_data_samples.json")},
            "format": None, "prompting": None, "eval_sample": None, "limit": 2,
            "eval": {"repetitions": {"PubMedQA_test": 2}, "repetition_multiplier": 1},
            "test_time_scaling": False, "reasoning_approaches": [], "backend": "hf",
            "sampling": {"max_new_tokens": 8, "temperature": 0.0, "top_p": 0.9, "batch_size": 1},
            "matcher": {"similarity": False}, "bootstrap": {"resamples": 50, "seed": 0}}
    return {**spec, **over}


@pytest.fixture
def fake_metrics(monkeypatch):
    """Generation tests do not depend on the scoring side: record what would be scored."""
    seen = {}

    def fake(records, spec, model_path, backend_name, metrics_path):
        seen.update(records=records, extra=eval_run.metrics_extra(spec, model_path, backend_name))
        Path(metrics_path).write_text("{}")
        return {"n": len(records)}

    monkeypatch.setattr(eval_run, "compute_and_write_metrics", fake)
    return seen


class CountingBackend(RecordingBackend):
    pass


def test_jobs_cover_items_runs_and_approaches(shared_data, model_dir, items):
    spec = _spec(shared_data, model_dir, test_time_scaling=True, reasoning_approaches=["immediate", "reasoning_2x"],
                 eval={"repetitions": {"PubMedQA_test": 2}, "repetition_multiplier": 2})
    jobs = eval_run.build_jobs(items, spec)
    runs = Counter((j.item["source"], j.approach) for j in jobs)
    assert runs[("PubMedQA_test", "immediate")] == 2 * 4 and runs[("MedQA_USLME_test", "reasoning_2x")] == 2 * 2
    sampling = eval_run.effective_sampling(spec)
    assert eval_run.generation_params(sampling, 0, 0).temperature == 0.0
    assert eval_run.generation_params(sampling, 1, 0).temperature == 0.6
    with pytest.raises(MedS1Error, match="unknown reasoning approach 'thinking'"):
        eval_run.build_jobs(items, {**spec, "reasoning_approaches": ["thinking"]})


def test_evaluate_errors_name_the_experiment(tmp_path, shared_data, model_dir):
    spec = _spec(shared_data, model_dir, dataset={"key": "gone", "file_path": str(tmp_path / "gone.json")})
    with pytest.raises(MedS1Error) as err:
        eval_run.evaluate(spec, str(model_dir), tmp_path / "g.jsonl", tmp_path / "m.json", work_dir=tmp_path / "w")
    expected = f"{tmp_path / 'gone.json'}: experiment 'tiny-eval': key 'file_path': eval dataset file not found"
    assert str(err.value) == expected


def test_evaluate_writes_sorted_generations_and_passes_extra(tmp_path, shared_data, model_dir, backend, fake_metrics):
    spec = _spec(shared_data, model_dir)
    out = eval_run.evaluate(spec, str(model_dir), tmp_path / "gen.jsonl", tmp_path / "metrics.json",
                            work_dir=tmp_path / "work", backend=backend)
    records = read_jsonl(tmp_path / "gen.jsonl")
    assert out == {"n": 10} and len(records) == 10  # 4 sources x 2 items, PubMedQA twice
    assert [(r["source"], r["id"], r["run"]) for r in records] == sorted((r["source"], r["id"], r["run"])
                                                                        for r in records)
    assert set(records[0]) == {"id", "source", "question", "options", "answer_idx", "output", "run", "approach",
                               "n_output_tokens", "n_reasoning_tokens"}
    assert Counter(r["run"] for r in records) == {0: 8, 1: 2}
    assert fake_metrics["extra"] == {"experiment": "tiny-eval", "config_hash": "abc123", "config": None,
                                     "model": {"key": "tiny", "path": str(model_dir)}, "backend": "hf",
                                     "sampling": {"max_new_tokens": 8, "temperature": 0.0, "top_p": 0.9,
                                                  "batch_size": 1, "repeat_temperature": 0.6},
                                     "dataset": "samples"}


_KILL_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    from meds1.evaluate.backends import make_backend
    from meds1.evaluate.run import evaluate

    spec, out, kill_after = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    inner = make_backend("hf", spec["model"]["path"], sampling=spec["sampling"])

    class KillingBackend:  # batch_size 1: one generate call per job, so K calls = K appended items
        name, tokenizer, calls = inner.name, inner.tokenizer, 0

        def generate(self, prompts, params):
            if self.calls == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            self.calls += 1
            return inner.generate(prompts, params)

    evaluate(spec, spec["model"]["path"], out + "/gen.jsonl", out + "/metrics.json", work_dir=out + "/work",
             backend=KillingBackend())
""")


def test_rerun_after_sigkill_generates_only_the_missing_items(tmp_path, shared_data, model_dir, backend,
                                                              fake_metrics):
    spec = _spec(shared_data, model_dir)
    script = tmp_path / "kill.py"
    script.write_text(_KILL_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), json.dumps(spec), str(tmp_path), "4"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    partial = tmp_path / "work" / "generations.partial.jsonl"
    before = read_jsonl(partial)
    assert len(before) == 4 and not (tmp_path / "gen.jsonl").exists()
    with open(partial, "a") as fh:  # a write torn by the kill
        fh.write('{"id": "MedQA_USLME_test-0", "run": 0, "appro')

    counting = CountingBackend(backend)
    eval_run.evaluate(spec, str(model_dir), tmp_path / "gen.jsonl", tmp_path / "metrics.json",
                      work_dir=tmp_path / "work", backend=counting)
    assert len(counting.prompts) == 10 - 4
    final = read_jsonl(tmp_path / "gen.jsonl", tolerate_torn_tail=False)
    assert len(final) == 10 and all(r in final for r in before)
    assert len(read_jsonl(partial, tolerate_torn_tail=False)) == 10  # torn tail dropped, not glued to

    fresh = tmp_path / "fresh"
    eval_run.evaluate(spec, str(model_dir), fresh / "gen.jsonl", fresh / "metrics.json", work_dir=fresh / "work",
                      backend=backend)
    assert read_jsonl(fresh / "gen.jsonl") == final  # resuming changes nothing (greedy run 0, seeded run 1)

    again = CountingBackend(backend)
    eval_run.evaluate(spec, str(model_dir), tmp_path / "gen.jsonl", tmp_path / "metrics.json",
                      work_dir=tmp_path / "work", backend=again)
    assert again.prompts == []  # all done: nothing generated
    changed = CountingBackend(backend)
    eval_run.evaluate({**spec, "prompting": "step"}, str(model_dir), tmp_path / "gen.jsonl",
                      tmp_path / "metrics.json", work_dir=tmp_path / "work", backend=changed)
    assert len(changed.prompts) == 10  # different prompts: the old partial file is not reused


def test_evaluate_with_tts_and_real_metrics(tmp_path, shared_data, model_dir, backend):
    pytest.importorskip("meds1.evaluate.metrics")
    pytest.importorskip("meds1.matcher")
    spec = _spec(shared_data, model_dir, limit=1, eval={"repetitions": {}, "repetition_multiplier": 1},
                 test_time_scaling=True, reasoning_approaches=["immediate", "reasoning", "reasoning_2x"],
                 sampling={"max_new_tokens": 8, "temperature": 0.0, "top_p": 0.9, "batch_size": 4})
    metrics = eval_run.evaluate(spec, str(model_dir), tmp_path / "gen.jsonl", tmp_path / "metrics.json",
                                work_dir=tmp_path / "work", backend=backend)
    records = read_jsonl(tmp_path / "gen.jsonl")
    assert Counter(r["approach"] for r in records) == {"immediate": 4, "reasoning": 4, "reasoning_2x": 4}
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["experiment"] == "tiny-eval" and metrics["backend"] == "hf"
    assert set(metrics["test_time_scaling"]) == {"immediate", "reasoning", "reasoning_2x"}
