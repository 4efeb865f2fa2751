"""``difficulty-n-gram``: the n rows whose trace scores highest on the seed system's weighted phrase list.

The scorer is the seed's, exactly (``meds1/resources/curation/seed_ngram_lexicon.json``, 35 phrases): the trace is
lower-cased, every punctuation character becomes a space, whitespace is collapsed; each phrase is counted by plain
substring occurrence (so "like" also counts inside "likely", and "let s think" adds to "let s" and "s think" too);
the score is sum(count x weight) / (words + 1). The n highest scores are taken, best first (ties: row order).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from meds1.curation.selection import Selection
from meds1.plugins import SELECTION_METHODS
from meds1.text import normalise_words

LEXICON = Path(__file__).resolve().parents[2] / "resources" / "curation" / "seed_ngram_lexicon.json"
TRACE = "Complex_CoT"


@functools.lru_cache(maxsize=1)
def seed_lexicon() -> dict[str, float]:
    """phrase -> weight, as the seed system wrote them (already lower case, punctuation as spaces)."""
    return {phrase: float(w) for phrase, w in json.loads(LEXICON.read_text(encoding="utf-8"))["ngrams"].items()}


def normalise_trace(text) -> str:
    """Lower case, punctuation -> space, runs of whitespace -> one space ("Let's see." -> "let s see"): the seed's
    rule is the project's word normaliser; ``str`` first because the seed scored a missing trace as "None"."""
    return normalise_words(str(text))


def ngram_score(trace) -> float:
    """The seed's score: sum over phrases of (substring occurrences x weight), divided by (words + 1)."""
    text = normalise_trace(trace)
    total = sum(text.count(phrase) * weight for phrase, weight in seed_lexicon().items())
    return total / (len(text.split()) + 1)


@SELECTION_METHODS.register("difficulty-n-gram", needs={"n_samples"})
def select_difficulty_ngram(df, cur, ctx) -> Selection:
    """The n rows with the highest seed n-gram score, best first; ties keep row order."""
    scores = [ngram_score(t) for t in df[TRACE]]
    ranked = sorted(range(len(df)), key=lambda i: -scores[i])  # sorted() is stable: ties stay in row order
    n = cur.n_samples or len(df)
    removed = {i: ("difficulty", "low_ngram_score") for i in ranked[n:]}  # the seed's reason
    return Selection(order=ranked[:n], removed=removed, columns={"ngram_score": scores})
