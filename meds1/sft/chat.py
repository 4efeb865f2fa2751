"""Chat examples for SFT and the tokenizer that renders them.

Training data is conversational prompt/completion (``{"prompt": [messages], "completion": [assistant message]}``):
trl then computes the loss on the completion only, with any chat template, no template surgery.
Chat formatting comes from the tokenizer's own template, or from the model entry's ``chat_template`` override, so a
new model is a config edit.
"""
from __future__ import annotations

from pathlib import Path

from meds1.errors import MedS1Error
from meds1.traces.formats import TraceFormat, get_format


def build_example(question: str, cot: str | None, response: str, *, fmt: TraceFormat | str,
                  system_prompt: str | None = None) -> dict:
    """One conversational prompt/completion example; an empty ``cot`` trains on the answer alone.

    ``system_prompt`` (the model entry's) wins over the format's own (e.g. nemotron's "detailed thinking on").
    """
    fmt = get_format(fmt) if isinstance(fmt, str) else fmt
    system = system_prompt if system_prompt is not None else fmt.system_prompt
    prompt = [{"role": "system", "content": system}] if system else []
    prompt.append({"role": "user", "content": question.strip()})
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": fmt.render(cot, response)}]}


def load_tokenizer(model_entry: dict, path: str | Path | None = None):
    """The model's tokenizer, with the entry's ``chat_template`` (inline Jinja or a file path) applied when given."""
    from transformers import AutoTokenizer

    path = path or model_entry.get("path") or model_entry.get("local_path") or model_entry.get("hf_path")
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=bool(model_entry.get("trust_remote_code")))
    override = model_entry.get("chat_template")
    if override:
        tokenizer.chat_template = _read_template(override, model_entry)
    if not tokenizer.chat_template:
        raise MedS1Error(f"the tokenizer at {path} has no chat template: set one in the model entry",
                         file="config.json", key=f"models.{model_entry.get('key', '?')}.chat_template")
    if tokenizer.pad_token is None:  # Llama-style tokenizers ship without one; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _read_template(value: str, model_entry: dict) -> str:
    if "{{" in value or "{%" in value:
        return value
    candidate = Path(value)
    if candidate.is_file():
        return candidate.read_text(encoding="utf-8")
    raise MedS1Error(f"chat_template is neither a Jinja template nor an existing file: {value!r}",
                     file="config.json", key=f"models.{model_entry.get('key', '?')}.chat_template")
