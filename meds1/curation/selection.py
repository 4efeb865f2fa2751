"""What a selection method returns, and the seeded sampling several methods share.

A selection method is a plug-in (``meds1.plugins.SELECTION_METHODS``), one module in ``meds1/curation/methods/``:
``fn(df, cur, ctx) -> Selection`` where ``df`` is the canonical training frame (sorted, with content ids),
``cur`` the experiment's ``CurationSettings`` (``cur.n_samples``, ``cur.options`` = the method's own typed options)
and ``ctx`` the curation context (seed, LLM client, embeddings, base model).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Selection:
    order: list[int]                                                   # selected row positions, in selection order
    removed: dict[int, tuple[str, str]] = field(default_factory=dict)  # row -> (stage, reason) for filtered rows
    columns: dict[str, list] = field(default_factory=dict)             # extra per-row columns (scores, labels, ...)


def sample_rows(rows: list[int], n: int | None, seed: int) -> list[int]:
    """Seeded uniform sample without replacement; all rows when n is None or n >= len(rows)."""
    if n is None or n >= len(rows):
        return list(rows)
    return sorted(random.Random(seed).sample(list(rows), n))
