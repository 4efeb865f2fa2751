"""Selection methods: each takes the canonical training frame and returns which rows to keep, in order.

A method is a registered plug-in ``fn(df, cur, ctx) -> Selection``; ``cur`` is the experiment's curation block and
``ctx`` the curation context (seed, LLM client, embeddings, base model). Methods live in small modules next to this
one and register themselves here.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import pandas as pd

from meds1.plugins import PluginRegistry


@dataclass
class Selection:
    order: list[int]                                                   # selected row positions, in selection order
    removed: dict[int, tuple[str, str]] = field(default_factory=dict)  # row -> (stage, reason) for filtered rows
    columns: dict[str, list] = field(default_factory=dict)             # extra per-row columns (scores, labels, ...)


SELECTION_METHODS: PluginRegistry = PluginRegistry("curation method")


def sample_rows(rows: list[int], n: int | None, seed: int) -> list[int]:
    """Seeded uniform sample without replacement; all rows when n is None or n >= len(rows)."""
    if n is None or n >= len(rows):
        return list(rows)
    return sorted(random.Random(seed).sample(list(rows), n))


@SELECTION_METHODS.register("all")
def select_all(df: pd.DataFrame, cur: dict, ctx) -> Selection:
    return Selection(order=list(range(len(df))))


@SELECTION_METHODS.register("random")
def select_random(df: pd.DataFrame, cur: dict, ctx) -> Selection:
    return Selection(order=sample_rows(list(range(len(df))), cur.get("n_samples"), ctx.seed))


def load_plugins() -> None:
    """Import the method modules so they register (kept lazy: some import torch/sentence-transformers)."""
    import importlib
    import pkgutil

    import meds1.curation as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name.startswith("select_"):
            importlib.import_module(f"meds1.curation.{mod.name}")
