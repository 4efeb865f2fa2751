"""Comparing answer texts word by word: one normaliser for the matcher, the offline judge, perturbation checks and
the seed's n-gram scorer."""
from __future__ import annotations

import re

_NOT_A_WORD = re.compile(r"\W+")  # Unicode-aware: "β-blocker" keeps its β, so α- and β-thalassemia differ


def normalise_words(text) -> str:
    """Lower case, every run of non-word characters to one space, trimmed: "Parvovirus-B19." -> "parvovirus b19".

    None is empty. This is also the seed's n-gram rule exactly (punctuation to spaces, whitespace collapsed)."""
    if text is None:
        return ""
    return " ".join(_NOT_A_WORD.sub(" ", str(text).lower()).split())
