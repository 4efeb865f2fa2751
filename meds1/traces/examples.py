"""Chat examples for SFT: one selected row as conversational prompt/completion, laid out by its trace format.

Training data is conversational prompt/completion (``{"prompt": [messages], "completion": [assistant message]}``):
trl then computes the loss on the completion only, with any chat template, no template surgery.
"""
from __future__ import annotations

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
