"""The vLLM backend (GPU nodes, environment envs/eval-vllm.yaml).

``vllm`` pins its own torch and transformers, so it is never installed beside the main package: it is imported here,
lazily, only when this backend is built. Prompts are handed over as token ids (``{"prompt_token_ids": [...]}``, a
``TokensPrompt``), one ``SamplingParams`` per request (each sampled request carries its own seed), all prompts of a
call in ONE ``LLM.generate``: vLLM schedules its own batches. The runner calls ``generate`` with
``prompts_per_call`` prompts at a time and appends the answers to the partial file after each call, so a killed job
loses at most one call's work.

The engine's context is sized to the run: ``max_model_len`` = longest prompt + longest generation (unless given), so
a 128k-context model does not reserve 128k tokens of KV cache per sequence. ``tensor_parallel_size`` must divide the
model's attention heads; an explicit value is checked when the workflow is parsed (``check_model``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from meds1.devices import count_gpus
from meds1.errors import MedS1Error
from meds1.evaluate.backends.base import (BACKENDS, BackendContext, Generation, GenerationParams, Request,
                                          end_of_turn_ids, finish_generation, limit_of)
from meds1.options import opt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VLLMOptions:
    tensor_parallel_size: int | None = opt(None, "GPUs one model spans; null: the job's GPUs, reduced to the largest "
                                                 "count that divides the attention heads", minimum=1)
    gpu_memory_utilization: float = opt(0.9, "share of each GPU's memory vLLM may take", exclusiveMinimum=0,
                                        maximum=1)
    max_model_len: int | None = opt(None, "context length of the engine; null: longest prompt + max_new_tokens",
                                    minimum=16)
    prompts_per_call: int = opt(4096, "prompts per LLM.generate call (answers are saved after each call)", minimum=1)
    dtype: str = opt("bfloat16", "weights and compute dtype")


@BACKENDS.register("vllm", options=VLLMOptions, needs={"gpu"})
class VLLMBackend:
    """vLLM offline engine, all prompts of a call in one LLM.generate (GPU)"""
    name = "vllm"

    def __init__(self, model_path: str, *, tokenizer, options: VLLMOptions | None = None,
                 context: BackendContext | None = None):
        options, context = options or VLLMOptions(), context or BackendContext()
        self._vllm = import_vllm()
        self.tokenizer, self.prompts_per_call = tokenizer, options.prompts_per_call
        heads = attention_heads(context.model, model_path)
        tp = options.tensor_parallel_size or tensor_parallel_for(count_gpus(), heads)
        max_len = options.max_model_len or _within_model(context.context_tokens, model_path)
        log.info("vLLM: tensor_parallel_size=%s max_model_len=%s gpu_memory_utilization=%s", tp, max_len,
                 options.gpu_memory_utilization)
        self.llm = self._vllm.LLM(model=str(model_path), tensor_parallel_size=tp,
                                  seed=context.seed, dtype=options.dtype, max_model_len=max_len,
                                  gpu_memory_utilization=options.gpu_memory_utilization,
                                  trust_remote_code=bool(context.model.get("trust_remote_code", False)))
        self.end_ids = end_of_turn_ids(tokenizer, _generation_config(model_path))

    @staticmethod
    def check_importable() -> None:
        """``backend: auto`` on a GPU job: vLLM must import (hf at CPU speed on a GPU node is not a fallback)."""
        import_vllm("backend auto found a GPU, so it uses vllm")

    @staticmethod
    def check_model(options: VLLMOptions, model: dict, *, base_dir=".", **where) -> None:
        """Refuse, before any job runs, a tensor_parallel_size the model's attention heads cannot be split over."""
        heads = attention_heads(model, Path(base_dir) / (model.get("local_path") or ""))
        tp = options.tensor_parallel_size
        if tp and heads and not splits(heads, tp):
            raise MedS1Error(f"tensor_parallel_size {tp} does not divide model '{model.get('key')}' attention heads "
                             f"({heads[0]} query, {heads[1]} key/value heads); use one of "
                             f"{', '.join(map(str, divisors(heads)))}",
                             key="config.eval.backend_options.vllm.tensor_parallel_size", **where)

    def sampling_params(self, request: Request, params: GenerationParams):
        greedy = params.temperature <= 0
        return self._vllm.SamplingParams(
            n=1, temperature=0.0 if greedy else params.temperature, top_p=1.0 if greedy else params.top_p,
            top_k=-1,  # off, as in the hf backend (vLLM would otherwise take the model's generation_config default)
            max_tokens=limit_of(request, params), min_tokens=params.min_tokens,
            seed=None if greedy else request.seed,
            stop_token_ids=sorted(self.end_ids | set(params.stop_token_ids)),  # min_tokens holds for these only
            stop=list(params.stop_strings) or None,
            skip_special_tokens=False)  # text is decoded by finish_generation anyway; keep markers if read

    def generate(self, requests: list[Request], params: GenerationParams) -> list[Generation]:
        prompts = [{"prompt_token_ids": list(r.prompt_ids)} for r in requests]
        outputs = self.llm.generate(prompts, [self.sampling_params(r, params) for r in requests], use_tqdm=True)
        # LLM.generate returns one RequestOutput per prompt, in input order; its token_ids end with the stop token.
        return [finish_generation(self.tokenizer, out.outputs[0].token_ids, params=params, end_ids=self.end_ids,
                                  limit=limit_of(r, params)) for r, out in zip(requests, outputs)]


def import_vllm(why: str = "the vllm backend needs it"):
    """``import vllm``, or a one-line error saying where it lives."""
    try:
        import vllm
    except Exception as err:  # ImportError, or a CUDA library that fails to load at import time
        raise MedS1Error(f"{why}, but the 'vllm' package cannot be imported here "
                         f"({type(err).__name__}: {err}); run the eval rule with --sdm conda (envs/eval-vllm.yaml) on "
                         "a GPU node, or set eval.backend: hf", key="backend") from None
    return vllm


# ------------------------------------------------------------------------------------------------ attention heads
def attention_heads(model: dict, model_path) -> tuple[int, int] | None:
    """(query heads, key/value heads): the model entry's ``num_attention_heads`` / ``num_key_value_heads``, else
    the model folder's config.json; None when neither says."""
    import json

    if model.get("num_attention_heads"):
        query = int(model["num_attention_heads"])
        return query, int(model.get("num_key_value_heads") or query)
    config = Path(str(model_path)) / "config.json"
    if not config.is_file():
        return None
    cfg = json.loads(config.read_text(encoding="utf-8"))
    cfg = cfg.get("text_config", cfg)  # multimodal wrappers keep the language model's numbers inside
    if not cfg.get("num_attention_heads"):
        return None
    return int(cfg["num_attention_heads"]), int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"])


def splits(heads: tuple[int, int], tp: int) -> bool:
    """vLLM's rule: query heads divide evenly; key/value heads divide evenly, or are replicated when fewer than tp."""
    query, kv = heads
    return query % tp == 0 and (kv % tp == 0 if kv >= tp else tp % kv == 0)


def divisors(heads: tuple[int, int]) -> list[int]:
    return [tp for tp in range(1, heads[0] + 1) if splits(heads, tp)]


def tensor_parallel_for(gpus: int, heads: tuple[int, int] | None) -> int:
    """The most GPUs (at most ``gpus``) the heads split over; unknown heads: all of them."""
    gpus = max(1, gpus)
    if heads is None:
        return gpus
    best = max(tp for tp in range(1, gpus + 1) if splits(heads, tp))
    if best < gpus:
        log.warning("vLLM: %d GPUs visible but the model's %d attention heads split over %d; using %d", gpus,
                    heads[0], best, best)
    return best


def _within_model(tokens: int, model_path) -> int | None:
    """The run's context need, capped at the model's own context (vLLM refuses a longer max_model_len)."""
    import json

    config = Path(str(model_path)) / "config.json"
    own = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings") if config.is_file() else None
    if not tokens:
        return None
    if own and tokens > own:
        log.warning("vLLM: the run may need %d tokens of context, more than the model's %d: prompts and answers "
                    "are cut at %d", tokens, own, own)
        return int(own)
    return int(tokens)


def _generation_config(model_path):
    try:
        from transformers import GenerationConfig

        return GenerationConfig.from_pretrained(str(model_path))
    except Exception:  # no generation_config.json: the tokenizer's eos is the end of turn
        return None
