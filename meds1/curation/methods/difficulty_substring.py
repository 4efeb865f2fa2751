"""``difficulty-substring``: rows whose trace shows self-correction (a marker substring, list in
``meds1/resources/curation/self_correction_markers.txt``); a seeded sample of n of them.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

from meds1.curation.selection import Selection, sample_rows
from meds1.plugins import SELECTION_METHODS

log = logging.getLogger(__name__)

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "curation"
TRACE = "Complex_CoT"


def read_list(name: str) -> list[str]:
    """Non-empty, non-comment lines of a resource file."""
    lines = (RESOURCES / name).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@functools.lru_cache(maxsize=1)
def self_correction_markers() -> tuple[str, ...]:
    return tuple(m.lower() for m in read_list("self_correction_markers.txt"))


def markers_in(trace: str, markers: tuple[str, ...]) -> list[str]:
    text = str(trace).lower()
    return [m for m in markers if m in text]


@SELECTION_METHODS.register("difficulty-substring", needs={"n_samples"})
def select_difficulty_substring(df, cur, ctx) -> Selection:
    """Rows whose trace shows self-correction (a marker substring); a seeded sample of n of them."""
    markers = self_correction_markers()
    found = [markers_in(t, markers) for t in df[TRACE]]
    hard = [i for i, hits in enumerate(found) if hits]
    if cur.n_samples and len(hard) < cur.n_samples:
        log.warning("difficulty-substring: only %d rows have a marker (n_samples %d)", len(hard), cur.n_samples)
    removed = {i: ("difficulty", "no self-correction marker") for i, hits in enumerate(found) if not hits}
    return Selection(order=sample_rows(hard, cur.n_samples, ctx.seed), removed=removed,
                     columns={"self_correction_markers": [";".join(hits) or None for hits in found]})
