"""Test-time scaling: the same question answered with more or less thinking (``reasoning_approaches`` in the spec).

Approaches (names are data; a number is part of the name):
- ``immediate``: the assistant turn is prefilled with the answer marker and "The answer is", so the model answers at
  once, without reasoning.
- ``reasoning`` (``default`` outside test-time scaling): one normal generation.
- ``reasoning_<N>x``: generate; then N times cut any answer section / end of turn, append "\\nWait" and continue.
- ``reasoning_<N>x_random``: the same with a seeded choice of cue ("Wait", "Hmm", "Let me double-check", ...).
- ``budget_<T>``: s1/m1 budget forcing: think for at most T tokens, then force the answer marker and read the answer.

Every continuation is the rendered prompt + the assistant text so far + the cue: it stays INSIDE the open assistant
turn, never after an end-of-turn token (which would make the model start a new turn instead of thinking on).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from typing import Callable

from meds1.errors import MedS1Error
from meds1.evaluate.backends.base import Backend, GenerationParams
from meds1.plugins import PluginRegistry

DEFAULT_ANSWER_MARKER = "## Final Response"
RANDOM_CUES = ("Wait", "Hmm", "Let me double-check", "Alternatively")
DEFAULT_APPROACHES = ["immediate", "reasoning", "reasoning_2x", "reasoning_4x"]
ANSWER_MAX_TOKENS = 32  # tokens read after a forced "The answer is": a letter and a few words
# Textual end-of-turn markers of common chat templates (a backend normally strips special tokens already).
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "</s>", "<end_of_turn>",
               "<|im_start|>", "<|start_header_id|>")


@dataclass(frozen=True)
class Answer:
    output: str               # the assistant-side text (prefills and cues included): what the matcher reads
    n_output_tokens: int      # tokens generated over all calls
    n_reasoning_tokens: int   # tokens of the thinking part (before the answer marker)


@dataclass(frozen=True)
class ApproachContext:
    backend: Backend
    params: GenerationParams
    answer_marker: str = DEFAULT_ANSWER_MARKER
    answer_max_tokens: int = ANSWER_MAX_TOKENS
    seed: int = 0

    def count_tokens(self, text: str, at_most: int | None = None) -> int:
        """Tokens of ``text`` re-encoded; ``at_most``: the tokens actually generated for it, a bound that
        re-encoding can exceed when the model emitted bytes that do not decode to valid UTF-8."""
        n = len(self.backend.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
        return n if at_most is None else min(n, at_most)

    @property
    def forced_answer(self) -> str:
        return f"\n\n{self.answer_marker}\n\nThe answer is"


# kind -> fn(ctx, prompts, keys, arg) -> list[Answer]; ``keys`` (one per prompt) seed the random cues
APPROACHES: PluginRegistry[Callable[..., list[Answer]]] = PluginRegistry("reasoning approach")
_NAME_PATTERNS = [  # approach name -> (registered kind, numeric argument)
    (re.compile(r"(immediate|reasoning|default)"), lambda m: (m.group(1), None)),
    (re.compile(r"reasoning_(\d+)x"), lambda m: ("reasoning_Nx", int(m.group(1)))),
    (re.compile(r"reasoning_(\d+)x_random"), lambda m: ("reasoning_Nx_random", int(m.group(1)))),
    (re.compile(r"budget_(\d+)"), lambda m: ("budget_T", int(m.group(1)))),
]


def parse_approach(name: str) -> tuple[str, int | None]:
    for pattern, to_kind in _NAME_PATTERNS:
        match = pattern.fullmatch(str(name))
        if match:
            return to_kind(match)
    examples = ["immediate", "reasoning", "reasoning_2x", "reasoning_2x_random", "budget_512"]
    raise MedS1Error(f"unknown reasoning approach '{name}' (known: {', '.join(examples)})", key="reasoning_approaches",
                     choices=examples, value=name)


def run_approach(name: str, ctx: ApproachContext, prompts: list[str], keys: list[str]) -> list[Answer]:
    """Answer every prompt (rendered, ending with the generation prompt) with the named approach."""
    kind, arg = parse_approach(name)
    return APPROACHES.get(kind)(ctx, prompts, keys, arg)


def trace_format(format_name: str | None):
    """The registered trace format (``meds1.traces.formats``), or None when no format is set or known."""
    if not format_name:
        return None
    try:
        from meds1.plugins import TRACE_FORMATS
    except ImportError:
        return None
    return TRACE_FORMATS.get(format_name).impl if format_name in TRACE_FORMATS else None


def answer_marker_for(format_name: str | None) -> str:
    """The trace format's answer marker, else "## Final Response" (HuatuoGPT-o1's)."""
    fmt = trace_format(format_name)
    return getattr(fmt, "answer_marker", None) or DEFAULT_ANSWER_MARKER


# ----------------------------------------------------------------------------------------------------- text helpers
def thinking_part(text: str, answer_marker: str) -> str:
    """The text before any answer section or end-of-turn marker: what a continuation may build on."""
    cut = len(text)
    for marker in (answer_marker, *END_OF_TURN):
        pos = text.find(marker)
        if pos != -1:
            cut = min(cut, pos)
    return text[:cut].rstrip()


def choose_cue(key: str, round_index: int, seed: int, randomize: bool) -> str:
    if not randomize:
        return "Wait"
    return random.Random(f"{seed}:{key}:{round_index}").choice(RANDOM_CUES)


# ------------------------------------------------------------------------------------------------------- approaches
@APPROACHES.register("reasoning", "default")
def answer_with_reasoning(ctx: ApproachContext, prompts, keys, arg) -> list[Answer]:
    gens = ctx.backend.generate(prompts, ctx.params)
    return [Answer(g.text, g.n_output_tokens,
                   ctx.count_tokens(thinking_part(g.text, ctx.answer_marker), at_most=g.n_output_tokens))
            for g in gens]


@APPROACHES.register("immediate")
def answer_immediately(ctx: ApproachContext, prompts, keys, arg) -> list[Answer]:
    prefill = f"{ctx.answer_marker}\n\nThe answer is"
    params = replace(ctx.params, max_new_tokens=ctx.answer_max_tokens, stop=())
    gens = ctx.backend.generate([p + prefill for p in prompts], params)
    return [Answer(prefill + g.text, g.n_output_tokens, 0) for g in gens]


def _force_answers(ctx: ApproachContext, prompts, thinking: list[str]) -> list[tuple[str, int]]:
    """Append the forced answer marker after each thinking text and read a short answer: (answer text, tokens)."""
    params = replace(ctx.params, max_new_tokens=ctx.answer_max_tokens, stop=())
    gens = ctx.backend.generate([p + t + ctx.forced_answer for p, t in zip(prompts, thinking)], params)
    return [(ctx.forced_answer + g.text, g.n_output_tokens) for g in gens]


def _extend_reasoning(ctx: ApproachContext, prompts, keys, rounds: int, randomize: bool) -> list[Answer]:
    # Thinking rounds stop at the answer marker: an answer we would cut off anyway is not worth generating.
    thinking_params = replace(ctx.params, stop=(ctx.answer_marker,))
    gens = ctx.backend.generate(prompts, thinking_params)
    thinking = [thinking_part(g.text, ctx.answer_marker) for g in gens]
    spent = [g.n_output_tokens for g in gens]
    cue_tokens = [0] * len(prompts)
    last_texts = [""] * len(prompts)
    for k in range(rounds):
        cues = ["\n" + choose_cue(key, k, ctx.seed, randomize) for key in keys]
        cue_tokens = [n + ctx.count_tokens(c) for n, c in zip(cue_tokens, cues)]
        thinking = [t + c for t, c in zip(thinking, cues)]
        final_round = k == rounds - 1
        gens = ctx.backend.generate([p + t for p, t in zip(prompts, thinking)],
                                    ctx.params if final_round else thinking_params)
        spent = [s + g.n_output_tokens for s, g in zip(spent, gens)]
        last_texts = [g.text for g in gens]
        if not final_round:
            thinking = [t + thinking_part(g.text, ctx.answer_marker) for t, g in zip(thinking, gens)]
    return _finish_extended(ctx, prompts, thinking, last_texts, spent, cue_tokens)


def _finish_extended(ctx, prompts, thinking, last_texts, spent, cue_tokens) -> list[Answer]:
    """The last continuation keeps its own answer section; one without an answer gets the answer forced."""
    full = [t + thinking_part(text, ctx.answer_marker) for t, text in zip(thinking, last_texts)]
    need_force = [i for i, text in enumerate(last_texts) if ctx.answer_marker not in text]
    forced = dict(zip(need_force, _force_answers(ctx, [prompts[i] for i in need_force],
                                                 [full[i] for i in need_force]))) if need_force else {}
    answers = []
    for i, (t, text) in enumerate(zip(thinking, last_texts)):
        if i in forced:
            answer_text, n = forced[i]
            output, n_out = full[i] + answer_text, spent[i] + n
        else:
            output, n_out = t + text, spent[i]
        answers.append(Answer(output, n_out, ctx.count_tokens(full[i], at_most=spent[i] + cue_tokens[i])))
    return answers


@APPROACHES.register("reasoning_Nx")
def answer_with_extended_reasoning(ctx: ApproachContext, prompts, keys, rounds) -> list[Answer]:
    return _extend_reasoning(ctx, prompts, keys, rounds, randomize=False)


@APPROACHES.register("reasoning_Nx_random")
def answer_with_varied_cues(ctx: ApproachContext, prompts, keys, rounds) -> list[Answer]:
    return _extend_reasoning(ctx, prompts, keys, rounds, randomize=True)


@APPROACHES.register("budget_T")
def answer_within_budget(ctx: ApproachContext, prompts, keys, budget) -> list[Answer]:
    gens = ctx.backend.generate(prompts, replace(ctx.params, max_new_tokens=budget, stop=(ctx.answer_marker,)))
    thinking = [thinking_part(g.text, ctx.answer_marker) for g in gens]
    forced = _force_answers(ctx, prompts, thinking)
    return [Answer(t + answer_text, g.n_output_tokens + n, ctx.count_tokens(t, at_most=g.n_output_tokens))
            for t, g, (answer_text, n) in zip(thinking, gens, forced)]
