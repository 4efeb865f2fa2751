"""What every eval backend shares: the request/result types, the one function that cuts a token stream into a
Generation.

Backends exchange TOKEN IDS, not text: a prompt is the token ids of the rendered chat prompt (plus whatever test-time
scaling appended), and every backend hands its raw generated ids to ``finish_generation``. So both engines cut at the
same token and decode the same way, with the format's own marker tokens kept (``<|im_start|>answer`` must survive
decoding, or the answer section can never be found).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from meds1.plugins import EVAL_BACKENDS

BACKENDS = EVAL_BACKENDS


@dataclass(frozen=True)
class GenerationParams:
    """The settings one generate call shares; ``temperature == 0`` means greedy (``top_p`` is then unused)."""
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop_token_ids: tuple[int, ...] = ()   # besides the model's end-of-turn tokens
    stop_strings: tuple[str, ...] = ()     # markers that are not one token (e.g. "## Final Response")
    min_tokens: int = 0                    # no stop before this many tokens (s1's continuations use 1)


@dataclass(frozen=True)
class Request:
    prompt_ids: tuple[int, ...]
    seed: int = 0                          # this request's sampling seed (unused when greedy)
    max_new_tokens: int | None = None      # this request's cap, at most GenerationParams.max_new_tokens


@dataclass(frozen=True)
class Generation:
    token_ids: tuple[int, ...]  # generated tokens kept: before the stop token / stop string
    text: str                   # their text, special tokens kept (end-of-turn and padding are never in it)
    n_output_tokens: int        # tokens generated, the stop token included
    finish_reason: str          # "stop" (end of turn, stop token or stop string) or "length"
    stopped_by: int | str | None = None  # the stop token id or stop string; None when the length ran out


class Backend(Protocol):
    name: str
    tokenizer: object            # a transformers tokenizer: prompt rendering and decoding
    prompts_per_call: int        # how many prompts one generate call should get (the runner flushes after each)

    def generate(self, requests: list[Request], params: GenerationParams) -> list[Generation]:
        """One Generation per request, in input order."""


@dataclass(frozen=True)
class BackendContext:
    """What a run tells the backend it builds (each backend's own options come from its options dataclass)."""
    model: dict = field(default_factory=dict)  # the config.json model entry (key, trust_remote_code, heads, ...)
    seed: int = 0
    batch_size: int = 16           # prompts per forward batch where the backend batches itself (hf)
    context_tokens: int = 0        # longest prompt + longest generation a request of this run can need


def limit_of(request: Request, params: GenerationParams) -> int:
    return min(params.max_new_tokens, request.max_new_tokens or params.max_new_tokens)


def finish_generation(tokenizer, ids, *, params: GenerationParams, end_ids, limit: int) -> Generation:
    """Cut raw generated ids the same way on every backend.

    The first end-of-turn or stop token at or after ``min_tokens`` ends the generation (counted, not kept); then the
    first stop string ends the text, and the kept tokens are those wholly before it; ``limit`` caps the count.
    """
    ids = [int(t) for t in ids][:limit]
    stops = set(end_ids) | set(params.stop_token_ids)
    cut = next((pos for pos, tok in enumerate(ids) if tok in stops and pos >= params.min_tokens), None)
    if cut is not None:
        kept, n, reason, by = ids[:cut], cut + 1, "stop", ids[cut]
    else:
        kept, n, reason, by = ids, len(ids), "length", None
    text = decode(tokenizer, kept)
    found = [(text.find(s), s) for s in params.stop_strings if s and s in text]
    if found:
        at, string = min(found)
        kept, n = _tokens_before(tokenizer, kept, at, string)
        return Generation(tuple(kept), text[:at], n, "stop", string)
    return Generation(tuple(kept), text, n, reason, by)


def _tokens_before(tokenizer, ids: list[int], at: int, string: str) -> tuple[list[int], int]:
    """(the tokens wholly before character ``at``, the tokens generated until ``string`` was complete).

    Binary searches: a longer prefix never decodes to less text, so both conditions are monotonic in the prefix."""
    before = first_index(0, len(ids), lambda k: len(decode(tokenizer, ids[:k + 1])) > at)
    done = first_index(before, len(ids), lambda k: string in decode(tokenizer, ids[:k]))
    return ids[:before], done


def first_index(lo: int, hi: int, holds) -> int:
    """The smallest k in [lo, hi] for which ``holds(k)`` (``hi`` when none does before it)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if holds(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def decode(tokenizer, ids) -> str:
    # Special tokens are kept: a format's markers may be special tokens (end-of-turn was already cut off).
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    # The chat template already wrote every special token (BOS included): adding them again doubles BOS.
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def end_of_turn_ids(tokenizer, generation_config=None) -> set[int]:
    """Every id that ends a turn: the tokenizer's eos plus the generation config's (Llama 3 lists eot and eos)."""
    ids = getattr(generation_config, "eos_token_id", None)
    ids = set(ids if isinstance(ids, (list, tuple)) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
