"""Generation on the tiny model: hf batching and per-request sampling, test-time scaling on a trained model, and a
resumable evaluate() whose sampled repetitions do not depend on interruptions."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from eval_models import Recorder, format_prompt, train_on_formats
from meds1.errors import MedS1Error
from meds1.evaluate import run as eval_run
from meds1.evaluate.backends import BackendContext, GenerationParams, Request, encode_prompt, make_backend
from meds1.evaluate.prompts import build_prompt
from meds1.evaluate.tts import ApproachContext, Question, markers_for, run_approach
from meds1.io import read_jsonl

REPO = Path(__file__).resolve().parents[1]
EVAL_ITEMS = Path(__file__).parent / "data" / "eval_items.json"


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
    return make_backend("hf", str(model_dir), context=BackendContext(batch_size=4))


@pytest.fixture(scope="module")
def items():
    from meds1.data.eval_items import load_eval_items, select_items

    return select_items(load_eval_items({"file_path": str(EVAL_ITEMS)}), limit=2)


def requests_for(items, tokenizer, **kw) -> list[Request]:
    return [Request(tuple(encode_prompt(tokenizer, build_prompt(i, tokenizer, prompting="step"))), **kw)
            for i in items]


# ------------------------------------------------------------------------------------------------------ hf backend
def test_hf_batched_greedy_equals_one_by_one_in_input_order(backend, items):
    requests = requests_for(items, backend.tokenizer)
    params = GenerationParams(max_new_tokens=24)
    batched = backend.generate(requests, params)  # 8 prompts of different lengths, batches of 4, sorted inside
    alone = [backend.generate([r], params)[0] for r in requests]
    assert batched == alone
    assert len({g.text for g in batched}) > 1 and all(1 <= g.n_output_tokens <= 24 for g in batched)
    assert backend.generate(requests[::-1], params) == batched[::-1]


def test_hf_sampling_is_per_request_and_independent_of_the_batch(backend, items):
    requests = [Request(r.prompt_ids, seed=100 + n) for n, r in enumerate(requests_for(items, backend.tokenizer))]
    params = GenerationParams(max_new_tokens=16, temperature=1.0, top_p=0.9)
    batched = backend.generate(requests, params)
    assert batched == [backend.generate([r], params)[0] for r in requests]     # batch-mates change nothing
    other_seeds = backend.generate([Request(r.prompt_ids, seed=r.seed + 1) for r in requests], params)
    assert other_seeds != batched
    capped = backend.generate([Request(requests[0].prompt_ids, requests[0].seed, max_new_tokens=5)], params)[0]
    assert capped.token_ids == batched[0].token_ids[:5]                         # a per-request cap only cuts


# ---------------------------------------------------------------------------- test-time scaling on a trained model
@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    path = train_on_formats(tiny_model_dir, tmp_path_factory.mktemp("formats") / "trained")
    return make_backend("hf", str(path), context=BackendContext(batch_size=4))


def test_wait_rounds_on_a_model_that_ends_its_thinking(trained):
    """The model learnt '<|im_start|>think ... <|im_start|>answer': each end of thinking (the <|im_start|> token)
    under budget becomes 'Wait'; the continuation is exactly the previous prompt + kept tokens + the cue."""
    tok, recorder = trained.tokenizer, Recorder(trained)
    question = Question(tuple(encode_prompt(tok, tok.apply_chat_template(
        format_prompt("qwen", "Which drug causes optic neuritis?"), tokenize=False, add_generation_prompt=True))),
        seed=0, key="q")
    ctx = ApproachContext(recorder, GenerationParams(max_new_tokens=60), markers_for("qwen", tok),
                          answer_max_tokens=20)
    (answer,) = run_approach("reasoning_1x", ctx, [question])
    (r0, p0, g0), (r1, p1, g1), (ra, _, ga) = recorder.calls
    assert g0[0].finish_reason == "stop" and tok.decode([g0[0].stopped_by]) == "<|im_start|>"
    assert g0[0].text == "Ethambutol is known for optic neuritis.\n"             # what it was trained to think
    wait = tuple(tok("Wait", add_special_tokens=False)["input_ids"])
    assert r1[0].prompt_ids == r0[0].prompt_ids + g0[0].token_ids + wait and p1.min_tokens == 1
    assert r1[0].max_new_tokens == 60 - len(g0[0].token_ids) - len(wait)
    forced = "<|im_start|>answer" if g1[0].text.endswith("\n") else (
        "\n<|im_start|>answer" + ("\nFinal Answer:" if g1[0].finish_reason == "length" else ""))
    assert ra[0].prompt_ids == r1[0].prompt_ids + g1[0].token_ids + tuple(tok(forced, add_special_tokens=False)[
        "input_ids"])
    assert answer.output == "<|im_start|>think\n" + g0[0].text + "Wait" + g1[0].text + forced + ga[0].text
    assert answer.n_reasoning_tokens == len(g0[0].token_ids) + len(wait) + len(g1[0].token_ids)


def test_reasoning_prefills_and_reads_the_trained_answer(trained):
    tok = trained.tokenizer
    for fmt in ("qwen", "huatuo", "think-tags"):
        question = Question(tuple(encode_prompt(tok, tok.apply_chat_template(
            format_prompt(fmt, "Which drug causes optic neuritis?"), tokenize=False, add_generation_prompt=True))),
            seed=0, key="q")
        ctx = ApproachContext(trained, GenerationParams(max_new_tokens=60), markers_for(fmt, tok),
                              answer_max_tokens=30)
        (answer,) = run_approach("reasoning", ctx, [question])
        assert "Ethambutol is known for optic neuritis." in answer.output and answer.output.endswith(
            "The answer is C."), (fmt, answer.output)


# ------------------------------------------------------------------------------------------------------- evaluate()
def _spec(model_dir, **over) -> dict:
    spec = {"experiment": "tiny-eval", "seed": 0, "config_hash": "abc123",
            "model": {"key": "tiny", "path": str(model_dir), "system_prompt": None, "chat_template": None},
            "dataset": {"key": "own", "file_path": str(EVAL_ITEMS)},
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

    def fake(records, spec, model_path, backend_name, metrics_path, excluded=None):
        seen.update(records=records, extra=eval_run.metrics_extra(spec, model_path, backend_name, excluded))
        Path(metrics_path).write_text("{}")
        return {"n": len(records)}

    monkeypatch.setattr(eval_run, "compute_and_write_metrics", fake)
    return seen


def test_jobs_cover_items_runs_and_approaches(model_dir, items):
    spec = _spec(model_dir, test_time_scaling=True, reasoning_approaches=["immediate", "reasoning_2x"],
                 eval={"repetitions": {"PubMedQA_test": 2}, "repetition_multiplier": 2})
    jobs = eval_run.build_jobs(items, spec)
    runs = Counter((j.item["source"], j.approach) for j in jobs)
    assert runs[("PubMedQA_test", "immediate")] == 2 * 4 and runs[("MedQA_USLME_test", "reasoning_2x")] == 2 * 2
    sampling = eval_run.effective_sampling(spec)
    assert eval_run.generation_params(sampling, 0).temperature == 0.0
    assert eval_run.generation_params(sampling, 1).temperature == 0.6          # a repeat of greedy samples
    seeds = {eval_run.job_seed(0, j) for j in jobs}
    assert len(seeds) == len(jobs)                                              # every job its own sampling seed
    with pytest.raises(MedS1Error, match="unknown reasoning approach 'thinking'"):
        eval_run.build_jobs(items, {**spec, "reasoning_approaches": ["thinking"]})


def test_evaluate_errors_name_the_experiment(tmp_path, model_dir):
    spec = _spec(model_dir, dataset={"key": "gone", "file_path": str(tmp_path / "gone.json")})
    with pytest.raises(MedS1Error) as err:
        eval_run.evaluate(spec, str(model_dir), tmp_path / "g.jsonl", tmp_path / "m.json", work_dir=tmp_path / "w")
    expected = f"{tmp_path / 'gone.json'}: experiment 'tiny-eval': key 'file_path': eval dataset file not found"
    assert str(err.value) == expected


def test_evaluate_writes_sorted_generations_and_passes_extra(tmp_path, model_dir, backend, fake_metrics):
    spec = _spec(model_dir, exclude_ids=["MedQA_USLME_test-0", "not-in-the-set"])
    out = eval_run.evaluate(spec, str(model_dir), tmp_path / "gen.jsonl", tmp_path / "metrics.json",
                            work_dir=tmp_path / "work", backend=backend)
    records = read_jsonl(tmp_path / "gen.jsonl")
    assert out == {"n": 10} and len(records) == 10  # 4 sources x 2 items, PubMedQA twice
    assert "MedQA_USLME_test-0" not in {r["id"] for r in records}
    assert [(r["source"], r["id"], r["run"]) for r in records] == sorted((r["source"], r["id"], r["run"])
                                                                        for r in records)
    assert set(records[0]) == {"id", "source", "question", "options", "answer_idx", "output", "run", "approach",
                               "n_output_tokens", "n_reasoning_tokens"}
    assert Counter(r["run"] for r in records) == {0: 8, 1: 2}
    extra = fake_metrics["extra"]
    assert extra["excluded"] == {"count": 1, "ids": ["MedQA_USLME_test-0"],
                                 "reason": "probe questions used by curation"}
    assert extra["sampling"]["max_new_tokens"] == 8 and extra["sampling"]["answer_max_tokens"] == 1024
    assert {k: extra[k] for k in ("experiment", "config_hash", "backend", "dataset")} == {
        "experiment": "tiny-eval", "config_hash": "abc123", "backend": "hf", "dataset": "own"}


_KILL_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    from meds1.evaluate.backends import BackendContext, make_backend
    from meds1.evaluate.run import evaluate

    spec, out, kill_after = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    inner = make_backend("hf", spec["model"]["path"], context=BackendContext(batch_size=3))

    class KillingBackend:  # batches of 3: the kill lands in the middle of a run's prompts
        name, tokenizer, prompts_per_call, calls = inner.name, inner.tokenizer, inner.prompts_per_call, 0

        def generate(self, requests, params):
            if self.calls == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            self.calls += 1
            return inner.generate(requests, params)

    evaluate(spec, spec["model"]["path"], out + "/gen.jsonl", out + "/metrics.json", work_dir=out + "/work",
             backend=KillingBackend())
""")


def test_a_killed_and_resumed_sampled_eval_writes_what_an_uninterrupted_one_writes(tmp_path, model_dir,
                                                                                   fake_metrics):
    """Repetitions at temperature > 0: every job samples with its own seed, so batches that differ after the
    resume change nothing."""
    spec = _spec(model_dir, eval={"repetitions": {}, "repetition_multiplier": 3}, limit=None,
                 sampling={"max_new_tokens": 8, "temperature": 0.8, "top_p": 0.95, "batch_size": 3})
    script = tmp_path / "kill.py"
    script.write_text(_KILL_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), json.dumps(spec), str(tmp_path), "5"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    partial = tmp_path / "work" / eval_run.PARTIAL_NAME
    before = read_jsonl(partial)
    assert len(before) == 14 and not (tmp_path / "gen.jsonl").exists()      # run 0's 5 calls (3+3+3+3+2), then the kill
    with open(partial, "a") as fh:  # a write torn by the kill
        fh.write('{"id": "MedQA_USLME_test-0", "run": 0, "appro')

    resumed = make_backend("hf", str(model_dir), context=BackendContext(batch_size=4))  # other batches now
    counting = Recorder(resumed)
    eval_run.evaluate(spec, str(model_dir), tmp_path / "gen.jsonl", tmp_path / "metrics.json",
                      work_dir=tmp_path / "work", backend=counting)
    assert sum(len(reqs) for reqs, _, _ in counting.calls) == 14 * 3 - 14
    final = read_jsonl(tmp_path / "gen.jsonl", tolerate_torn_tail=False)
    assert len(final) == 42 and all(r in final for r in before)
    assert len(read_jsonl(partial, tolerate_torn_tail=False)) == 42          # torn tail dropped, not glued to

    fresh = tmp_path / "fresh"
    eval_run.evaluate(spec, str(model_dir), fresh / "gen.jsonl", fresh / "metrics.json", work_dir=fresh / "work",
                      backend=make_backend("hf", str(model_dir), context=BackendContext(batch_size=7)))
    assert read_jsonl(fresh / "gen.jsonl") == final                          # identical to an uninterrupted run
    assert len({r["output"] for r in final if r["id"] == final[0]["id"]}) > 1  # the runs really sample

    again = Recorder(resumed)
    eval_run.evaluate(spec, str(model_dir), tmp_path / "gen.jsonl", tmp_path / "metrics.json",
                      work_dir=tmp_path / "work", backend=again)
    assert again.calls == []                                                  # all done: nothing generated
    changed = Recorder(resumed)
    eval_run.evaluate({**spec, "prompting": "step"}, str(model_dir), tmp_path / "gen.jsonl",
                      tmp_path / "metrics.json", work_dir=tmp_path / "work", backend=changed)
    assert sum(len(reqs) for reqs, _, _ in changed.calls) == 42               # other prompts: the partial is dropped


def test_evaluate_with_tts_and_real_metrics(tmp_path, model_dir, backend):
    spec = _spec(model_dir, limit=1, eval={"repetitions": {}, "repetition_multiplier": 1}, format="qwen",
                 test_time_scaling=True, reasoning_approaches=["immediate", "reasoning", "reasoning_2x", "budget_4"],
                 sampling={"max_new_tokens": 8, "answer_max_tokens": 4, "batch_size": 4})
    metrics = eval_run.evaluate(spec, str(model_dir), tmp_path / "gen.jsonl", tmp_path / "metrics.json",
                                work_dir=tmp_path / "work", backend=backend)
    records = read_jsonl(tmp_path / "gen.jsonl")
    assert Counter(r["approach"] for r in records) == {"immediate": 4, "reasoning": 4, "reasoning_2x": 4,
                                                      "budget_4": 4}
    assert all(r["output"].startswith("<|im_start|>think\n") for r in records)
    assert all(r["n_reasoning_tokens"] <= 4 for r in records if r["approach"] == "budget_4")
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["experiment"] == "tiny-eval" and metrics["primary_approach"] == "reasoning"
    assert set(metrics["test_time_scaling"]) == {"immediate", "reasoning", "reasoning_2x", "budget_4"}
    assert metrics["overall"]["accuracy"] == metrics["test_time_scaling"]["reasoning"]["accuracy"]


def test_system_prompt_follows_the_trace_format():
    nemotron = {"format": "nemotron", "model": {"system_prompt": None}}
    assert eval_run.system_prompt_for(nemotron) == "detailed thinking on"
    assert eval_run.system_prompt_for({"format": "nemotron", "model": {"system_prompt": "Be brief."}}) == "Be brief."
    assert eval_run.system_prompt_for({"format": None, "model": {}}) is None
