"""``difficulty-n-gram``: the n rows with the highest weighted count of reasoning phrases (lexicon in
``meds1/resources/curation/reasoning_lexicon.json``).
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from meds1.curation.selection import Selection
from meds1.plugins import SELECTION_METHODS

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "curation"
TRACE = "Complex_CoT"


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


@SELECTION_METHODS.register("difficulty-n-gram", needs={"n_samples"})
def select_difficulty_ngram(df, cur, ctx) -> Selection:
    """The n rows with the highest reasoning-phrase score, best first; ties keep row order."""
    scores = [reasoning_score(t) for t in df[TRACE]]
    ranked = sorted(range(len(df)), key=lambda i: -scores[i])  # sorted() is stable: ties stay in row order
    return Selection(order=ranked[:cur.n_samples or len(df)], columns={"ngram_score": scores})
