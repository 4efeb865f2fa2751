"""Seed-compatible scoring: the seed system's answer extraction and per-source rule, so our numbers can be put next
to its published tables (../shared/notes/seed-system.md §5.4; the same cascade as HuatuoGPT-o1's scorer).

It differs from ``meds1.matcher`` on purpose and is reported beside it, never instead of it: it always returns a
letter (an empty output still gets the most similar option), takes the first AND the last match, and a source's
accuracy is the better of "first letter right" and "last letter right" over all its items.

    >>> seed_match("## Final Response\\n\\nThe answer is B", {"A": "x", "B": "y"})
    SeedMatch(first='B', last='B', kind=1)
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

RULE = ("seed-compatible: split after the last Llama answer header, 'Answer:', '## Final Response\\n\\n', '</think>' "
        "(in turn); 'answer is X' (A-N) else a loose option letter else option text else the most similar option "
        "(never abstains); source accuracy = max(first-letter accuracy, last-letter accuracy); Overall = mean of "
        "sources")
# Cut after the last occurrence of each, in this order (each cut works on what the previous one left).
SPLIT_MARKERS = ("<|start_header_id|>answer<|end_header_id|>", "Answer:", "## Final Response\n\n", "</think>")
_STRICT = re.compile(r"(answer is\s*?)([A-N])", re.S)   # case-sensitive, as the seed's
_CJK = "\u4e00-\u9fff"
# Before the letter: a CJK character, "is ", 是, 项, *, any non-word character, (, 为, ', ", #, or the start.
_LOOSE_BEFORE = rf"([{_CJK}]|is |是|项|\*|\W|\(|为|^|'|\"|#)"


@dataclass(frozen=True)
class SeedMatch:
    first: str
    last: str
    kind: int   # 1: a letter pattern, 2: option text, 3: the most similar option (a guess)


def seed_match(text: str, options: dict[str, str]) -> SeedMatch:
    """The seed's ``match_choice``: (first, last) letter and how they were found."""
    for marker in SPLIT_MARKERS:
        text = text.split(marker)[-1]
    strict = [m.group(2) for m in _STRICT.finditer(text)]
    if strict:
        return SeedMatch(strict[0], strict[-1], 1)
    letters = "ABCDEFGHIJKLMN"[:len(options)]
    loose = re.compile(_LOOSE_BEFORE + rf"(?![aA] )([{letters}])(\W|[{_CJK}]|$)", re.S) if letters else None
    found = [m.group(2) for m in loose.finditer(text)] if loose else []
    if found:
        return SeedMatch(found[0], found[-1], 1)
    lowered = text.lower()
    present = [k for k, v in options.items() if v.lower() in lowered]
    if present:
        # The seed sorts by position, latest first; Python's sort keeps option order among equal positions.
        last = sorted(present, key=lambda k: lowered.rindex(options[k].lower()), reverse=True)[0]
        first = sorted(present, key=lambda k: lowered.index(options[k].lower()), reverse=True)[0]  # sic: the seed's
        return SeedMatch(first, last, 2)
    return SeedMatch(*(_most_similar(lowered, options),) * 2, 3)


def _most_similar(lowered: str, options: dict[str, str]) -> str:
    """The option whose lower-cased text is most similar to the whole text; a tie goes to the later option."""
    best, best_ratio = None, 0.0
    for letter, option in options.items():
        ratio = difflib.SequenceMatcher(None, option.lower(), lowered).ratio()
        if ratio >= best_ratio:
            best, best_ratio = letter, ratio
    return best


def seed_source_accuracy(matches: list[SeedMatch], answers: list[str]) -> dict:
    """One source, the seed's rule: accuracy = max(first-letter accuracy, last-letter accuracy) (ties: the last)."""
    n = len(matches)
    first = sum(m.first.lower() == a.lower() for m, a in zip(matches, answers))
    last = sum(m.last.lower() == a.lower() for m, a in zip(matches, answers))
    return {"n": n, "first_correct": first, "last_correct": last, "accuracy": max(first, last) / n if n else None,
            "guessed": sum(m.kind == 3 for m in matches)}
