"""Chat examples for SFT and the tokenizer that renders them.

Training data is conversational prompt/completion (``{"prompt": [messages], "completion": [assistant message]}``):
trl then computes the loss on the completion only, with any chat template, no template surgery.
Chat formatting comes from the tokenizer's own template, or from the model entry's ``chat_template`` override, so a
new model is a config edit.
"""
from __future__ import annotations

from pathlib import Path

from meds1.errors import MedS1Error
from meds1.traces.examples import build_example  # noqa: F401  (re-exported: the SFT data shape)


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
