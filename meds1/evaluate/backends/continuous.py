"""Continuous batching for the hf backend: one decode loop over a pool of rows that finished rows leave at once and
waiting prompts join, so no step computes a row that has already ended.

``model.generate`` decodes a padded batch until its LAST row ends: on reasoning-length answers (4 to 256 tokens on
the demo set) most of its row-steps computed rows that had already stopped. Here every step runs only the live
rows; a row that ends frees its slot, and the next waiting prompt (prefilled alone or with the others admitted at
the same step) takes it.

The KV cache lives in buffers preallocated per layer, ``[rows, kv_heads, capacity, head_dim]``, that all live rows
share column for column: each row's tokens are right-aligned (left padding, as in ``generate``), a decode step
writes column ``length`` for every row in place (``DynamicCache`` copies the whole cache at every step), a
finished row is overwritten by the last one, and columns no live row uses any more are cut from the left. Each row
keeps its own position ids and padding mask, so its logits do not depend on the rows beside it (up to the rounding
of batched matrix products; in float32 greedy outputs equal ``generate``'s one prompt at a time).

Models whose cache is not plain full attention (sliding windows, linear attention) use ``generate`` instead
(``supports``). On a GPU the hf backend uses ``generate`` unless asked: there the per-step host work here (Python
bookkeeping, small copies, a device sync per step) made a small model 2.6x slower than ``generate`` (H200,
bench/gpu_continuous_check.py), while on CPU the computation saved dominates.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer
from transformers.generation.stopping_criteria import StopStringCriteria

from meds1.evaluate.backends.base import GenerationParams, Request, limit_of

TRIM_AT = 32  # leading columns no row uses any more before they are cut (a cut copies the cache: do it in bulk)
PREFILL_ROWS = 8  # prompts prefilled together: length-sorted groups pad little, and their activations stay small


def supports(model) -> bool:
    """True when every layer of the model's cache is a plain DynamicLayer (full attention)."""
    try:
        layers = DynamicCache(config=model.config).layers
    except (KeyError, ValueError, TypeError):  # a layer type this cache cannot build
        return False
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def cache_kwarg(model) -> str:
    """The forward's name for the cache: ``cache`` from transformers 5.2x on, ``past_key_values`` before (the eval-vllm
    environment has 5.20, whose name the newer ones still accept with a warning at every call)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class SlotLayer(DynamicLayer):
    """One layer's keys and values for rows [0, n) in buffers of ``capacity`` columns; the cache holds columns
    [0, length). ``update`` writes the new columns in place and returns views, never a copy of the cache."""

    def __init__(self, rows: int, capacity: int):
        super().__init__()
        self.rows, self.capacity, self.length = rows, capacity, 0

    def lazy_initialization(self, key_states, value_states) -> None:
        shape = lambda t: (self.rows, t.shape[1], self.capacity, t.shape[3])  # noqa: E731
        self.device = key_states.device
        self.keys = torch.zeros(shape(key_states), dtype=key_states.dtype, device=key_states.device)
        self.values = torch.zeros(shape(value_states), dtype=value_states.dtype, device=value_states.device)
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n, end = key_states.shape[0], self.length + key_states.shape[-2]
        self.keys[:n, :, self.length:end] = key_states
        self.values[:n, :, self.length:end] = value_states
        self.length = end
        return self.keys[:n, :, :end], self.values[:n, :, :end]

    def get_seq_length(self) -> int:
        return self.length


@dataclass
class Row:
    """One prompt being answered: where its answer goes, its tokens so far and when it must stop."""
    index: int
    prompt_len: int
    limit: int
    generator: torch.Generator | None
    tokens: list[int]                      # prompt + generated: what stop strings are matched against
    generated: list[int] = field(default_factory=list)


class RowPool:
    """Live rows sharing one slot cache: admit (prefill + copy in), step, release (swap with the last), trim."""

    def __init__(self, model, rows: int, capacity: int, device):
        self.model, self.device, self.capacity = model, device, capacity
        self.cache_kwarg = cache_kwarg(model)
        n_layers = model.config.get_text_config(decoder=True).num_hidden_layers
        self.cache = Cache(layers=[SlotLayer(rows, capacity) for _ in range(n_layers)])
        self.mask = torch.zeros(rows, capacity, dtype=torch.long, device=device)
        self.rows: list[Row] = []

    @property
    def length(self) -> int:
        return self.cache.layers[0].length

    def _set_length(self, length: int) -> None:
        for layer in self.cache.layers:
            layer.length = length

    def admit(self, new_rows: list[Row], padded: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Prefill ``padded`` (left-padded prompts) in a cache of their own, copy it right-aligned into the free slots
        and return the logits of each prompt's last position."""
        width, n = padded.shape[1], len(self.rows)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        prefill = DynamicCache(config=self.model.config)
        logits = self.model(input_ids=padded, attention_mask=attention, position_ids=positions,
                            use_cache=True, logits_to_keep=1, **{self.cache_kwarg: prefill}).logits[:, -1, :]
        if n == 0:
            self._set_length(width)
        if width > self.length:  # prompts join longest first: a live row's columns always hold a joining prompt
            raise RuntimeError("continuous batching: prompts must join longest first")
        start, stop = self.length - width, n + len(new_rows)
        for slot, fresh in zip(self.cache.layers, prefill.layers):
            if not slot.is_initialized:
                slot.lazy_initialization(fresh.keys, fresh.values)
            slot.keys[n:stop, :, start:self.length] = fresh.keys
            slot.values[n:stop, :, start:self.length] = fresh.values
        self.mask[n:stop] = 0
        self.mask[n:stop, start:self.length] = attention
        self.rows.extend(new_rows)
        return logits

    def step(self, last_tokens: list[int]) -> torch.Tensor:
        """One decode step for every live row; the logits of the new position, one row each."""
        n, column = len(self.rows), self.length
        if column == self.capacity:
            self._trim(force=True)
            column = self.length
        self.mask[:n, column] = 1
        ids = torch.tensor(last_tokens, device=self.device).unsqueeze(1)
        positions = torch.tensor([r.prompt_len + len(r.generated) - 1 for r in self.rows], device=self.device)
        return self.model(input_ids=ids, attention_mask=self.mask[:n, :column + 1], position_ids=positions[:, None],
                          use_cache=True, logits_to_keep=1, **{self.cache_kwarg: self.cache}).logits[:, -1, :]

    def release(self, finished: list[int]) -> None:
        """Drop the rows at these positions: the last live row moves into each freed slot (one row's copy)."""
        for i in sorted(finished, reverse=True):
            last = len(self.rows) - 1
            if i != last:
                for layer in self.cache.layers:
                    layer.keys[i, :, :self.length] = layer.keys[last, :, :self.length]
                    layer.values[i, :, :self.length] = layer.values[last, :, :self.length]
                self.mask[i, :self.length] = self.mask[last, :self.length]
                self.rows[i] = self.rows[last]
            self.rows.pop()
        self._trim()

    def _unused_columns(self) -> int:
        used = max((r.prompt_len + len(r.generated) for r in self.rows), default=0)
        return max(0, self.length - used)

    def _trim(self, force: bool = False) -> None:
        """Cut leading columns that no live row uses (all of them when the pool is empty)."""
        cut, n = self._unused_columns(), len(self.rows)
        if n == 0:
            self._set_length(0)
        elif cut >= TRIM_AT or (force and cut > 0):
            self._cut_left(cut)

    def _cut_left(self, cut: int) -> None:
        """Drop the ``cut`` leftmost columns: every live row's columns move left (one copy of the live cache)."""
        n, length = len(self.rows), self.length
        for layer in self.cache.layers:
            if layer.is_initialized:
                layer.keys[:n, :, :length - cut] = layer.keys[:n, :, cut:length].clone()
                layer.values[:n, :, :length - cut] = layer.values[:n, :, cut:length].clone()
        self.mask[:n, :length - cut] = self.mask[:n, cut:length].clone()
        self._set_length(length - cut)


# ------------------------------------------------------------------------------------------------------ the loop
def generate_ids(model, tokenizer, requests: list[Request], params: GenerationParams, *, max_rows: int,
                 stop_ids: set[int], pad_id: int) -> list[list[int]]:
    """The raw generated ids of every request (input order), at most ``max_rows`` decoded together.

    Prompts join longest first: the biggest cache is needed in the first seconds (an out-of-memory error shows up
    at once), and a joining prompt is never longer than a live row's columns, so it fits beside them as it is."""
    device = model.device
    limits = [limit_of(r, params) for r in requests]
    capacity = max(len(r.prompt_ids) for r in requests) + max(limits) + TRIM_AT
    pool = RowPool(model, max_rows, capacity, device)
    choose = TokenChooser(params, stop_ids)
    stop_strings = StopStringCriteria(tokenizer, list(params.stop_strings)) if params.stop_strings else None
    waiting = deque(sorted(range(len(requests)), key=lambda i: -len(requests[i].prompt_ids)))
    results: list[list[int] | None] = [None] * len(requests)
    with torch.inference_mode():
        while waiting or pool.rows:
            if waiting and len(pool.rows) < max_rows:
                new = [_row(requests[i], i, limits[i], params) for i in
                       (waiting.popleft() for _ in range(min(max_rows - len(pool.rows), len(waiting), PREFILL_ROWS)))]
                first = len(pool.rows)
                logits = pool.admit(new, *_left_pad(new, pad_id, device))
            else:
                first, logits = 0, pool.step([r.generated[-1] for r in pool.rows])
            rows = pool.rows[first:first + logits.shape[0]]
            for row, token in zip(rows, choose(logits, rows)):
                row.generated.append(token)
                row.tokens.append(token)
            ended = _ended(rows, params, stop_ids, stop_strings, pad_id)
            for i in ended:
                results[rows[i].index] = rows[i].generated
            pool.release([first + i for i in ended])
    return results


def _row(request: Request, index: int, limit: int, params: GenerationParams) -> Row:
    generator = torch.Generator().manual_seed(int(request.seed)) if params.temperature > 0 else None
    return Row(index, len(request.prompt_ids), limit, generator, list(request.prompt_ids))


def _left_pad(rows: list[Row], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(r.prompt_len for r in rows)
    ids = [[pad_id] * (width - r.prompt_len) + r.tokens for r in rows]
    mask = [[0] * (width - r.prompt_len) + [1] * r.prompt_len for r in rows]
    return torch.tensor(ids, device=device), torch.tensor(mask, device=device)


def _ended(rows: list[Row], params: GenerationParams, stop_ids: set[int], stop_strings, pad_id: int) -> list[int]:
    """Positions (in ``rows``) of the rows whose last token ended them: a stop token (past ``min_tokens``), the
    row's length limit, or a stop string completed (matched like ``generate``: over prompt and answer)."""
    ended = {i for i, r in enumerate(rows) if len(r.generated) >= r.limit
             or (r.generated[-1] in stop_ids and len(r.generated) > params.min_tokens)}
    if stop_strings is not None:
        width = stop_strings.maximum_token_len
        tails = [[pad_id] * max(0, width - len(r.tokens)) + r.tokens[-width:] for r in rows]
        hits = stop_strings(torch.tensor(tails), None)
        ended |= {i for i, hit in enumerate(hits.tolist()) if hit}
    return sorted(ended)


class TokenChooser:
    """The next token of each row: stop tokens barred before ``min_tokens``, then argmax (greedy) or argmax over
    seeded Gumbel noise (sampling, each row from its own generator)."""

    def __init__(self, params: GenerationParams, stop_ids: set[int]):
        self.params, self.stop_ids = params, sorted(stop_ids)

    def __call__(self, logits: torch.Tensor, rows: list[Row]) -> list[int]:
        scores = logits.float()
        early = [i for i, r in enumerate(rows) if len(r.generated) < self.params.min_tokens]
        if early:
            scores[torch.tensor(early)[:, None], torch.tensor(self.stop_ids)[None, :]] = float("-inf")
        if self.params.temperature > 0:
            scores = seeded_noise(scores, [r.generator for r in rows], self.params)
        return scores.argmax(dim=-1).tolist()


def seeded_noise(scores: torch.Tensor, generators: list[torch.Generator], params: GenerationParams) -> torch.Tensor:
    """Temperature, nucleus filtering, then per-row Gumbel noise from per-row generators: argmax of the result is a
    draw from softmax(scores / T) within the nucleus, and a row's draw never depends on the rows beside it."""
    scores = scores.float() / float(params.temperature)
    if params.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True)
        probs = sorted_scores.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= params.top_p  # keeps the first token always
        scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    uniform = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in generators])
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
    return scores + gumbel.to(scores.device)
