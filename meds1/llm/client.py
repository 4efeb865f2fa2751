"""``LLMClient``: the one door curation code uses to reach an LLM.

    client = build_client(spec)                          # spec = the curate spec (spec["llm"], spec["cache_dir"])
    print(client.estimate(requests))                     # {"calls": 812, "cached": 188, "est_cost_usd": 0.41}
    results = client.run_many(requests, desc="extract")  # same order as requests; cached ones have cached=True
    client.write_ledger("curated/exp/llm_cost.json")

Around each provider call it adds: a persistent cache (a rerun makes no calls), a request pacer (never more than
``rpm`` requests in any 60 s window), bounded concurrency, retries with exponential backoff + jitter on transient
errors, a cost ledger and an optional cost ceiling. On the first fatal error no new request is sent; requests
already sent finish and are cached, so a rerun resumes where this one stopped.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter
from tqdm import tqdm

from meds1.errors import MedS1Error
from meds1.io import write_json
from meds1.llm import gemini, offline  # noqa: F401  (register the built-in providers)
from meds1.llm.base import LLMRequest, LLMResult
from meds1.llm.cache import ResponseCache, request_key
from meds1.llm.ledger import CostCeilingReached, CostLedger, Pricing
from meds1.llm.providers import PROVIDERS, Provider, TransientLLMError

log = logging.getLogger("meds1.llm")

DEFAULT_CONCURRENCY = 32
DEFAULT_MAX_RETRIES = 6
DEFAULT_BACKOFF_BASE_S = 1.0
DEFAULT_BACKOFF_MAX_S = 60.0
LLM_KEYS = ("provider", "model", "rpm", "pricing", "base_url", "max_cost_usd", "concurrency", "max_retries",
            "backoff_base_s", "backoff_max_s", "timeout_s")


class _Stopped(Exception):
    """Another request failed fatally: this one is not sent."""


# ---------------------------------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LLMSettings:
    provider: str
    model: str
    pricing: Pricing
    rpm: float | None
    max_cost_usd: float | None
    concurrency: int
    max_retries: int
    backoff_base_s: float
    backoff_max_s: float


def parse_settings(cfg: Any, experiment: str | None = None) -> LLMSettings:
    """Validate the llm block strictly: one-line MedS1Error naming the key on anything odd."""
    if not isinstance(cfg, dict):
        raise MedS1Error("the llm block must be a mapping", experiment=experiment, key="llm")
    for key in cfg:
        if "api_key" in key.lower() or key.lower() in ("key", "credentials", "token"):
            raise MedS1Error("credentials are read from the environment only (GEMINI_API_KEY / GOOGLE_API_KEY or "
                             "Vertex AI settings); remove it from the config", experiment=experiment, key=f"llm.{key}")
        if key not in LLM_KEYS:
            raise MedS1Error("unknown key", experiment=experiment, key=f"llm.{key}", choices=LLM_KEYS, value=key)
    if not cfg.get("provider"):
        raise MedS1Error("missing provider", experiment=experiment, key="llm.provider", choices=PROVIDERS.names())
    num = _NumberReader(cfg, experiment)
    max_cost = num.get("max_cost_usd", None, minimum=0.0)
    if max_cost is not None and not cfg.get("pricing"):
        raise MedS1Error("max_cost_usd needs pricing {input, output} (USD per 1M tokens)", experiment=experiment,
                         key="llm.pricing")
    return LLMSettings(
        provider=str(cfg["provider"]), model=str(cfg.get("model") or ""), pricing=_parse_pricing(cfg, experiment),
        rpm=num.get("rpm", None, minimum=1e-9), max_cost_usd=max_cost,
        concurrency=int(num.get("concurrency", DEFAULT_CONCURRENCY, minimum=1, integer=True)),
        max_retries=int(num.get("max_retries", DEFAULT_MAX_RETRIES, minimum=0, integer=True)),
        backoff_base_s=num.get("backoff_base_s", DEFAULT_BACKOFF_BASE_S, minimum=0.0),
        backoff_max_s=num.get("backoff_max_s", DEFAULT_BACKOFF_MAX_S, minimum=0.0),
    )


@dataclass
class _NumberReader:
    cfg: dict
    experiment: str | None

    def get(self, key: str, default, *, minimum: float, integer: bool = False):
        value = self.cfg.get(key)
        if value is None:
            return default
        ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool) and value >= minimum
        if not ok:
            kind = "an integer" if integer else "a number"
            raise MedS1Error(f"must be {kind} >= {minimum:g}, got {value!r}", experiment=self.experiment,
                             key=f"llm.{key}")
        return float(value) if not integer else value


def _parse_pricing(cfg: dict, experiment: str | None) -> Pricing:
    pricing = cfg.get("pricing") or {}
    if not isinstance(pricing, dict) or set(pricing) - {"input", "output"}:
        raise MedS1Error(f"must be {{'input': USD per 1M tokens, 'output': USD per 1M tokens}}, got {pricing!r}",
                         experiment=experiment, key="llm.pricing")
    num = _NumberReader(pricing, experiment)
    return Pricing(input=num.get("input", 0.0, minimum=0.0), output=num.get("output", 0.0, minimum=0.0))


# ---------------------------------------------------------------------------------------------------------------------
# one batch: concurrency, pacing and the stop switch
# ---------------------------------------------------------------------------------------------------------------------
class _Batch:
    """Per-``run_many`` state that lives inside one event loop."""

    def __init__(self, concurrency: int, rpm: float | None):
        self.semaphore = asyncio.Semaphore(concurrency)
        # capacity 1 (no burst): consecutive sends are >= 60/rpm s apart, so no 60 s window sees more than rpm
        self.limiter = AsyncLimiter(1, 60.0 / rpm) if rpm else None
        self.error: BaseException | None = None
        self._tasks: set[asyncio.Task] = set()
        self._sending: set[asyncio.Task] = set()

    def track(self, tasks: Iterable[asyncio.Task]) -> None:
        self._tasks = set(tasks)

    @contextlib.contextmanager
    def sending(self):
        """Marks the current task as mid-request: a stop lets it finish (its answer is paid for and gets cached)."""
        task = asyncio.current_task()
        self._sending.add(task)
        try:
            yield
        finally:
            self._sending.discard(task)

    def fail(self, err: BaseException) -> None:
        if self.error is None:
            self.error = err
        current = asyncio.current_task()
        for task in self._tasks - self._sending - {current}:
            task.cancel()  # waiting for a slot, the pacer or a backoff: no new request goes out

    def check(self) -> None:
        if self.error is not None:
            raise _Stopped()


class LLMClient:
    def __init__(self, llm_cfg: dict, cache_dir: str | Path, *, experiment: str | None = None):
        self.settings = parse_settings(llm_cfg, experiment)
        self.experiment = experiment
        provider_cls = PROVIDERS.get(self.settings.provider, experiment=experiment, key="llm.provider")
        self.provider: Provider = provider_cls(llm_cfg, experiment=experiment)
        self.cache = ResponseCache(cache_dir)
        self._ledger = CostLedger(provider=self.settings.provider, model=self.provider.model,
                                  pricing=self.settings.pricing, max_cost_usd=self.settings.max_cost_usd,
                                  experiment=experiment)
        self._last_send: float | None = None  # time.monotonic() of the last request, to pace across batches

    # -- public ------------------------------------------------------------------------------------------------------
    @property
    def ledger(self) -> dict:
        return self._ledger.as_dict()

    def write_ledger(self, path: str | Path) -> None:
        write_json(path, self.ledger)

    def estimate(self, requests: Iterable[LLMRequest]) -> dict:
        """How many calls ``run_many`` would make and what they may cost, without calling anything."""
        seen: set[str] = set()
        calls = cached = 0
        cost = 0.0
        for request in requests:
            key = self._key(request)
            if key is not None and (key in seen or self.cache.get(key) is not None):
                cached += 1
                continue
            if key is not None:
                seen.add(key)
            calls += 1
            cost += self._ledger.estimate(request)
        return {"calls": calls, "cached": cached, "est_cost_usd": round(cost, 8)}

    def run_many(self, requests: Iterable[LLMRequest], desc: str = "") -> list[LLMResult]:
        """Answer every request (order preserved). Raises MedS1Error on a fatal error after sent calls finish."""
        requests = list(requests)
        results: list[LLMResult | None] = [None] * len(requests)
        groups = self._uncached_groups(requests, results)
        n_done = sum(r is not None for r in results)
        with tqdm(total=len(requests), initial=n_done, desc=desc or f"llm {self.settings.provider}", unit="req",
                  file=sys.stderr, dynamic_ncols=True, mininterval=1.0) as bar:
            if groups:
                _run_sync(lambda: self._run_groups(requests, groups, results, bar))
        return results  # type: ignore[return-value]

    # -- cache -------------------------------------------------------------------------------------------------------
    def cached(self, request: LLMRequest) -> LLMResult | None:
        """The stored answer to ``request``, if any (no call is made)."""
        key = self._key(request)
        return self.cache.get(key) if key is not None else None

    def _key(self, request: LLMRequest) -> str | None:
        if not self.provider.cacheable:
            return None
        return request_key(self.settings.provider, self.provider.model, request)

    def _uncached_groups(self, requests: list[LLMRequest], results: list) -> list[tuple[str | None, list[int]]]:
        """Fill cache hits into ``results``; group the rest so identical requests cost one call."""
        groups: dict[Any, list[int]] = {}
        for i, request in enumerate(requests):
            key = self._key(request)
            hit = self.cache.get(key) if key is not None else None
            if hit is not None:
                results[i] = hit
                self._ledger.cached += 1
            else:
                groups.setdefault(key if key is not None else ("#", i), []).append(i)
        return [(key if isinstance(key, str) else None, idxs) for key, idxs in groups.items()]

    # -- async core --------------------------------------------------------------------------------------------------
    async def _run_groups(self, requests, groups, results, bar) -> None:
        batch = _Batch(self.settings.concurrency, self.settings.rpm if self.provider.network else None)
        await self._wait_after_previous_batch()
        await self.provider.open()
        try:
            # the first call goes alone: bad credentials or a wrong model name then cost one request, not 32
            await self._complete(requests, groups[0], results, bar, batch)
            if batch.error is None and len(groups) > 1:
                tasks = [asyncio.create_task(self._complete(requests, g, results, bar, batch)) for g in groups[1:]]
                batch.track(tasks)
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await self.provider.aclose()
        if batch.error is not None:
            raise batch.error

    async def _complete(self, requests, group, results, bar, batch: _Batch) -> None:
        key, idxs = group
        request = requests[idxs[0]]
        try:
            result = await self._call(request, batch)
        except _Stopped:
            return
        except asyncio.CancelledError:
            if batch.error is None:
                raise  # cancelled from outside (Ctrl-C): not ours to swallow
            return
        except CostCeilingReached as err:
            batch.fail(err)
            return
        except Exception as err:
            self._ledger.failures += 1
            batch.fail(err)
            return
        if key is not None:
            self.cache.put(key, request.task, result)
        results[idxs[0]] = result
        for i in idxs[1:]:  # identical requests in the same batch: one call, the copies count as cache hits
            results[i] = dataclasses.replace(result, cached=True)
            self._ledger.cached += 1
        bar.update(len(idxs))
        bar.set_postfix(cost=f"${self._ledger.cost_usd:.4f}", retries=self._ledger.retries, refresh=False)

    async def _call(self, request: LLMRequest, batch: _Batch) -> LLMResult:
        if not self.provider.network:
            result = await self.provider.generate(request)
            self._ledger.record_success(result)
            return result
        s = self.settings
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientLLMError), stop=stop_after_attempt(s.max_retries + 1),
            wait=wait_exponential_jitter(initial=s.backoff_base_s, max=s.backoff_max_s, jitter=s.backoff_base_s),
            before_sleep=self._before_retry, reraise=True)
        try:
            return await retrying(self._attempt, request, batch)
        except TransientLLMError as err:
            raise MedS1Error(f"{s.provider} call for task '{request.task}' failed after {s.max_retries + 1} "
                             f"attempts; last error {err}", experiment=self.experiment, key="llm") from None

    async def _attempt(self, request: LLMRequest, batch: _Batch) -> LLMResult:
        async with batch.semaphore:
            batch.check()
            if batch.limiter is not None:
                await batch.limiter.acquire()
            batch.check()
            estimate = self._ledger.reserve(request)  # raises CostCeilingReached before anything is sent
            self._last_send = time.monotonic()
            with batch.sending():
                try:
                    result = await self.provider.generate(request)
                except TransientLLMError as err:
                    self._ledger.record_attempt_error(err.kind)
                    raise
                else:
                    self._ledger.record_success(result)
                finally:
                    self._ledger.release(estimate)
        return result

    def _before_retry(self, state) -> None:
        self._ledger.record_retry()
        log.info("retrying in %.2fs after %s (attempt %d)", state.next_action.sleep if state.next_action else 0.0,
                 state.outcome.exception(), state.attempt_number)

    async def _wait_after_previous_batch(self) -> None:
        """A fresh limiter starts empty: keep the spacing from the previous batch's last request."""
        if self.settings.rpm and self.provider.network and self._last_send is not None:
            await asyncio.sleep(max(0.0, self._last_send + 60.0 / self.settings.rpm - time.monotonic()))


def _run_sync(make_coro):
    """Run a coroutine to completion from sync code, also when the caller already runs an event loop (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result()


def build_client(spec: dict, experiment: str | None = None) -> LLMClient:
    """An LLMClient from a curate spec (``spec["llm"]``, ``spec["cache_dir"]``)."""
    experiment = experiment or spec.get("experiment")
    if "llm" not in spec or "cache_dir" not in spec:
        missing = "llm" if "llm" not in spec else "cache_dir"
        raise MedS1Error("the curate spec has no LLM settings", experiment=experiment, key=missing)
    return LLMClient(spec["llm"], Path(spec["cache_dir"]), experiment=experiment)
