"""Tiny models for the eval tests: one trained on every trace format (it learns to write each format's markers),
built in seconds from the session's tiny random Llama."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

QUESTIONS = [
    ("Which artery is occluded with ST elevation in II, III and aVF?", "Inferior leads point to the right coronary.",
     "B"),
    ("Which drug causes optic neuritis?", "Ethambutol is known for optic neuritis.", "C"),
]


def format_prompt(format_name: str, question: str) -> list[dict]:
    """The user turn names the format, so one model can learn all of them."""
    return [{"role": "user", "content": f"[{format_name}] {question}"}]


def train_on_formats(tiny_model_dir: str | Path, out_dir: str | Path, steps: int = 120) -> Path:
    """Fine-tune the tiny model on each format's rendering of two answers until it reproduces them greedily."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from meds1.traces.formats import TRACE_FORMATS

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rows = []
    for fmt in TRACE_FORMATS:
        for question, cot, letter in QUESTIONS:
            prompt = format_prompt(fmt.name, question)
            completion = [{"role": "assistant", "content": fmt.impl.render(cot, f"The answer is {letter}.")}]
            head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            full = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
            ids = tokenizer(full, add_special_tokens=False)["input_ids"]
            n_prompt = len(tokenizer(head, add_special_tokens=False)["input_ids"])
            rows.append((ids, n_prompt))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([[-100] * n + ids[n:] + [-100] * (width - len(ids)) for ids, n in rows])  # completion only
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):  # the whole set each step: it is memorised, which is the point
        model(input_ids=input_ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    for name in os.listdir(tiny_model_dir):
        if name.startswith(("tokenizer", "chat_template", "special_tokens")):
            shutil.copy(Path(tiny_model_dir) / name, out_dir / name)
    return out_dir


class Recorder:
    """Wraps an eval backend; keeps every (requests, params, generations) call."""

    def __init__(self, inner):
        self.inner, self.name, self.tokenizer = inner, inner.name, inner.tokenizer
        self.prompts_per_call, self.calls = inner.prompts_per_call, []

    def generate(self, requests, params):
        gens = self.inner.generate(requests, params)
        self.calls.append((requests, params, gens))
        return gens
