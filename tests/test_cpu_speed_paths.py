"""The CPU speed paths answer exactly what the plain paths answer: continuous batching vs transformers generate, the
CPU loss head vs trl's fused head, fused AdamW vs torch's loop, and the bf16 capability switch."""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest
import torch

from meds1 import devices
from meds1.evaluate.backends import BackendContext, GenerationParams, Request, make_backend


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with large random weights: greedy answers differ per prompt and in length."""
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("speed") / "tiny-diverse"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2 and "embed" not in name:
                param.normal_(0.0, 0.4)
    model.save_pretrained(out)
    for name in os.listdir(tiny_model_dir):
        if name.startswith(("tokenizer", "chat_template", "special_tokens")):
            shutil.copy(Path(tiny_model_dir) / name, out / name)
    return out


def engines(model_dir, batch: int):
    make = lambda mode: make_backend("hf", str(model_dir), context=BackendContext(batch_size=batch),  # noqa: E731
                                     options={"hf": {"continuous_batching": mode, "dtype": "float32"}})
    return make("on"), make("off")


def requests(tokenizer, n: int) -> list[Request]:
    texts = [" ".join(["fever cough rash which answer"] * (1 + i % 7)) + f" case {i}" for i in range(n)]
    return [Request(tuple(tokenizer(t, add_special_tokens=False)["input_ids"]), seed=50 + i,
                    max_new_tokens=8 + 9 * (i % 5)) for i, t in enumerate(texts)]


@pytest.mark.parametrize("params", [
    GenerationParams(max_new_tokens=48),
    GenerationParams(max_new_tokens=40, min_tokens=3, stop_strings=("answer",)),
    GenerationParams(max_new_tokens=40, temperature=0.9, top_p=0.9),
], ids=["greedy", "stops", "sampled"])
def test_continuous_batching_answers_what_generate_answers(model_dir, params):
    continuous, generate = engines(model_dir, batch=3)  # 11 prompts through 3 rows: rows leave and join
    assert continuous.describe()["engine"] == "continuous" and generate.describe()["engine"] == "generate"
    reqs = requests(continuous.tokenizer, 11)
    answers = continuous.generate(reqs, params)
    assert answers == generate.generate(reqs, params)
    assert len({g.n_output_tokens for g in answers}) > 2                    # rows really end at different steps
    wide = make_backend("hf", str(model_dir), context=BackendContext(batch_size=8),
                        options={"hf": {"continuous_batching": "on"}})
    assert wide.generate(reqs, params) == answers                           # the batch does not change an answer


def test_continuous_batching_survives_long_runs_that_trim_the_cache(model_dir):
    continuous, generate = engines(model_dir, batch=2)
    reqs = [dataclasses.replace(r, max_new_tokens=None) for r in requests(continuous.tokenizer, 5)]
    reqs.append(Request(reqs[0].prompt_ids * 3))  # a long prompt, given last: it joins first
    params = GenerationParams(max_new_tokens=120)
    assert continuous.generate(reqs, params) == generate.generate(reqs, params)


def test_cpu_loss_head_gives_trls_loss_and_gradients(tiny_model_dir):
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from meds1.sft.lm_head import trained_positions_forward

    torch.manual_seed(0)
    ids = torch.randint(5, 500, (2, 24))
    labels = ids.clone()
    labels[:, :10] = -100
    results = []
    for ours in (False, True):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
        if ours:
            model.forward = trained_positions_forward(model.forward).__get__(model)
        out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        (-out.log_probs.sum() / out.label_mask.sum()).backward()
        results.append((out, model.model.embed_tokens.weight.grad.clone()))
    (trl, trl_grad), (cpu, cpu_grad) = results
    assert torch.equal(trl.label_mask, cpu.label_mask)
    for field in ("log_probs", "entropy"):
        assert torch.allclose(getattr(trl, field), getattr(cpu, field), atol=1e-5), field
    assert torch.equal(trl.is_top1, cpu.is_top1)
    assert torch.allclose(trl_grad, cpu_grad, atol=1e-6)


def test_fused_adamw_only_for_plain_cpu_parameters():
    from meds1.sft.optim import build_adamw, step_kernel

    model = torch.nn.Linear(4, 3)
    optimizer = build_adamw(model, learning_rate=1e-3, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8)
    assert optimizer.defaults["fused"] is True
    assert step_kernel([{"params": []}]) == {}


def test_cpu_bf16_switch(monkeypatch):
    monkeypatch.setenv(devices.CPU_BF16_ENV, "0")
    assert not devices.cpu_bf16_is_fast()
    monkeypatch.setenv(devices.CPU_BF16_ENV, "1")
    assert devices.cpu_bf16_is_fast()
    monkeypatch.delenv(devices.CPU_BF16_ENV)
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "avx512_bf16"})  # Zen 4 / Cooper Lake: no AMX
    assert not devices.cpu_bf16_is_fast()
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx512_bf16", "amx_bf16", "amx_tile"})
    assert devices.cpu_bf16_is_fast()


def test_cpu_bf16_autocast_needs_native_bf16_and_a_wide_model(monkeypatch):
    from meds1.sft.train import mixed_precision_bf16

    monkeypatch.setenv(devices.CPU_BF16_ENV, "1")
    assert mixed_precision_bf16("float32", on_gpu=False, model_width=576)
    assert not mixed_precision_bf16("float32", on_gpu=False, model_width=64)     # the test model: casts cost more
    assert not mixed_precision_bf16("bfloat16", on_gpu=False, model_width=576)   # bf16 weights: no autocast
    monkeypatch.setenv(devices.CPU_BF16_ENV, "0")
    assert not mixed_precision_bf16("float32", on_gpu=False, model_width=576)
    assert mixed_precision_bf16("float32", on_gpu=True)
