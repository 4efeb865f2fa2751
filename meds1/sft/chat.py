"""Chat examples for SFT and the tokenizer that renders them.

Training data is conversational prompt/completion (``{"prompt": [messages], "completion": [assistant message]}``):
trl then computes the loss on the completion only, with any chat template, no template surgery.
Chat formatting comes from the tokenizer's own template, or from the model entry's ``chat_template`` override, so a
new model is a config edit.
"""
from __future__ import annotations

from pathlib import Path

from meds1 import tokenizers
from meds1.traces.examples import build_example  # noqa: F401  (re-exported: the SFT data shape)


def load_tokenizer(model_entry: dict, path: str | Path | None = None):
    """The model's tokenizer, with the entry's ``chat_template`` applied; SFT needs a chat template."""
    return tokenizers.load_tokenizer(model_entry, path, require_template=True)
