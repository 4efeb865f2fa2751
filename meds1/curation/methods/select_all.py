"""``all``: every row (``n_samples``, when given, is only recorded as requested)."""
from __future__ import annotations

from meds1.curation.selection import Selection
from meds1.plugins import SELECTION_METHODS


@SELECTION_METHODS.register("all")
def select_all(df, cur, ctx) -> Selection:
    """Every row of the dataset."""
    return Selection(order=list(range(len(df))))
