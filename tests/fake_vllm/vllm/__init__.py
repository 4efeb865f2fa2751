"""A stand-in ``vllm`` for tests: the real API's shape (``LLM``, ``SamplingParams``, ``RequestOutput.outputs[0]``) and
vLLM's stopping rules, with a replaceable engine and a record of every call.

Put ``tests/fake_vllm`` first on ``sys.path`` (see tests/test_eval_vllm.py). What it models, from vLLM's own code
(v1 ``check_stop`` and the detokenizer): a request ends at the first ``stop_token_ids`` token once ``min_tokens``
tokens exist (the stop token is the last of ``token_ids``), at ``max_tokens``, or when the decoded text contains a
``stop`` string (``token_ids`` end with the token that completed it). ``LLM.generate`` takes a list of
``{"prompt_token_ids": [...]}`` and one SamplingParams or one per prompt, and answers in input order.

``ENGINE`` produces a request's raw continuation: ``ENGINE(llm, prompt_ids, params) -> iterable of token ids``. The
default replays ``SCRIPT`` (a list of token-id lists, used round-robin); tests may set a greedy model instead.
"""
from __future__ import annotations

from types import SimpleNamespace

CALLS: dict = {"init": [], "generate": []}
SCRIPT: list[list[int]] = [[]]


def reset() -> None:
    CALLS["init"].clear()
    CALLS["generate"].clear()


def scripted_engine(llm, prompt_ids, params):
    index = len(CALLS["generate"][-1]["prompts"]) - 1  # this prompt's place in the current call
    script = SCRIPT[index % len(SCRIPT)] if SCRIPT else []
    return list(script)


ENGINE = scripted_engine


class SamplingParams:
    def __init__(self, n=1, temperature=1.0, top_p=1.0, top_k=-1, max_tokens=16, min_tokens=0, seed=None,
                 stop=None, stop_token_ids=None, skip_special_tokens=True, **extra):
        self.n, self.temperature, self.top_p, self.top_k = n, temperature, top_p, top_k
        self.max_tokens, self.min_tokens, self.seed = max_tokens, min_tokens, seed
        self.stop = [stop] if isinstance(stop, str) else list(stop or [])
        self.stop_token_ids = list(stop_token_ids or [])
        self.skip_special_tokens, self.extra = skip_special_tokens, extra


class LLM:
    def __init__(self, model, **kwargs):
        from transformers import AutoTokenizer

        self.model, self.kwargs = model, kwargs
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        CALLS["init"].append({"model": model, **kwargs})

    def generate(self, prompts, sampling_params=None, use_tqdm=True, **kwargs):
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        call = {"prompts": [], "params": params, "use_tqdm": use_tqdm}
        CALLS["generate"].append(call)
        outputs = []
        for prompt, p in zip(prompts, params):
            call["prompts"].append(prompt)
            ids, reason = self._continue(list(prompt["prompt_token_ids"]), p)
            text = self.tokenizer.decode(ids, skip_special_tokens=p.skip_special_tokens)
            outputs.append(SimpleNamespace(prompt_token_ids=prompt["prompt_token_ids"], outputs=[
                SimpleNamespace(token_ids=ids, text=text, finish_reason=reason)]))
        return outputs

    def _continue(self, prompt_ids, p):
        out: list[int] = []
        for token in ENGINE(self, prompt_ids, p):
            out.append(int(token))
            if len(out) >= p.min_tokens and token in p.stop_token_ids:
                return out, "stop"
            if p.stop and any(s in self.tokenizer.decode(out, skip_special_tokens=False) for s in p.stop):
                return out, "stop"
            if len(out) >= p.max_tokens:
                return out, "length"
        return out, "length"
