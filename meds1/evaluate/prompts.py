"""Eval prompts: instruction + question + "X. option" lines, rendered with the model's chat template.

The user turn comes from a registered prompting style (``prompting`` in the eval spec: null -> "default", "step",
"strict"); the chat template is the model entry's ``chat_template`` when given, else the tokenizer's own. Prompts are
always rendered with ``add_generation_prompt=True`` so the text ends inside an open assistant turn: the model answers
as the assistant, and test-time scaling can keep appending to that same turn.
"""
from __future__ import annotations

from typing import Callable

from meds1.errors import MedS1Error
from meds1.plugins import PluginRegistry

PROMPT_STYLES: PluginRegistry[Callable[[dict], str]] = PluginRegistry("prompting style")

INSTRUCTION = "Please answer the following multiple-choice question."


def format_question(item: dict) -> str:
    """The question followed by one "X. option" line per option."""
    lines = [f"{letter}. {text}" for letter, text in item["options"].items()]
    return item["question"].strip() + "\n" + "\n".join(lines)


@PROMPT_STYLES.register("default")
def prompt_default(item: dict) -> str:
    return f"{INSTRUCTION}\n{format_question(item)}"


@PROMPT_STYLES.register("step")
def prompt_step(item: dict) -> str:
    return f"{INSTRUCTION}\n{format_question(item)}\nLet's think step by step."


@PROMPT_STYLES.register("strict")
def prompt_strict(item: dict) -> str:
    # The matcher's most reliable pattern is "The answer is X"; ask for it explicitly.
    return (f"{INSTRUCTION} Think it through, then end your response with 'The answer is X', where X is the "
            f"letter of the correct option.\n{format_question(item)}")


def build_messages(item: dict, *, prompting: str | None = None, system_prompt: str | None = None) -> list[dict]:
    user = PROMPT_STYLES.get(prompting or "default", key="prompting")(item)
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return system + [{"role": "user", "content": user}]


def build_prompt(item: dict, tokenizer, *, prompting: str | None = None, system_prompt: str | None = None,
                 chat_template: str | None = None) -> str:
    """The full prompt text, ending with the chat template's generation prompt (an open assistant turn)."""
    template = chat_template or getattr(tokenizer, "chat_template", None)
    if not template:
        raise MedS1Error("the tokenizer has no chat template; set 'chat_template' on the model entry in config.json",
                         file=getattr(tokenizer, "name_or_path", None), key="chat_template")
    messages = build_messages(item, prompting=prompting, system_prompt=system_prompt)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, chat_template=template)
