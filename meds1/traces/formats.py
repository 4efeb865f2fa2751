"""Trace formats: how a reasoning trace and its final answer are laid out in the assistant's reply.

Each format is one row of this table module (``TRACE_FORMATS``). The seed system's names keep the seed's layouts
exactly (its ``data/utils/formatting.py``, see ../shared/notes/seed-system.md §3.6), so a registry brought from the
seed trains the seed's text:

- ``huatuo``: ``## Thinking\\n\\n{cot}\\n\\n## Final Response\\n\\n{answer}``
- ``qwen`` (s1/m1): ``<|im_start|>think\\n{cot}\\n<|im_start|>answer\\nAnswer: {answer}``
- ``nemotron``: ``<think>{cot}</think>Answer: {answer}``, with the system prompt "detailed thinking on"
- ``llama``: ``<|start_header_id|>think<|end_header_id|>\\n{cot}\\n<|start_header_id|>answer<|end_header_id|>\\n``
  ``Answer: {answer}``
- ``think-tags`` (ours; Qwen3 / DeepSeek-R1 tags): ``<think>\\n{cot}\\n</think>\\n\\n{answer}``

Without reasoning (curation ``extract: none``) the seed keeps the answer section: ``## Final Response\\n\\n{answer}``,
``<|im_start|>answer\\nAnswer: {answer}``, ``Answer: {answer}`` (nemotron), the Llama answer header block; ours: the
answer alone.

As in the seed, every format but ``huatuo`` prefixes the answer with "Answer: " unless it already contains "Answer:".
No layout contains an end-of-turn token: the chat template adds the only one, after the answer (a mid-reply EOS would
teach the model to stop before answering). The seed picks Llama headers or ``<|im_start|>`` markers for its non-huatuo
formats by the model's name; here the name alone decides (``qwen`` = the s1/m1 markers, ``llama`` = Llama headers).

Evaluation and test-time scaling use ``think_open`` (the text before the reasoning: the think-marker prefill),
``answer_marker`` (the final answer follows it) and ``before_answer`` (what separates reasoning from the marker).

    >>> get_format("huatuo").render("Step 1.", "B.")
    '## Thinking\\n\\nStep 1.\\n\\n## Final Response\\n\\nB.'
"""
from __future__ import annotations

from dataclasses import dataclass

from meds1.plugins import TRACE_FORMATS

ANSWER_PREFIX = "Answer: "


@dataclass(frozen=True)
class TraceFormat:
    name: str
    template: str             # "{cot}" once, then "{answer}" once
    answer_only: str          # the reply when there is no reasoning (curation extract: none); "{answer}" once
    answer_marker: str        # the final answer follows this text; it lies between "{cot}" and "{answer}"
    answer_prefix: str = ""   # put before the answer unless the answer already says "Answer:"
    system_prompt: str | None = None  # a system prompt the format needs when the model entry gives none
    doc: str = ""

    def __post_init__(self):
        head, cot, tail = self.template.partition("{cot}")
        middle, answer, _ = tail.partition("{answer}")
        if not cot or not answer or "{answer}" in head or self.answer_marker not in middle:
            raise ValueError(f"trace format '{self.name}': template needs '{{cot}}', the answer marker, '{{answer}}'")
        if "{answer}" not in self.answer_only:
            raise ValueError(f"trace format '{self.name}': answer_only needs '{{answer}}'")

    @property
    def think_open(self) -> str:
        """The text before the reasoning: what test-time scaling prefills to open thinking."""
        return self.template.partition("{cot}")[0]

    @property
    def before_answer(self) -> str:
        """The text between the reasoning and the answer marker (e.g. "\\n\\n" for huatuo)."""
        middle = self.template.partition("{cot}")[2].partition("{answer}")[0]
        return middle.partition(self.answer_marker)[0]

    def render(self, cot: str | None, answer: str) -> str:
        """The assistant reply for one example; an empty ``cot`` gives the format's answer-only reply."""
        cot, answer = (cot or "").strip(), (answer or "").strip()
        if self.answer_prefix and "Answer:" not in answer:
            answer = self.answer_prefix + answer
        # split, not str.format/replace: a trace may itself contain "{answer}" or braces
        if not cot:
            head, _, tail = self.answer_only.partition("{answer}")
            return f"{head}{answer}{tail}"
        head, _, rest = self.template.partition("{cot}")
        middle, _, tail = rest.partition("{answer}")
        return f"{head}{cot}{middle}{answer}{tail}"

    def split(self, text: str) -> tuple[str, str]:
        """(reasoning, answer) of a reply; without the marker the whole text is the answer."""
        head, marker, tail = text.rpartition(self.answer_marker)
        if not marker:
            return "", text.strip()
        reasoning = head.split(self.think_open.strip(), 1)[-1] if self.think_open.strip() else head
        answer = tail.strip()
        if self.answer_prefix and answer.startswith(self.answer_prefix):
            answer = answer[len(self.answer_prefix):]
        return reasoning.strip(), answer.strip()


def _row(fmt: TraceFormat) -> TraceFormat:
    TRACE_FORMATS.add(fmt.name, fmt, doc=fmt.doc)
    return fmt


HUATUO = _row(TraceFormat(
    "huatuo", "## Thinking\n\n{cot}\n\n## Final Response\n\n{answer}", "## Final Response\n\n{answer}",
    answer_marker="## Final Response", doc="HuatuoGPT-o1 markdown sections (the seed's default)"))

DEFAULT_FORMAT = HUATUO.name  # the seed's default; also the eval markers of a model with no trace format

QWEN = _row(TraceFormat(
    "qwen", "<|im_start|>think\n{cot}\n<|im_start|>answer\n{answer}", "<|im_start|>answer\n{answer}",
    answer_marker="<|im_start|>answer", answer_prefix=ANSWER_PREFIX,
    doc="s1/m1 think and answer markers with an 'Answer: ' prefix (the seed's qwen)"))

NEMOTRON = _row(TraceFormat(
    "nemotron", "<think>{cot}</think>{answer}", "{answer}", answer_marker="</think>", answer_prefix=ANSWER_PREFIX,
    system_prompt="detailed thinking on", doc="Llama-Nemotron think tags, switched on by its system prompt"))

LLAMA = _row(TraceFormat(
    "llama", "<|start_header_id|>think<|end_header_id|>\n{cot}\n<|start_header_id|>answer<|end_header_id|>\n{answer}",
    "<|start_header_id|>answer<|end_header_id|>\n{answer}",
    answer_marker="<|start_header_id|>answer<|end_header_id|>", answer_prefix=ANSWER_PREFIX,
    doc="Llama 3 style think and answer header blocks, no end-of-turn between them (the seed's default branch)"))

THINK_TAGS = _row(TraceFormat(
    "think-tags", "<think>\n{cot}\n</think>\n\n{answer}", "{answer}", answer_marker="</think>",
    doc="Qwen3 / DeepSeek-R1 style think tags (ours)"))


def get_format(name: str, **where) -> TraceFormat:
    """The registered format ``name``; an unknown name is a one-line MedS1Error (``where``: file/experiment/key)."""
    return TRACE_FORMATS.get(name, **where).impl


def format_name(curation: dict | None, model: dict | None = None, experiment_format: str | None = None) -> str:
    """The format an experiment's replies are laid out in (training data, eval markers), first that is set:
    the curation block's ``format``; the seed's legacy ``huatuo_format: true`` (``huatuo``; ``false`` falls
    through); the experiment's own ``format``; the model entry's ``format`` family; ``DEFAULT_FORMAT``."""
    curation = curation or {}
    if curation.get("format"):
        return curation["format"]
    if curation.get("huatuo_format") is True:
        return HUATUO.name
    return experiment_format or (model or {}).get("format") or DEFAULT_FORMAT
