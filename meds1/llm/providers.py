"""The provider plug-in interface: a provider turns one ``LLMRequest`` into one ``LLMResult``.

A new provider is one small class registered with ``@PROVIDERS.register("name")``. The client (``meds1.llm.client``)
does everything around the call: cache, rate limit, retries, cost ledger, ceiling, progress. A provider only has to

- raise ``TransientLLMError`` for anything worth retrying (rate limit, 5xx, timeout, malformed reply),
- raise ``RequestFailed`` when this one request will get no usable answer however often it is sent (a blocked
  prompt, an output limit spent on thinking): the client gives up on it alone, and
- raise ``MedS1Error`` for anything that stops every request (bad credentials, unknown model).
"""
from __future__ import annotations

from typing import Any

from meds1.llm.base import LLMRequest, LLMResult
from meds1.plugins import PluginRegistry


class TransientLLMError(Exception):
    """A failed attempt worth retrying; ``kind`` ("429", "500", "timeout", "malformed", ...) feeds the ledger.

    ``usage``: (input, output) tokens when the provider answered (and billed) but the answer was unusable.
    """

    def __init__(self, kind: str, message: str, usage: tuple[int, int] | None = None):
        self.kind, self.usage = kind, usage
        super().__init__(f"{kind}: {message}")


class RequestFailed(Exception):
    """This request gets no usable answer and retrying will not change that; other requests are not affected."""

    def __init__(self, kind: str, message: str, usage: tuple[int, int] | None = None):
        self.kind, self.usage = kind, usage
        super().__init__(f"{kind}: {message}")


class Provider:
    """Base class. ``cfg`` is the curate spec's ``llm`` block; ``experiment`` names errors."""

    name = ""
    cacheable = True      # results go to the persistent cache (False: recomputing is cheaper than a stale answer)
    network = True        # calls are rate limited, retried and costed

    def __init__(self, cfg: dict[str, Any], *, experiment: str | None = None):
        self.cfg = cfg
        self.model = str(cfg.get("model") or "")
        self.experiment = experiment

    async def open(self) -> None:
        """Called inside the event loop before the first call of a batch (create network clients here)."""

    async def aclose(self) -> None:
        """Called inside the same loop after the batch (close what ``open`` created)."""

    async def generate(self, request: LLMRequest) -> LLMResult:
        raise NotImplementedError


PROVIDERS: PluginRegistry[type[Provider]] = PluginRegistry("LLM provider")
