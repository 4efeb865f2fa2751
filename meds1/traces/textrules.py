"""Text heuristics the offline stand-ins share: a trace's pieces, its key sentences, its statements.

The stand-ins (each next to its transform, perturbation or restore) keep the whole pipeline runnable without a model
(tests, CI, the CPU demo) and change a trace's *structure* the way the real transform would. They cannot add medical
knowledge: where a real model would, the stand-in says so in its text or its ``offline_rule``.
"""
from __future__ import annotations

import math
import re

from meds1.traces.steps import (
    drop_filler,
    is_step_format,
    parse_steps,
    short_title,
    split_paragraphs,
    split_sentences,
)

STOPWORDS = frozenset(
    "about above after again against being below between could doing during further having their there these those "
    "through under until where which while would should might other shall because since still whose patient "
    "patients this that with from into what when have been were they them then than also just some more most "
    "very".split()
)
NEGATION = re.compile(r"\b(?:not|no|unlikely|rules? out|ruled out|instead|however|although|alternative|rather)\b",
                      re.IGNORECASE)
CASE_REPORT_PHRASES = (
    (r"\b(?:the|this) case report (?:mentions|notes|states|says|describes|reports|shows|suggests|indicates) "
     r"that\s+", ""),
    (r"\b(?:according to|as (?:noted|described|mentioned|reported) in|in|from) (?:the|this) case report,?\s*", ""),
    (r"\b(?:the|this) case report\b", "the case"),
)
TRANSITIONS = ("Hmm, ", "Oh, ", "Wait, ")


def units(cot: str) -> list[tuple[str | None, str]]:
    """The trace's pieces as (title, text): its steps, else its paragraphs, else groups of ~3 lines/sentences."""
    if is_step_format(cot):
        return [(s.title or None, s.body) for s in parse_steps(cot)]
    sections = headed_paragraphs(cot)
    if len(sections) >= 2:
        return sections
    lines = [re.sub(r"^\s*(?:[-*\u2022]|\d+[.)]|[QA]:)\s*", "", line) for line in cot.splitlines() if line.strip()]
    sentences = lines if len(lines) >= 2 else split_sentences(cot)  # a list's lines are its sentences
    if len(sentences) < 2:
        return [(None, cot.strip())] if cot.strip() else []
    n_groups = min(len(sentences), max(2, math.ceil(len(sentences) / 3)))
    size = math.ceil(len(sentences) / n_groups)
    return [(None, " ".join(sentences[i:i + size])) for i in range(0, len(sentences), size)]


def headed_paragraphs(cot: str) -> list[tuple[str | None, str]]:
    """Paragraphs as (title, text); a markdown heading ("## Plan") becomes the title of the text under it."""
    out: list[tuple[str | None, str]] = []
    pending: str | None = None
    for paragraph in split_paragraphs(cot):
        head = re.match(r"^#{1,6}[ \t]*(.+?)[ \t#]*(?:\n|$)", paragraph)
        title, text = (head.group(1), paragraph[head.end():].strip()) if head else (None, paragraph)
        if head and not text:
            pending = title  # a heading alone in its paragraph titles the next one
            continue
        out.append((title or pending, text))
        pending = None
    return out


def key_sentence(text: str) -> str:
    """The statement carrying most content (long words, numbers), earliest on ties, without spoken fillers."""
    cores = [drop_filler(s) for s in split_sentences(text)]
    candidates = [c for c in cores if len(c.split()) >= 6 and not c.endswith("?")]
    if not candidates:
        return cores[0] if cores else ""
    weight = [len(content_words(c)) + 2 * bool(re.search(r"\d", c)) for c in candidates]
    return candidates[max(range(len(candidates)), key=lambda i: (weight[i], -i))]


def titled_units(cot: str) -> list[tuple[str, str]]:
    return [(title or short_title(key_sentence(text)) or "Reasoning", text) for title, text in units(cot)]


def statements(text: str, min_words: int = 5) -> list[str]:
    cores = (drop_filler(s) for s in split_sentences(text))
    return [c for c in cores if len(c.split()) >= min_words and not c.endswith("?")]


def questions_in(text: str) -> list[str]:
    return [drop_filler(s) for s in split_sentences(text) if s.rstrip().endswith("?")]


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z][a-z\-]{4,}", text.lower()) if w not in STOPWORDS}


def lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def clause(sentence: str) -> str:
    return sentence.rstrip(" .!?;:")


def remove_case_report_mentions(text: str) -> str:
    for pattern, replacement in CASE_REPORT_PHRASES:
        text = re.sub(pattern, replacement, text, flags=re.IGNORECASE)
    return re.sub(r"(^|[.!?]\s+|\n)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


def add_transitions(lines: list[str]) -> list[str]:
    """Spoken transitions on every second line ("Hmm, ", "Oh, ", "Wait, " in turn)."""
    out = []
    for i, line in enumerate(lines):
        if i % 2 == 1:
            line = TRANSITIONS[(i // 2) % len(TRANSITIONS)] + lower_first(drop_filler(line))
        out.append(line)
    return out
