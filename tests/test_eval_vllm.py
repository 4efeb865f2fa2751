"""The vLLM backend through a fake ``vllm`` module (tests/fake_vllm: the real API's shape and stopping rules, every
call recorded): one LLM.generate per run, resumable output, the engine sized to the run, tensor parallelism checked
against the model's heads when the workflow is parsed, and the same cut points as the hf backend on the same model."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from eval_models import QUESTIONS, format_prompt, train_on_formats
from meds1.errors import MedS1Error
from meds1.evaluate import backends as backends_module
from meds1.evaluate import run as eval_run
from meds1.evaluate.backends import BackendContext, GenerationParams, Request, make_backend, resolve_backend_name
from meds1.io import read_jsonl
from meds1.traces.formats import TRACE_FORMATS
from workflow import make_workdir, snakemake, tiny_config

EVAL_ITEMS = Path(__file__).parent / "data" / "eval_items.json"


@pytest.fixture(scope="module")
def trained_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return train_on_formats(tiny_model_dir, tmp_path_factory.mktemp("formats") / "trained")


@pytest.fixture(scope="module")
def hundred_items(tmp_path_factory) -> Path:
    """100 questions in four sources: the project's 14 items, repeated with their own ids."""
    own = json.loads(EVAL_ITEMS.read_text())
    rows = [item for items in own.values() for item in items]
    grouped = {src: [rows[(i + k) % len(rows)] for i in range(25)] for k, src in enumerate(own)}
    path = tmp_path_factory.mktemp("hundred") / "eval.json"
    path.write_text(json.dumps(grouped))
    return path


def spec_for(model_dir, data: Path, **over) -> dict:
    spec = {"experiment": "vllm-run", "seed": 0, "model": {"key": "tiny", "path": str(model_dir)},
            "dataset": {"key": "hundred", "file_path": str(data)}, "format": None, "prompting": None,
            "eval": {"repetitions": {}, "repetition_multiplier": 1}, "test_time_scaling": False,
            "backend": "vllm", "backend_options": {"vllm": {"tensor_parallel_size": 2}},
            "sampling": {"max_new_tokens": 5}, "bootstrap": {"resamples": 100}}
    return {**spec, **over}


def answer_b(llm, prompt_ids, params):
    return llm.tokenizer("The answer is B.", add_special_tokens=False)["input_ids"] + [llm.tokenizer.eos_token_id]


def test_a_100_prompt_run_is_one_generate_call_on_an_engine_sized_to_it(vllm, tmp_path, tiny_model_dir,
                                                                        hundred_items):
    vllm.ENGINE = answer_b
    spec = spec_for(tiny_model_dir, hundred_items)
    metrics = eval_run.evaluate(spec, str(tiny_model_dir), tmp_path / "g.jsonl", tmp_path / "m.json",
                                work_dir=tmp_path / "work")
    assert len(vllm.CALLS["generate"]) == 1 and len(vllm.CALLS["generate"][0]["prompts"]) == 100
    assert vllm.CALLS["generate"][0]["use_tqdm"] is True                 # vLLM's progress bar goes to the log
    (init,) = vllm.CALLS["init"]
    items = eval_run.load_eval_items(spec["dataset"])
    tokenizer = eval_run.model_tokenizer(spec, str(tiny_model_dir))
    longest = max(map(len, eval_run.encode_prompts(items, tokenizer, spec).values()))
    assert init["max_model_len"] == longest + 5 + eval_run.CONTEXT_MARGIN
    assert (init["tensor_parallel_size"], init["gpu_memory_utilization"]) == (2, 0.9)
    assert metrics["overall"]["n"] == 100 and metrics["backend"] == "vllm"
    assert len(read_jsonl(tmp_path / "work" / eval_run.PARTIAL_NAME)) == 100


def test_output_is_flushed_after_each_call_and_a_rerun_generates_only_the_rest(vllm, tmp_path, tiny_model_dir,
                                                                              hundred_items):
    spec = spec_for(tiny_model_dir, hundred_items,
                    backend_options={"vllm": {"prompts_per_call": 40, "max_model_len": 1024}})

    def dies_on_the_second_call(llm, prompt_ids, params):
        if len(vllm.CALLS["generate"]) == 2:
            raise RuntimeError("node preempted")
        return answer_b(llm, prompt_ids, params)

    vllm.ENGINE = dies_on_the_second_call
    with pytest.raises(RuntimeError, match="preempted"):
        eval_run.evaluate(spec, str(tiny_model_dir), tmp_path / "g.jsonl", tmp_path / "m.json",
                          work_dir=tmp_path / "work")
    assert len(read_jsonl(tmp_path / "work" / eval_run.PARTIAL_NAME)) == 40 and not (tmp_path / "g.jsonl").exists()
    assert vllm.CALLS["init"][0]["max_model_len"] == 1024                 # the option wins over the computed length
    vllm.reset()
    vllm.ENGINE = answer_b
    eval_run.evaluate(spec, str(tiny_model_dir), tmp_path / "g.jsonl", tmp_path / "m.json", work_dir=tmp_path / "work")
    assert [len(c["prompts"]) for c in vllm.CALLS["generate"]] == [40, 20]
    fresh = tmp_path / "fresh"
    eval_run.evaluate(spec, str(tiny_model_dir), fresh / "g.jsonl", fresh / "m.json", work_dir=fresh / "work")
    assert read_jsonl(fresh / "g.jsonl") == read_jsonl(tmp_path / "g.jsonl")


@pytest.mark.parametrize("params", [
    GenerationParams(max_new_tokens=120),                                              # end of turn
    GenerationParams(max_new_tokens=7),                                                # the length
    GenerationParams(max_new_tokens=120, stop_token_ids=(1,)),                         # <|im_start|>: s1's stop
    GenerationParams(max_new_tokens=120, stop_token_ids=(1,), min_tokens=1),
    GenerationParams(max_new_tokens=120, stop_strings=("## Final Response", "</think>")),
], ids=["eos", "length", "stop-token", "min-tokens", "stop-strings"])
def test_hf_and_vllm_cut_the_same_streams_at_the_same_token(vllm, trained_dir, params):
    """The fake vLLM runs the same model greedily and stops as vLLM does; both backends then agree exactly."""
    import torch

    hf = make_backend("hf", str(trained_dir), context=BackendContext(batch_size=4))

    def greedy(llm, prompt_ids, sampling):
        ids = list(prompt_ids)
        for step in range(sampling.max_tokens):
            with torch.no_grad():
                logits = hf.model(torch.tensor([ids])).logits[0, -1]
            if step < sampling.min_tokens:  # vLLM masks stop tokens below min_tokens
                logits[list(sampling.stop_token_ids)] = float("-inf")
            ids.append(int(logits.argmax()))
            yield ids[-1]

    vllm.ENGINE = greedy
    fast = make_backend("vllm", str(trained_dir), context=BackendContext(model={"key": "trained"}))
    tok = hf.tokenizer
    requests = [Request(tuple(tok(tok.apply_chat_template(format_prompt(f.name, q), tokenize=False,
                                                          add_generation_prompt=True),
                                  add_special_tokens=False)["input_ids"]), max_new_tokens=limit)
                for f in TRACE_FORMATS for (q, _, _), limit in zip(QUESTIONS, (None, 100))]
    assert hf.generate(requests, params) == fast.generate(requests, params)


def test_a_model_trained_on_each_format_writes_its_answer_marker_on_both_paths(vllm, trained_dir):
    hf = make_backend("hf", str(trained_dir), context=BackendContext(batch_size=8))
    vllm.ENGINE = lambda llm, prompt_ids, params: hf.model.generate(
        __import__("torch").tensor([prompt_ids]), max_new_tokens=params.max_tokens, do_sample=False,
        eos_token_id=sorted(params.stop_token_ids), pad_token_id=0)[0, len(prompt_ids):].tolist()
    fast = make_backend("vllm", str(trained_dir), context=BackendContext(model={"key": "trained"}))
    for fmt in TRACE_FORMATS:
        prompt = hf.tokenizer.apply_chat_template(format_prompt(fmt.name, QUESTIONS[0][0]), tokenize=False,
                                                  add_generation_prompt=True)
        request = [Request(tuple(hf.tokenizer(prompt, add_special_tokens=False)["input_ids"]))]
        for backend in (hf, fast):
            (gen,) = backend.generate(request, GenerationParams(max_new_tokens=160))
            assert fmt.impl.answer_marker in gen.text and gen.text.rstrip().endswith("The answer is B."), \
                (fmt.name, backend.name, gen.text)


# ----------------------------------------------------------------------------------------- refused before any job
def test_a_tensor_parallel_size_the_heads_cannot_split_is_refused_by_snakemake_n(tmp_path, tiny_model_dir):
    cfg = tiny_config(tiny_model_dir, eval_file=EVAL_ITEMS)
    cfg["models"]["qwen7b-like"] = {"hf_path": "Qwen/Qwen2.5-7B-Instruct", "num_attention_heads": 28,
                                    "num_key_value_heads": 4, "format": "qwen"}
    results = {"experiments": {
        "base": {"config": {"model_key": "qwen7b-like", "datasets": {"eval": "evalset"},
                            "eval": {"backend": "vllm", "backend_options": {"vllm": {"tensor_parallel_size": 8}}}}},
        "tiny": {"config": {"model_key": "tiny", "datasets": {"eval": "evalset"},
                            "eval": {"backend_options": {"vllm": {"tensor_parallel_size": 3}}}}}}}
    wd = make_workdir(tmp_path / "w", results=results, config=cfg, workflow={"experiments": ["base", "tiny"]})
    out = snakemake(wd, "-n", "eval/base/metrics.json", timeout=300)
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert len(lines) == 1 and "experiment 'base'" in lines[0] and "tensor_parallel_size 8 does not divide" in lines[0]
    assert "28 query, 4 key/value heads" in lines[0] and "use one of 1, 2, 4, 28" in lines[0]
    out = snakemake(wd, "-n", "eval/tiny/metrics.json", timeout=300)  # heads from the local model's config.json
    assert out.returncode != 0 and "tensor_parallel_size 3 does not divide model 'tiny'" in out.stderr


def test_auto_on_a_gpu_job_without_vllm_is_an_error_naming_the_conda_env(monkeypatch, vllm):
    monkeypatch.setattr(backends_module, "gpus_visible", lambda: 1)
    assert resolve_backend_name("auto") == "vllm"                        # a GPU and vllm
    monkeypatch.setitem(sys.modules, "vllm", None)                        # `import vllm` raises ImportError
    with pytest.raises(MedS1Error, match="backend auto found a GPU.*--sdm conda.*eval.backend: hf"):
        resolve_backend_name("auto")
    monkeypatch.setattr(backends_module, "gpus_visible", lambda: 0)
    assert resolve_backend_name("auto") == "hf"                          # CPU: the hf backend, no error
    with pytest.raises(MedS1Error, match="unknown eval backend 'vlm'.*did you mean 'vllm'"):
        resolve_backend_name("vlm")


def test_backend_options_are_validated_by_the_backends_own_dataclass(tiny_model_dir, vllm):
    with pytest.raises(MedS1Error, match="backend_options.vllm.*unknown key 'tp'"):
        make_backend("vllm", str(tiny_model_dir), options={"vllm": {"tp": 2}})
    with pytest.raises(MedS1Error, match="gpu_memory_utilization"):
        make_backend("vllm", str(tiny_model_dir), options={"vllm": {"gpu_memory_utilization": 1.5}})


def test_the_engine_context_never_exceeds_the_models_own(tiny_model_dir, vllm):
    make_backend("vllm", str(tiny_model_dir), context=BackendContext(context_tokens=5000))
    make_backend("vllm", str(tiny_model_dir), context=BackendContext(context_tokens=300))
    assert [c["max_model_len"] for c in vllm.CALLS["init"]] == [1024, 300]   # the tiny model holds 1024 positions
