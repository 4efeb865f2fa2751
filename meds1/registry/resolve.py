"""Resolve an experiment registry: ``"same as <exp>"`` blocks and ``"extends": "<exp>"`` deep merges.

Resolution is memoised (each experiment is resolved once), so a registry of N experiments with chains costs O(N), not
O(N^2). A cycle or an unknown name is a MedS1Error naming the chain.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from meds1.errors import MedS1Error

SAME_AS = re.compile(r"^\s*same as\s+(?P<name>\S.*?)\s*$", re.IGNORECASE)


def same_as_target(value: Any) -> str | None:
    """The experiment named by a ``"same as <exp>"`` value, else None."""
    if isinstance(value, str):
        m = SAME_AS.match(value)
        if m:
            return m.group("name")
    return None


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``; nested dicts merge, everything else (lists included) replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Resolver:
    """Resolves every experiment's ``config`` once; ``resolve(name)`` returns the fully resolved dict."""

    def __init__(self, raw: dict[str, dict], file: str):
        self.raw, self.file = raw, file
        self.done: dict[str, dict] = {}

    def resolve_all(self) -> dict[str, dict]:
        for name in self.raw:
            self.resolve(name)
        return self.done

    def resolve(self, name: str, chain: tuple[str, ...] = (), key: str | None = None) -> dict:
        if name in self.done:
            return self.done[name]
        if name in chain:
            loop = " -> ".join(chain + (name,))
            raise MedS1Error(f"cycle in 'same as'/'extends': {loop}", file=self.file, experiment=chain[0], key=key)
        if name not in self.raw:
            raise MedS1Error(f"refers to unknown experiment '{name}'" + (f" (chain {' -> '.join(chain)})" if len(chain) > 1 else ""),
                             file=self.file, experiment=chain[-1] if chain else name, key=key,
                             choices=self.raw, value=name)
        chain = chain + (name,)
        cfg = dict(self.raw[name].get("config") or {})
        parent = cfg.pop("extends", None)
        if parent is not None:
            cfg = deep_merge(self.resolve(parent, chain, "extends"), cfg)
        for block, value in list(cfg.items()):
            target = same_as_target(value)
            if target is not None:
                source = self.resolve(target, chain, block)
                cfg[block] = copy.deepcopy(source.get(block))
        self.done[name] = cfg
        return cfg
