"""Trace formats: how a reasoning trace and its final answer are laid out in the assistant's reply.

Each format is data (a template with ``{cot}`` and ``{answer}``) registered as a small plug-in. Curation renders
training targets with ``fmt.render(cot, answer)``; evaluation and test-time scaling split a generation with
``answer_marker`` (the final answer starts right after it) and ``think_open``/``think_close`` (the text that opens and
ends the reasoning; budget forcing suppresses ``think_close`` to make the model keep thinking).

    >>> get_format("huatuo").render("Step 1.", "B.")
    '## Thinking\\n\\nStep 1.\\n\\n## Final Response\\n\\nB.'

An empty trace (curation ``extract: none``) drops the thinking part entirely: the reply is just the answer.
"""
from __future__ import annotations

from dataclasses import dataclass

from meds1.plugins import TRACE_FORMATS


@dataclass(frozen=True)
class TraceFormat:
    name: str
    template: str            # contains "{cot}" once, then "{answer}" once
    answer_marker: str       # the final answer starts right after this text (plus whitespace)
    think_open: str          # text that opens the reasoning
    think_close: str         # text that ends the reasoning
    system_prompt: str | None = None  # a system prompt the format needs when the model entry gives none

    def __post_init__(self):
        head, cot, tail = self.template.partition("{cot}")
        if not cot or "{answer}" not in tail or "{answer}" in head:
            raise ValueError(f"trace format '{self.name}': template needs '{{cot}}' then '{{answer}}'")

    def render(self, cot: str | None, answer: str) -> str:
        """The assistant reply for one example; an empty ``cot`` gives the answer alone."""
        cot, answer = (cot or "").strip(), (answer or "").strip()
        if not cot:
            return answer
        # split, not str.format/replace: a trace may itself contain "{answer}" or braces
        head, _, rest = self.template.partition("{cot}")
        middle, _, tail = rest.partition("{answer}")
        return f"{head}{cot}{middle}{answer}{tail}"

    def split(self, text: str) -> tuple[str, str]:
        """(reasoning, answer) of a generated reply; without the marker the whole text is the answer."""
        head, marker, tail = text.rpartition(self.answer_marker)
        if not marker:
            return "", text.strip()
        reasoning = head.split(self.think_open, 1)[-1]
        if self.think_close and reasoning.rstrip().endswith(self.think_close):
            reasoning = reasoning.rstrip()[: -len(self.think_close)]
        return reasoning.strip(), tail.strip()


def _register(fmt: TraceFormat, *aliases: str) -> TraceFormat:
    TRACE_FORMATS.add(fmt.name, fmt, aliases=aliases, doc=f"trace format {fmt.name}")
    return fmt


# HuatuoGPT-o1's markdown sections (the seed system's `huatuo_format: true`).
HUATUO = _register(TraceFormat(
    "huatuo", "## Thinking\n\n{cot}\n\n## Final Response\n\n{answer}",
    answer_marker="## Final Response", think_open="## Thinking", think_close="## Final Response"))

# Qwen3 / DeepSeek-R1 style think tags.
QWEN = _register(TraceFormat(
    "qwen", "<think>\n{cot}\n</think>\n\n{answer}",
    answer_marker="</think>", think_open="<think>", think_close="</think>"))

# s1 / m1 style: think and answer sections opened with ChatML-like headers (the seed system's Qwen default).
M1 = _register(TraceFormat(
    "m1", "<|im_start|>think\n{cot}\n<|im_start|>answer\n{answer}",
    answer_marker="<|im_start|>answer", think_open="<|im_start|>think", think_close="<|im_start|>answer"))

# Llama-Nemotron: tight think tags, switched on by its system prompt.
NEMOTRON = _register(TraceFormat(
    "nemotron", "<think>{cot}</think>{answer}",
    answer_marker="</think>", think_open="<think>", think_close="</think>", system_prompt="detailed thinking on"))

# Llama 3 style header blocks.
LLAMA = _register(TraceFormat(
    "llama", "<|start_header_id|>think<|end_header_id|>\n\n{cot}<|eot_id|>"
             "<|start_header_id|>answer<|end_header_id|>\n\n{answer}",
    answer_marker="<|start_header_id|>answer<|end_header_id|>",
    think_open="<|start_header_id|>think<|end_header_id|>", think_close="<|eot_id|>"))


def get_format(name: str, **where) -> TraceFormat:
    """The registered format ``name``; an unknown name is a one-line MedS1Error (``where``: file/experiment/key)."""
    return TRACE_FORMATS.get(name, **where).impl


def format_from_curation(curation: dict, model: dict | None = None, **where) -> TraceFormat:
    """The format a curation block asks for.

    ``format`` wins; the seed system's legacy ``huatuo_format: true`` means ``huatuo`` and ``false`` means the model
    entry's own ``format`` family; with neither, the model's family, else ``huatuo``.
    """
    model_family = (model or {}).get("format")
    if curation.get("format"):
        name, key = curation["format"], "curation.format"
    elif curation.get("huatuo_format") is True:
        name, key = "huatuo", "curation.huatuo_format"
    else:
        name, key = model_family or "huatuo", "model.format"
    return get_format(name, key=key, **where)
