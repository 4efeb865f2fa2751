"""The base model answers training questions (difficulty probing for ``s1``, novelty for ``novelty-answer``).

    answers = answer_questions(spec["base_model"], df["Question"].tolist(), max_new_tokens=1024, batch_size=8,
                               cache_dir="cache")

Greedy ``transformers`` generation in left-padded batches, the question as the user turn of the model's chat template
(with the entry's system prompt; curation asks in the seed's words, ``base_answer_prompt.txt``). Answers are appended
to ``<cache_dir>/base_answers/<key>.jsonl`` after every batch, keyed by (model path, prompt settings,
max_new_tokens) per file and by the question's sha256 per line, so a rerun or another experiment with the same model
generates only the questions it has not seen; a crash loses one batch at most.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import sys
from pathlib import Path

from meds1.errors import MedS1Error
from meds1.io import append_jsonl, read_jsonl
from meds1.tokenizers import load_tokenizer

log = logging.getLogger(__name__)

PROMPT_FILE = Path(__file__).resolve().parents[1] / "resources" / "curation" / "base_answer_prompt.txt"


def question_key(question: str) -> str:
    return hashlib.sha256(str(question).encode("utf-8")).hexdigest()


def answers_file(model_entry: dict, max_new_tokens: int, cache_dir, template: str = "{question}") -> Path:
    """One file per (model path, system prompt, chat template, max_new_tokens, prompt): anything that changes an
    answer."""
    settings = [str(model_entry.get("path") or model_entry.get("hf_path")), model_entry.get("system_prompt"),
                model_entry.get("chat_template"), int(max_new_tokens)]
    if template != "{question}":  # the bare question keeps its earlier cache files
        settings.append(template)
    key = hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:24]
    return Path(cache_dir) / "base_answers" / f"{key}.jsonl"


@functools.lru_cache(maxsize=2)
def counting_tokenizer(path: str, remote: bool = False):
    """The base model's tokenizer for token counts, loaded once per job (s1 measures every trace with it)."""
    return load_tokenizer({"path": path, "trust_remote_code": remote}, key="model_choices.base")


def token_lengths(texts: list[str], model_entry: dict) -> list[int]:
    """Token count of each text under the model's tokenizer (no special tokens), as the seed measured traces."""
    tok = counting_tokenizer(str(model_entry.get("path") or model_entry.get("hf_path")),
                             bool(model_entry.get("trust_remote_code")))
    counts = []
    for start in range(0, len(texts), 1024):  # batches: fast tokenizers parallelise, one huge call holds all ids
        ids = tok([str(t) for t in texts[start:start + 1024]], add_special_tokens=False)["input_ids"]
        counts += [len(x) for x in ids]
    return counts


def load_generator(model_entry: dict):
    """(tokenizer, model) ready for left-padded batched greedy generation on the best device here."""
    import torch
    from transformers import AutoModelForCausalLM

    path = model_entry.get("path") or model_entry.get("hf_path")
    remote = bool(model_entry.get("trust_remote_code"))
    tok = load_tokenizer(model_entry, padding_side="left")  # left: new tokens must follow every prompt directly
    try:
        cuda = torch.cuda.is_available()
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=remote, use_kernels=False,
                                                     dtype=torch.bfloat16 if cuda else torch.float32)
    except OSError as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise MedS1Error(f"cannot load the base model '{path}' ({first})",
                         key=f"models.{model_entry.get('key')}") from None
    return tok, model.to("cuda" if cuda else "cpu").eval()


def render_prompt(tok, question: str, system_prompt: str | None) -> str:
    if not getattr(tok, "chat_template", None):
        return f"Question: {question}\nAnswer:"
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": question}]
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def generate_batch(tok, model, prompts: list[str], max_new_tokens: int) -> list[str]:
    import torch

    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    return [text.strip() for text in tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]


def answer_questions(model_entry: dict, questions: list[str], *, max_new_tokens: int, batch_size: int, cache_dir,
                     template: str = "{question}") -> list[str]:
    """The base model's greedy answer to each question (same order); cached answers are not regenerated.
    ``template``: the user turn, with ``{question}``."""
    from tqdm import tqdm

    path = answers_file(model_entry, max_new_tokens, cache_dir, template)
    known = {rec["q"]: rec["answer"] for rec in read_jsonl(path)}
    keys = [question_key(q) for q in questions]
    todo = sorted({k: q for k, q in zip(keys, questions) if k not in known}.items(), key=lambda kq: len(kq[1]))
    if todo:  # shortest first: batches of similar length waste less padding
        log.info("base model %s answers %d questions (%d cached)", model_entry.get("key"), len(todo),
                 len(keys) - len(todo))
        path.parent.mkdir(parents=True, exist_ok=True)
        tok, model = load_generator(model_entry)
        with tqdm(total=len(todo), desc="base model answers", unit="q", file=sys.stderr, mininterval=1.0) as bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start:start + batch_size]
                prompts = [render_prompt(tok, template.format(question=q), model_entry.get("system_prompt"))
                           for _, q in batch]
                for (key, _), answer in zip(batch, generate_batch(tok, model, prompts, max_new_tokens)):
                    known[key] = answer
                    append_jsonl(path, {"q": key, "answer": answer})
                bar.update(len(batch))
    return [known[k] for k in keys]


def curation_settings(ctx) -> dict:
    """How the curate job asks the base model: config.json ``curation`` (``llama_batch_size``,
    ``base_max_new_tokens``) and the seed's prompt."""
    return {"cache_dir": ctx.cache_dir, "max_new_tokens": ctx.settings.base_max_new_tokens,
            "batch_size": ctx.settings.llama_batch_size, "template": PROMPT_FILE.read_text(encoding="utf-8").strip()}


def answer_for_curation(questions: list[str], ctx) -> list[str]:
    """``answer_questions`` with the curate job's base model (config.json ``model_choices.base``)."""
    return answer_questions(ctx.base_model, questions, **curation_settings(ctx))


def uncached_for_curation(questions: list[str], ctx) -> int:
    """How many distinct questions the base model would still have to answer (GPU work for the estimate)."""
    kw = curation_settings(ctx)
    path = answers_file(ctx.base_model, kw["max_new_tokens"], kw["cache_dir"], kw["template"])
    known = {rec["q"] for rec in read_jsonl(path)}
    return len({question_key(q) for q in questions} - known)
