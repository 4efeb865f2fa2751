"""``LLMClient``: the one door curation code uses to reach an LLM.

    client = build_client(spec)                          # spec = the curate spec (spec["llm"], spec["cache_dir"])
    print(client.estimate(requests))                     # {"calls": 812, "cached": 188, "est_cost_usd": 0.41}
    results = client.run_many(requests, desc="extract")  # same order as requests; cached ones have cached=True
    results = client.run_many(requests, keep_going=True) # a request that cannot be answered comes back with .error
    client.write_ledger("curated/exp/llm_cost.json")

Around each provider call it adds: the llm block's default params (``max_output_tokens``, ``thinking``), a persistent
cache (a rerun makes no calls), a request pacer and a cost ceiling shared by every job on the same cache folder
(``meds1.llm.limits``), bounded concurrency, retries with exponential backoff + jitter on transient errors and a
cost ledger. On a fatal error no new request is sent; requests already sent finish and are cached, so a rerun
resumes where this one stopped. With ``keep_going``, a request given up on (retries exhausted, a blocked reply) does
not stop the others unless more than ``max_failed_share`` of the batch has failed.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any, Iterable

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter
from tqdm import tqdm

from meds1.errors import MedS1Error
from meds1.io import write_json
from meds1.llm import gemini, offline  # noqa: F401  (register the built-in providers)
from meds1.llm.base import LLMRequest, LLMResult
from meds1.llm.cache import ResponseCache, request_key
from meds1.llm.ledger import CostCeilingReached, CostLedger
from meds1.llm.limits import SharedPacer, SharedSpending, SharedState
from meds1.llm.providers import PROVIDERS, Provider, RequestFailed, TransientLLMError
from meds1.llm.settings import LLM_KEYS, LLMSettings, parse_settings

log = logging.getLogger("meds1.llm")

__all__ = ["LLM_KEYS", "LLMClient", "LLMSettings", "build_client", "parse_settings"]


class _Stopped(Exception):
    """Another request failed fatally: this one is not sent."""


class _Batch:
    """Per-``run_many`` state that lives inside one event loop: concurrency, the stop switch, failures."""

    def __init__(self, concurrency: int, size: int, keep_going: bool, max_failed_share: float):
        self.semaphore = asyncio.Semaphore(concurrency)
        self.size, self.keep_going, self.max_failed_share = size, keep_going, max_failed_share
        self.failed = 0
        self.pace_lock = asyncio.Lock()  # one task per process polls the shared bucket; the others queue here
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

    def too_many_failures(self) -> bool:
        return self.failed > self.max_failed_share * self.size

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
        shared = SharedState(cache_dir) if self.provider.network else None  # the offline rules cost nothing
        timeout = float(llm_cfg.get("timeout_s") or gemini.DEFAULT_TIMEOUT_S)
        spending = SharedSpending(shared, self.settings.max_cost_usd, timeout + 60.0) if shared else None
        self.pacer = (SharedPacer(shared, f"{self.settings.provider}/{self.provider.model}", self.settings.rpm)
                      if shared and self.settings.rpm else None)
        self._ledger = CostLedger(provider=self.settings.provider, model=self.provider.model,
                                  pricing=self.settings.pricing, max_cost_usd=self.settings.max_cost_usd,
                                  experiment=experiment, shared=spending)

    # -- public ------------------------------------------------------------------------------------------------------
    @property
    def ledger(self) -> dict:
        return self._ledger.as_dict()

    @property
    def max_failed_share(self) -> float:
        return self.settings.max_failed_share

    def write_ledger(self, path: str | Path) -> None:
        write_json(path, self.ledger)

    def prepare(self, request: LLMRequest) -> LLMRequest:
        """The request as it is sent, cached and priced: the llm block's default params filled in, and the thinking
        reserve added to its output limit (thinking tokens count against it)."""
        params = {**self.settings.default_params(), **request.params}
        if self.settings.thinking_reserve_tokens and self.settings.thinks:
            params["max_output_tokens"] = int(params["max_output_tokens"]) + self.settings.thinking_reserve_tokens
        return dataclasses.replace(request, params=params)

    def estimate(self, requests: Iterable[LLMRequest]) -> dict:
        """How many calls ``run_many`` would make and what they may cost, without calling anything."""
        seen: set[str] = set()
        calls = cached = 0
        cost = 0.0
        for request in map(self.prepare, requests):
            key = self._key(request)
            if key is not None and (key in seen or self.cache.get(key) is not None):
                cached += 1
                continue
            if key is not None:
                seen.add(key)
            calls += 1
            cost += self._ledger.estimate(request)
        return {"calls": calls, "cached": cached, "est_cost_usd": round(cost, 8)}

    def run_many(self, requests: Iterable[LLMRequest], desc: str = "", *, keep_going: bool = False
                 ) -> list[LLMResult]:
        """Answer every request (order preserved). Raises MedS1Error on a fatal error after sent calls finish.

        ``keep_going``: a request given up on comes back as ``LLMResult(text="", error=reason)`` instead of stopping
        the batch, until more than ``max_failed_share`` of the batch has failed.
        """
        requests = [self.prepare(r) for r in requests]
        results: list[LLMResult | None] = [None] * len(requests)
        groups = self._uncached_groups(requests, results)
        n_done = sum(r is not None for r in results)
        batch = _Batch(self.settings.concurrency, len(requests), keep_going, self.settings.max_failed_share)
        with tqdm(total=len(requests), initial=n_done, desc=desc or f"llm {self.settings.provider}", unit="req",
                  file=sys.stderr, dynamic_ncols=True, mininterval=1.0) as bar:
            if groups:
                _run_sync(lambda: self._run_groups(requests, groups, results, bar, batch))
        return results  # type: ignore[return-value]

    # -- cache -------------------------------------------------------------------------------------------------------
    def cached(self, request: LLMRequest) -> LLMResult | None:
        """The stored answer to ``request``, if any (no call is made)."""
        key = self._key(self.prepare(request))
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
    async def _run_groups(self, requests, groups, results, bar, batch: _Batch) -> None:
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
        except RequestFailed as err:
            result = self._give_up(request, err, batch, len(idxs))
            if result is None:
                return
        except Exception as err:
            self._ledger.record_failure("fatal")
            batch.fail(err)
            return
        if key is not None and not result.failed:
            self.cache.put(key, request.task, result)
        results[idxs[0]] = result
        for i in idxs[1:]:  # identical requests in the same batch: one call, the copies count as cache hits
            results[i] = dataclasses.replace(result, cached=not result.failed)
            self._ledger.cached += not result.failed
        bar.update(len(idxs))
        bar.set_postfix(cost=f"${self._ledger.cost_usd:.4f}", retries=self._ledger.retries, refresh=False)

    def _give_up(self, request: LLMRequest, err: RequestFailed, batch: _Batch, n: int) -> LLMResult | None:
        """A request that cannot be answered: a failed result (keep_going), or the batch's fatal error."""
        self._ledger.record_failure(err.kind)
        message = f"{self.settings.provider} call for task '{request.task}' gave up: {err}"
        if not batch.keep_going:
            batch.fail(MedS1Error(message, experiment=self.experiment, key="llm"))
            return None
        batch.failed += n
        log.warning("%s", message)
        if batch.too_many_failures():
            batch.fail(MedS1Error(
                f"{batch.failed} of {batch.size} LLM requests failed, more than llm.max_failed_share "
                f"{batch.max_failed_share:g} (last: {err}); answers so far are cached, a rerun retries only the rest",
                experiment=self.experiment, key="llm.max_failed_share"))
        return LLMResult(text="", provider=self.settings.provider, model=self.provider.model, error=str(err))

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
            raise RequestFailed(f"gave_up_{err.kind}", f"failed after {s.max_retries + 1} attempts; last error "
                                                       f"{err}") from None

    async def _attempt(self, request: LLMRequest, batch: _Batch) -> LLMResult:
        async with batch.semaphore:
            batch.check()
            if self.pacer is not None:
                await self._pace(batch)
            batch.check()
            token = self._ledger.reserve(request)  # raises CostCeilingReached before anything is sent
            with batch.sending():
                result, unusable = None, None
                try:
                    result = await self.provider.generate(request)
                except TransientLLMError as err:
                    self._ledger.record_attempt_error(err.kind)
                    unusable = err.usage
                    raise
                except RequestFailed as err:
                    unusable = err.usage
                    raise
                finally:
                    self._ledger.release(token, result, unusable)
        return result

    async def _pace(self, batch: _Batch) -> None:
        """Wait for a token of the shared bucket (taken at the moment of sending, so late wake-ups cannot bunch)."""
        async with batch.pace_lock:
            while True:
                batch.check()
                wait = await asyncio.to_thread(self.pacer.take)
                if wait <= 0.0:
                    return
                await asyncio.sleep(wait)

    def _before_retry(self, state) -> None:
        self._ledger.record_retry()
        log.info("retrying in %.2fs after %s (attempt %d)", state.next_action.sleep if state.next_action else 0.0,
                 state.outcome.exception(), state.attempt_number)


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
