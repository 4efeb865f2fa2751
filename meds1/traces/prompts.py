"""Prompt templates (``meds1/resources/prompts/<name>.txt``, or text a plug-in module outside the package adds with
``add_prompt``) and the LLM requests built from them.

Every request carries its offline stand-in (``LLMRequest.offline``): a rule over the request's structured payload,
so the offline provider (tests, CI, the CPU demo) answers it without knowing any transform.

    request = build_request("extract:step", "step", {"question": q, "cot": c, "answer": a}, payload,
                            offline=stand_in(offline_step, "one '## Step N' per paragraph"))
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Callable

from meds1.errors import MedS1Error
from meds1.llm.base import LLMRequest

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "resources" / "prompts"
# The output limit is not set here: it comes from the llm block's max_output_tokens (the client fills it in).
TRANSFORM_PARAMS = {"temperature": 0.0}

Rule = Callable[[dict], "str | tuple[str, str]"]  # payload -> text, or (text, what the rule did this time)


_ADDED: dict[str, str] = {}  # name -> template text, from plug-in modules that carry their prompt inline


def add_prompt(name: str, text: str) -> str:
    """Make ``text`` the template ``name`` (a plug-in module outside the package has no prompts folder); returns
    ``name``. A name that a package file or another module already uses for different text is refused."""
    taken = _ADDED.get(name, text) != text or (PROMPTS_DIR / f"{name}.txt").exists()
    if taken:
        raise MedS1Error(f"prompt template '{name}' is already defined", key="prompt")
    _ADDED[name] = text
    return name


def load_prompt(name: str) -> str:
    return _ADDED[name] if name in _ADDED else _read_prompt_file(name)


@functools.cache
def _read_prompt_file(name: str) -> str:
    path = PROMPTS_DIR / f"{name}.txt"
    if not path.exists():
        raise MedS1Error(f"no prompt template '{name}'", file=str(path))
    return path.read_text(encoding="utf-8")


def render_prompt(name: str, **values: Any) -> str:
    """Fill the ``{placeholder}``s of template ``name`` (one pass, so braces inside the values are left alone)."""
    template = load_prompt(name)
    missing = set(re.findall(r"\{([a-z_]+)\}", template)) - set(values)
    if missing:
        raise MedS1Error(f"prompt template '{name}' needs {sorted(missing)}", file=str(PROMPTS_DIR / f"{name}.txt"))
    return re.sub(r"\{([a-z_]+)\}", lambda m: str(values[m.group(1)]), template)


def stand_in(rule: Rule, describe: str) -> Callable[[LLMRequest], tuple[str, dict]]:
    """An ``LLMRequest.offline`` answer from a rule over the payload; ``meta["offline_rule"]`` says what it did."""
    def answer(request: LLMRequest) -> tuple[str, dict]:
        out = rule(request.payload)
        text, used = out if isinstance(out, tuple) else (out, describe)
        return text, {"offline_rule": used}
    answer.__doc__ = describe
    return answer


def build_request(task: str, template: str, values: dict, payload: dict, *, offline: Callable,
                  params: dict | None = None) -> LLMRequest:
    return LLMRequest(task=task, prompt=render_prompt(template, **values), payload=payload,
                      params=dict(TRANSFORM_PARAMS if params is None else params), offline=offline)
