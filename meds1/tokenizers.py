"""A model's tokenizer, loaded one way for every stage (SFT, eval, the curation base model, dataset normalisers).

    tok = load_tokenizer(spec["model"])                         # the entry's path, template override, remote code
    tok = load_tokenizer(spec["model"], "ckpts/x/final", padding_side="left")   # another folder, batched generation
    tok = load_tokenizer("models/smollm2-135m")                  # a bare folder or hub id

A config.json model entry's ``chat_template`` (inline Jinja, or a file) replaces the tokenizer's own; an object there
is the seed's sketch of a layout, documentation only. Chat formatting therefore comes from config, never code.
"""
from __future__ import annotations

import sys
from pathlib import Path

from meds1.errors import MedS1Error

_NOTICES: set[str] = set()


def read_chat_template(value, *, key: str = "chat_template", base_dir: str | Path = ".") -> str | None:
    """A model entry's ``chat_template`` as Jinja text: inline Jinja as given, a file's text, or None (absent, or an
    object: the seed's config.json sketches Nemotron's layout there, which is documentation, not a template)."""
    if not value:
        return None
    if isinstance(value, dict):
        _notice_once(f"note: config.json {key} is an object (documentation only): the tokenizer's own chat "
                     "template is used")
        return None
    if "{{" in value or "{%" in value:
        return value
    path = Path(value) if Path(value).is_absolute() else Path(base_dir) / value
    if not path.is_file():
        raise MedS1Error(f"chat_template is neither a Jinja template nor an existing file: {value!r}",
                         file="config.json", key=key)
    return path.read_text(encoding="utf-8")


def load_tokenizer(model: dict | str, path: str | Path | None = None, *, padding_side: str | None = None,
                   require_template: bool = False, file: str = "config.json", key: str | None = None):
    """The tokenizer of a model entry (or of the folder / hub id ``model``), loaded from ``path`` when given.

    The entry's ``trust_remote_code`` and ``chat_template`` override apply; a tokenizer without a pad token pads
    with eos (Llama-style tokenizers ship without one; padding is masked anyway). ``padding_side="left"`` for
    batched generation (new tokens must follow every prompt directly). ``require_template``: no chat template is an
    error (SFT renders every example with it). A folder or hub id that does not load is one MedS1Error line naming
    ``key`` (default ``models.<entry key>``).
    """
    from transformers import AutoTokenizer

    entry = {"path": model} if isinstance(model, (str, Path)) else model
    path = str(path or entry.get("path") or entry.get("local_path") or entry.get("hf_path"))
    where = {"file": file, "key": key or (f"models.{entry['key']}" if entry.get("key") else None)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=bool(entry.get("trust_remote_code")))
    except OSError as err:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise MedS1Error(f"cannot load the tokenizer '{path}' ({first})", **where) from None
    template_key = f"models.{entry['key']}.chat_template" if entry.get("key") else "chat_template"
    override = read_chat_template(entry.get("chat_template"), key=template_key)
    if override:
        tokenizer.chat_template = override
    if require_template and not tokenizer.chat_template:
        raise MedS1Error(f"the tokenizer at {path} has no chat template: set one in the model entry",
                         file="config.json", key=template_key)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if padding_side:
        tokenizer.padding_side = padding_side
    return tokenizer


def _notice_once(text: str) -> None:
    if text not in _NOTICES:
        _NOTICES.add(text)
        print(text, file=sys.stderr)
