"""Offline (rule-based) stand-ins for the curation LLM tasks ``judge`` and ``specialty``.

``select_s1`` attaches them to its requests (``LLMRequest(..., offline=judge_answer)``), so the LLM layer needs to
know no curation task. They let ``s1`` run without a model (tests, CI, the CPU demo). A real judge understands
synonyms and a real labeller reads the whole case; these rules only compare normalised answers and count keywords,
and say so in ``offline_rule``.

Payloads (set by ``select_s1``):
- ``judge``: ``{"answer": base model answer, "reference": reference answer text, "options": {letter: text}|None,
  "answer_idx": letter|None}`` -> "yes" | "no" (the real judge's reply must end with that word)
- ``specialty``: ``{"question": text, "labels": the numbered list}`` -> "<label>\nSPECIALTY: NNN"
  (``resources/curation/specialty_keywords.json``)
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from meds1.llm.base import LLMRequest
from meds1.text import normalise_words

RESOURCES = Path(__file__).resolve().parents[1] / "resources" / "curation"
MAX_REFERENCE_WORDS = 12  # longer references are explanations, not answers: only exact equality counts then


def _contains_phrase(haystack: str, needle: str) -> bool:
    return bool(needle) and f" {needle} " in f" {haystack} "


def judge_answer(req: LLMRequest):
    """Offline judge: same option letter (answer matcher), else the reference answer text appears in the answer.

    Only normalised text is compared: a synonym or a paraphrase of the reference counts as a different answer.
    """
    from meds1.matcher import match

    p = req.payload
    answer, reference = normalise_words(p.get("answer")), normalise_words(p.get("reference"))
    options, gold = p.get("options") or None, p.get("answer_idx")
    if options and gold:
        letter = match(str(p.get("answer") or ""), options).letter
        if letter is not None:
            return ("yes" if letter == gold else "no"), {"by": "option letter", "letter": letter}
        reference = normalise_words(options.get(gold)) or reference
    if len(reference.split()) <= MAX_REFERENCE_WORDS:
        same = _contains_phrase(answer, reference)
    else:
        same = answer == reference
    return ("yes" if same else "no"), {"by": "answer text"}


@functools.lru_cache(maxsize=1)
def keyword_rules() -> tuple[str, list[tuple[str, re.Pattern]]]:
    """(fallback, [(label, compiled keyword pattern)]) from specialty_keywords.json, in file order."""
    data = json.loads((RESOURCES / "specialty_keywords.json").read_text(encoding="utf-8"))
    rules = []
    for name, words in data["rules"].items():
        parts = [re.escape(w[:-1]) + r"\w*" if w.endswith("*") else re.escape(w) for w in words]
        rules.append((name, re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE)))
    return data["fallback"], rules


def label_specialty(req: LLMRequest):
    """Offline specialty labeller: the label with the most keyword hits in the question (else the fallback), answered
    the way the real labeller must: "SPECIALTY: NNN" with the label's 1-based number in the request's list."""
    fallback, rules = keyword_rules()
    question = str(req.payload.get("question") or "")
    best, best_hits = fallback, 0
    for name, pattern in rules:
        hits = len(pattern.findall(question))
        if hits > best_hits:  # strictly more: ties keep the earlier rule
            best, best_hits = name, hits
    number = list(req.payload["labels"]).index(best) + 1
    return f"{best}\nSPECIALTY: {number}", {"keyword_hits": best_hits}
