"""Difficulty from the trace's own words: self-correction markers (``difficulty-substring``) and a weighted lexicon
of reasoning phrases (``difficulty-n-gram``). Both read the ``Complex_CoT`` column; their word lists are data files in
``meds1/resources/curation/``.
"""
from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path

import pandas as pd

from meds1.curation.methods import SELECTION_METHODS, Selection, sample_rows

log = logging.getLogger(__name__)

RESOURCES = Path(__file__).resolve().parents[1] / "resources" / "curation"
TRACE = "Complex_CoT"


def read_list(name: str) -> list[str]:
    """Non-empty, non-comment lines of a resource file."""
    lines = (RESOURCES / name).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


# ----------------------------------------------------------------------------------------------- difficulty-substring
@functools.lru_cache(maxsize=1)
def self_correction_markers() -> tuple[str, ...]:
    return tuple(m.lower() for m in read_list("self_correction_markers.txt"))


def markers_in(trace: str, markers: tuple[str, ...]) -> list[str]:
    text = str(trace).lower()
    return [m for m in markers if m in text]


@SELECTION_METHODS.register("difficulty-substring")
def select_difficulty_substring(df: pd.DataFrame, cur: dict, ctx) -> Selection:
    """Rows whose trace shows self-correction (a marker substring); a seeded sample of n of them."""
    markers = self_correction_markers()
    found = [markers_in(t, markers) for t in df[TRACE]]
    hard = [i for i, hits in enumerate(found) if hits]
    if cur.get("n_samples") and len(hard) < cur["n_samples"]:
        log.warning("difficulty-substring: only %d rows have a marker (n_samples %d)", len(hard), cur["n_samples"])
    removed = {i: ("difficulty", "no self-correction marker") for i, hits in enumerate(found) if not hits}
    return Selection(order=sample_rows(hard, cur.get("n_samples"), ctx.seed), removed=removed,
                     columns={"self_correction_markers": [";".join(hits) or None for hits in found]})


# -------------------------------------------------------------------------------------------------- difficulty-n-gram
def normalise_words(text: str) -> str:
    """Lower case; every run of non-alphanumerics becomes one space ("Let's double-check" -> "let s double check")."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", str(text).lower()).split())


@functools.lru_cache(maxsize=1)
def reasoning_lexicon() -> tuple[dict[str, float], re.Pattern, float]:
    """(phrase -> weight, one pattern matching any phrase longest-first on word boundaries, words per unit)."""
    data = json.loads((RESOURCES / "reasoning_lexicon.json").read_text(encoding="utf-8"))
    weights = {normalise_words(p): float(w) for p, w in data["phrases"].items()}
    alternatives = "|".join(re.escape(p) for p in sorted(weights, key=len, reverse=True))
    return weights, re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])"), float(data.get("per_words", 100))


def reasoning_score(trace: str) -> float:
    """Weighted count of reasoning phrases per ``per_words`` words (0 for an empty trace)."""
    weights, pattern, per_words = reasoning_lexicon()
    text = normalise_words(trace)
    n_words = len(text.split())
    if not n_words:
        return 0.0
    return sum(weights[m] for m in pattern.findall(text)) * per_words / n_words


@SELECTION_METHODS.register("difficulty-n-gram")
def select_difficulty_ngram(df: pd.DataFrame, cur: dict, ctx) -> Selection:
    """The n rows with the highest reasoning-phrase score, best first; ties keep row order."""
    scores = [reasoning_score(t) for t in df[TRACE]]
    ranked = sorted(range(len(df)), key=lambda i: -scores[i])  # sorted() is stable: ties stay in row order
    n = cur.get("n_samples") or len(df)
    return Selection(order=ranked[:n], columns={"ngram_score": scores})
