"""What every eval backend shares: the registry, the request/result types, and tokenizer loading."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from meds1.plugins import EVAL_BACKENDS


@dataclass(frozen=True)
class GenerationParams:
    """One generate call's settings; ``temperature == 0`` means greedy (``top_p`` and ``seed`` are then unused)."""
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()  # stop strings (kept in the output text when hit)


@dataclass(frozen=True)
class Generation:
    text: str               # the generated continuation, special tokens removed
    n_output_tokens: int    # tokens generated, end-of-sequence token included, padding excluded


class Backend(Protocol):
    name: str
    tokenizer: object       # a transformers tokenizer: prompt rendering and token counts

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Generation]:
        """One Generation per prompt, in input order."""


# name -> class(model_path, *, tokenizer, seed, batch_size, trust_remote_code, tensor_parallel_size, max_model_len)
BACKENDS = EVAL_BACKENDS


def load_tokenizer(model_path: str, *, chat_template: str | None = None, trust_remote_code: bool = False):
    """The model's tokenizer, set up for batched decoding: left padding, pad = eos when there is no pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path), trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge of every row
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    # The chat template already wrote every special token (BOS included): adding them again doubles BOS.
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]
