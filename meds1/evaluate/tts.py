"""Test-time scaling as s1 and m1 do it: think-marker prefill, budget forcing, "Wait" that suppresses the end of
thinking, and a forced answer marker (../shared/notes/seed-system.md §9).

Approaches (a number is part of the name):

- ``default`` (no test-time scaling): one plain generation from the chat prompt.
- ``reasoning``: prefill the format's think marker, think until the model ends its thinking (or the budget,
  ``max_new_tokens``, runs out), then force the answer marker and generate the answer.
- ``reasoning_<N>x``: s1's ``thinking_n_ignore``: each time the model ends its thinking while under the budget, the
  end is dropped, "Wait" is appended and thinking goes on (at most N times, with at least one new token each time,
  so end-of-thinking is a stop TOKEN where the marker is one token, as in s1); the total stays under the budget.
- ``reasoning_<N>x_random``: the same with the seed's cues ("Wait, let me directly compare", "Wait, if", "Wait, a
  counter-argument is that"), one drawn per question, run and round from a seeded RNG.
- ``budget_<T>``: m1's thinking budget: as ``reasoning`` with a budget of T tokens.
- ``budget_<T>_<N>x``: m1's keep-thinking-below-budget: as ``reasoning_<N>x`` with a budget of T tokens.
- ``immediate``: prefill the think marker, "I already know the answer." and the answer marker: no reasoning.

Ending the thinking (s1 / m1): the reasoning is completed with the format's separator (e.g. "\\n") and the answer
marker; when the budget ran out, "\\nFinal Answer:" follows the marker. The answer then gets ``answer_max_tokens``.
Everything happens on token ids inside the open assistant turn: a continuation is prompt + prefill + the tokens
generated so far (stop token dropped) + the cue, never text re-encoded and never after an end-of-turn token.
Thinking tokens (``n_reasoning_tokens``) are the generated thinking tokens plus the inserted cues.
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, replace

from meds1.errors import MedS1Error
from meds1.evaluate.backends.base import Backend, Generation, GenerationParams, Request, decode, first_index
from meds1.plugins import PluginRegistry

WAIT = "Wait"
RANDOM_CUES = ("Wait, let me directly compare", "Wait, if", "Wait, a counter-argument is that")  # the seed's
IMMEDIATE_STATEMENT = "I already know the answer."
BUDGET_HIT_SUFFIX = "\nFinal Answer:"
DEFAULT_APPROACHES = ["immediate", "reasoning", "reasoning_2x", "reasoning_4x"]


@dataclass(frozen=True)
class Answer:
    output: str               # the assistant-side text (prefills, cues and forced markers included)
    n_output_tokens: int      # tokens generated over all calls (stop tokens included)
    n_reasoning_tokens: int   # tokens of the thinking part: generated thinking + inserted cues


@dataclass(frozen=True)
class Question:
    ids: tuple[int, ...]      # the rendered chat prompt, ending with the generation prompt
    seed: int                 # from (run seed, item id, run, approach): the same in a resumed run
    key: str                  # names the question in seeded choices (random cues)


@dataclass(frozen=True)
class Markers:
    """A trace format's markers as token ids and the stop that ends thinking."""
    think_open: str
    before_answer: str
    answer_marker: str
    stop_token_ids: tuple[int, ...]   # the marker's first token when it is a special/added token (s1: <|im_start|>)
    stop_strings: tuple[str, ...]     # otherwise the marker text (HuatuoGPT: "## Final Response")

    @classmethod
    def of(cls, fmt, tokenizer) -> "Markers":
        marker = fmt.answer_marker
        first = tokenizer(marker, add_special_tokens=False)["input_ids"][:1]
        added = set(tokenizer.get_added_vocab().values()) | set(tokenizer.all_special_ids)
        one_token = bool(first) and first[0] in added
        return cls(fmt.think_open, fmt.before_answer, marker, tuple(first) if one_token else (),
                   () if one_token else (marker,))


@dataclass(frozen=True)
class ApproachContext:
    backend: Backend
    params: GenerationParams          # the run's sampling; max_new_tokens is the default thinking budget
    markers: Markers
    answer_max_tokens: int = 1024

    def encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.backend.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else ()


@dataclass
class Thought:
    """One question's thinking so far."""
    ids: list[int]
    text: str = ""
    spent: int = 0            # thinking tokens: generated (stop tokens dropped) + cues; the budget counts these
    generated: int = 0        # every generated token, stop tokens included
    hit_budget: bool = False
    stopped: bool = False


APPROACHES: PluginRegistry = PluginRegistry("reasoning approach")
_NAME_PATTERNS = [  # approach name -> (registered kind, budget or None, rounds)
    (re.compile(r"(default|immediate|reasoning)"), lambda m: (m.group(1), None, 0)),
    (re.compile(r"reasoning_(\d+)x"), lambda m: ("reasoning_Nx", None, int(m.group(1)))),
    (re.compile(r"reasoning_(\d+)x_random"), lambda m: ("reasoning_Nx_random", None, int(m.group(1)))),
    (re.compile(r"budget_(\d+)"), lambda m: ("budget_T", int(m.group(1)), 0)),
    (re.compile(r"budget_(\d+)_(\d+)x"), lambda m: ("budget_T_Nx", int(m.group(1)), int(m.group(2)))),
]
EXAMPLES = ["immediate", "reasoning", "reasoning_2x", "reasoning_2x_random", "budget_512", "budget_2048_4x"]


def parse_approach(name: str) -> tuple[str, int | None, int]:
    """(kind, thinking budget or None for max_new_tokens, "Wait" rounds)."""
    for pattern, to_kind in _NAME_PATTERNS:
        match = pattern.fullmatch(str(name))
        if match:
            return to_kind(match)
    raise MedS1Error(f"unknown reasoning approach '{name}' (known: {', '.join(EXAMPLES)})",
                     key="reasoning_approaches", choices=EXAMPLES, value=name)


def run_approach(name: str, ctx: ApproachContext, questions: list[Question]) -> list[Answer]:
    """Answer every question (prompt ids ending with the generation prompt) with the named approach."""
    kind, budget, rounds = parse_approach(name)
    return APPROACHES.get(kind)(ctx, questions, budget or ctx.params.max_new_tokens, rounds)


def sub_seed(seed: int, phase: str) -> int:
    """A seed for one generation phase of a question (each "Wait" round samples fresh noise)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{phase}".encode()).digest()[:4], "big") & 0x7FFFFFFF


# ------------------------------------------------------------------------------------------------------- approaches
@APPROACHES.register("default")
def answer_plainly(ctx: ApproachContext, questions, budget, rounds) -> list[Answer]:
    gens = ctx.backend.generate([Request(q.ids, q.seed) for q in questions], ctx.params)
    return [Answer(g.text, g.n_output_tokens, reasoning_tokens(ctx, g)) for g in gens]


@APPROACHES.register("reasoning")
@APPROACHES.register("budget_T")
@APPROACHES.register("reasoning_Nx")
@APPROACHES.register("budget_T_Nx")
def answer_after_thinking(ctx: ApproachContext, questions, budget, rounds) -> list[Answer]:
    thoughts = think(ctx, questions, budget, rounds, cue=lambda q, k: WAIT)
    return force_answers(ctx, questions, thoughts)


@APPROACHES.register("reasoning_Nx_random")
def answer_after_varied_cues(ctx: ApproachContext, questions, budget, rounds) -> list[Answer]:
    thoughts = think(ctx, questions, budget, rounds, cue=lambda q, k: choose_cue(q.key, k, q.seed))
    return force_answers(ctx, questions, thoughts)


@APPROACHES.register("immediate")
def answer_immediately(ctx: ApproachContext, questions, budget, rounds) -> list[Answer]:
    m = ctx.markers
    prefill = m.think_open + IMMEDIATE_STATEMENT + m.before_answer + m.answer_marker
    requests = [Request(q.ids + ctx.encode(prefill), sub_seed(q.seed, "answer"), ctx.answer_max_tokens)
                for q in questions]
    gens = ctx.backend.generate(requests, replace(ctx.params, max_new_tokens=ctx.answer_max_tokens))
    return [Answer(prefill + g.text, g.n_output_tokens, 0) for g in gens]


def choose_cue(key: str, round_index: int, seed: int) -> str:
    return random.Random(f"{seed}:{key}:{round_index}").choice(RANDOM_CUES)


# ------------------------------------------------------------------------------------------------------- the steps
def think(ctx: ApproachContext, questions, budget: int, rounds: int, cue) -> list[Thought]:
    """Prefill the think marker, think up to ``budget`` tokens; while rounds remain, replace an end of thinking that
    came under budget by a cue and think on (s1's thinking_n_ignore / m1's keep_think_below_budget)."""
    m, opened = ctx.markers, ctx.encode(ctx.markers.think_open)
    thoughts = [Thought(ids=[]) for _ in questions]
    active = list(range(len(questions)))
    for k in range(rounds + 1):
        if k:  # the model ended its thinking under budget: drop the end, append the cue, think on
            active = [i for i in active
                      if thoughts[i].stopped and _add_cue(ctx, thoughts[i], cue(questions[i], k - 1), budget)]
        if not active:
            break
        params = replace(ctx.params, max_new_tokens=budget, stop_token_ids=m.stop_token_ids,
                         stop_strings=m.stop_strings, min_tokens=1 if k else 0)
        requests = [Request(questions[i].ids + opened + tuple(thoughts[i].ids),
                            sub_seed(questions[i].seed, f"think{k}"), budget - thoughts[i].spent) for i in active]
        for i, gen in zip(active, ctx.backend.generate(requests, params)):
            _extend(thoughts[i], gen, budget)
    return thoughts


def _extend(thought: Thought, gen: Generation, budget: int) -> None:
    thought.ids += list(gen.token_ids)
    thought.text += gen.text
    thought.spent += len(gen.token_ids)
    thought.generated += gen.n_output_tokens
    thought.hit_budget = gen.finish_reason == "length" or thought.spent >= budget
    thought.stopped = gen.finish_reason == "stop" and not thought.hit_budget


def _add_cue(ctx: ApproachContext, thought: Thought, cue: str, budget: int) -> bool:
    """Append the cue to the thinking; False (no cue) when it would reach the budget, as m1 does."""
    ids = ctx.encode(cue)
    if thought.spent + len(ids) >= budget:
        return False
    thought.ids += list(ids)
    thought.text += cue
    thought.spent += len(ids)
    return True


def end_of_thinking(markers: Markers, thinking_text: str, hit_budget: bool) -> str:
    """The separator still missing at the end of the thinking, the answer marker, and "\\nFinal Answer:" when the
    budget ran out (s1 and m1)."""
    sep = markers.before_answer
    done = next((k for k in range(len(sep), 0, -1) if thinking_text.endswith(sep[:k])), 0)
    return sep[done:] + markers.answer_marker + (BUDGET_HIT_SUFFIX if hit_budget else "")


def force_answers(ctx: ApproachContext, questions, thoughts: list[Thought]) -> list[Answer]:
    """End every thinking with the answer marker and generate the answers (one call)."""
    m, opened = ctx.markers, ctx.encode(ctx.markers.think_open)
    forced = [end_of_thinking(m, t.text, t.hit_budget) for t in thoughts]
    requests = [Request(q.ids + opened + tuple(t.ids) + ctx.encode(f), sub_seed(q.seed, "answer"),
                        ctx.answer_max_tokens) for q, t, f in zip(questions, thoughts, forced)]
    params = replace(ctx.params, max_new_tokens=ctx.answer_max_tokens)
    gens = ctx.backend.generate(requests, params)
    return [Answer(m.think_open + t.text + f + g.text, t.generated + g.n_output_tokens, t.spent)
            for t, f, g in zip(thoughts, forced, gens)]


def reasoning_tokens(ctx: ApproachContext, gen: Generation) -> int:
    """Tokens before the answer marker in a plain generation (all of them when there is no marker)."""
    at = gen.text.find(ctx.markers.answer_marker)
    if at < 0:
        return len(gen.token_ids)
    ids = list(gen.token_ids)
    return first_index(0, len(ids), lambda k: len(decode(ctx.backend.tokenizer, ids[:k + 1])) > at)


def markers_for(format_name: str | None, tokenizer) -> Markers:
    from meds1.traces.formats import DEFAULT_FORMAT, get_format

    return Markers.of(get_format(format_name or DEFAULT_FORMAT, key="format"), tokenizer)  # no format: the seed's
