"""``random``: a seeded uniform sample of ``n_samples`` rows (the dataset is sorted first, so file order is moot)."""
from __future__ import annotations

from meds1.curation.selection import Selection, sample_rows
from meds1.plugins import SELECTION_METHODS


@SELECTION_METHODS.register("random", needs={"n_samples"})
def select_random(df, cur, ctx) -> Selection:
    """A seeded uniform sample of n rows, kept in row order."""
    return Selection(order=sample_rows(list(range(len(df))), cur.n_samples, ctx.seed))
