"""Run a selection method the way the curate stage does: the block validated into CurationSettings first."""
from __future__ import annotations

from meds1.curation.settings import CurationSettings
from meds1.plugins import SELECTION_METHODS


def run_method(name: str, df, block: dict, ctx):
    """``block``: the curation keys (n_samples, the method's options); ``method`` is set from ``name``."""
    cur = CurationSettings.from_block({k: v for k, v in {"method": name, **block}.items() if v is not None})
    return SELECTION_METHODS.get(name).impl(df, cur, ctx)
