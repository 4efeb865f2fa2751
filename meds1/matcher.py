"""Which option did a model's output choose? A tiered, conservative answer matcher.

    >>> match("## Thinking\\nA or B?\\n## Final Response\\nThe answer is (C).", {"A": "x", "B": "y", "C": "z"})
    Match(letters=['C'], letter='C', parsed_by='strict')

1. Keep the answer section: the text from the LAST answer marker on (the trace formats' markers "## Final Response",
   "</think>", the llama answer header, "<|im_start|>answer"; also "## Answer", "Final answer:", "Answer:"). An
   unclosed ``<think>`` (a truncated generation) is dropped, because thinking is not an answer.
2. Ask the tiers in order; the first that finds a valid option letter decides, and its last letter is the choice:
   ``strict`` ("answer is (C)", "answer: C") -> ``letter`` (a standalone, marked option letter) -> ``option_text``
   (exactly one option's text) -> ``similarity`` (nearest option text, only when asked for).
3. The choice must name ONE option: when it stands in a list of two or more distinct options ("A and I", "B or C",
   "A, C") the answer is ambiguous -> ``letter=None, parsed_by="ambiguous"``, counted as unparsed, never correct.
4. Nothing found -> ``letter=None, parsed_by="none"``. The matcher never guesses.

The seed system's own scorer (which always guesses) is ``meds1.evaluate.seed_scoring``; metrics.json reports both.

Each tier is a plug-in in ``MATCH_TIERS``; its docstring's first line is the rule written into metrics.json, so
changing a tier's behaviour means bumping ``MATCHER_VERSION``.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Callable

from meds1.plugins import PluginRegistry
from meds1.text import normalise_words

MATCHER_VERSION = "2"  # 2: multi-option answers are ambiguous; capital article guard in the strict tier

Tier = Callable[[str, dict[str, str]], list[str]]
MATCH_TIERS: PluginRegistry[Tier] = PluginRegistry("matcher tier")
TIER_ORDER = ("strict", "letter", "option_text")
SIMILARITY_THRESHOLD = 0.75

# Markers after which a model states its answer. The section keeps the marker itself so "Answer: D" stays strict.
ANSWER_MARKERS = (
    r"#+[ \t]*final[ \t]+response\b",
    r"</think>",
    r"<\|start_header_id\|>\s*answer\s*<\|end_header_id\|>",
    r"<\|im_start\|>[ \t]*answer\b",
    r"^[ \t]*#+[ \t]*answer\b",
    r"\bfinal[ \t]+answer[ \t]*:",
    r"\banswer[ \t]*:",
)
_MARKER_RE = re.compile("|".join(f"(?:{m})" for m in ANSWER_MARKERS), re.IGNORECASE | re.MULTILINE)
_OPEN_THINK_RE = re.compile(r"<think>", re.IGNORECASE)

# "the answer is (C)", "correct option: **B**", "answer would be c." -- the letter must end there (not "B12").
_STRICT_RE = re.compile(
    r"\b(?:answer|option|choice)\b[ \t]*(?:is|:|=|would[ \t]+be|should[ \t]+be|will[ \t]+be)[ \t]*:?[ \t]*"
    r"(?:option[ \t]+|choice[ \t]+|letter[ \t]+)?[*_(\[ \t]*([A-Za-z])(?![\w'’-])",
    re.IGNORECASE,
)
# Words after which a bare capital letter is an option letter ("option B", "is C", "A or B").
_LETTER_CUES = {
    "option", "options", "choice", "choices", "answer", "letter", "is", "be", "are", "select", "selected", "choose",
    "chose", "chosen", "pick", "picked", "or", "and", "vs", "versus", "think", "likely", "probably", "correct",
}
# Words that may follow a bare "A"/"I" when it is an option ("A is correct"); otherwise it is the article/pronoun.
_LETTER_VERBS = {"is", "was", "would", "seems", "appears", "best", "fits", "matches", "remains", "should", "could",
                 "can", "because", "since", "as", "and", "or", "correctly", "also", "does"}
_BARE_LETTER_RE = re.compile(r"(?<![\w'’°-])([A-Z])(?![\w'’-])")  # not in "DNA", "B-cell", "Crohn's", "37°C"
_MARKUP = " \t*_#>-•([{"  # stripped before the letter; ':' stays, it counts as punctuation


@dataclass
class Match:
    letters: list[str] = field(default_factory=list)   # every valid letter the deciding tier found, in text order
    letter: str | None = None                          # the choice: the last of ``letters``; None when unparsed
    parsed_by: str = "none"     # "strict" | "letter" | "option_text" | "similarity" | "ambiguous" | "none"

    @property
    def ambiguous(self) -> bool:
        return self.parsed_by == "ambiguous"


# A tier's finding: the letter and where it ends in the section (-1: found by text, not at a position).
Hit = tuple[str, int]


def match(output: str, options: dict[str, str], *, similarity: bool = False) -> Match:
    """The option ``output`` chose, by the first tier that finds one (see the module docstring)."""
    section = answer_section(output or "")
    for name in TIER_ORDER + (("similarity",) if similarity else ()):
        hits = MATCH_TIERS.get(name)(section, options)
        if hits:
            letters = _unique([letter for letter, _ in hits])
            chosen, end = hits[-1]
            listed = listed_options(section, end, options) if end >= 0 else []
            if len(set(listed)) > 1:
                return Match(letters=_unique(letters + listed), parsed_by="ambiguous")
            return Match(letters=letters, letter=chosen, parsed_by=name)
    return Match()


def matcher_rules(similarity: bool = False) -> list[str]:
    """The rules in force, one line each, for the ``matcher`` block of metrics.json."""
    names = TIER_ORDER + (("similarity",) if similarity else ())
    section_rule = ("section: text from the last answer marker (## Final Response, </think>, llama answer header, "
                    "<|im_start|>answer, ## Answer, Final answer:, Answer:); an unclosed <think> is dropped")
    return [section_rule] + [f"{n}: {_first_line(MATCH_TIERS.get(n).__doc__)}" for n in names] + [
        "choice: the last valid letter of the first tier that finds one; none found -> unparsed (never guessed)",
        "ambiguous: the choice stands in a list of two or more distinct options ('A and I', 'B or C', 'A, C') -> "
        "unparsed, never correct"]


def answer_section(output: str) -> str:
    """The text from the last answer marker on (the whole output when there is none)."""
    think = _OPEN_THINK_RE.search(output)
    if think and "</think>" not in output[think.end():].lower():
        output = output[:think.start()]  # truncated thinking: nothing after it was ever answered
    last = None
    for last in _MARKER_RE.finditer(output):
        pass
    return output[last.start():] if last else output


@MATCH_TIERS.register("strict")
def strict_letters(section: str, options: dict[str, str]) -> list[Hit]:
    """'answer is X', 'answer is (X)', 'answer: X', 'correct option is X' (case-insensitive); not the article 'a'/'A'
    or the pronoun 'I' ('Answer: A 45-year-old man ...')."""
    found = []
    for m in _STRICT_RE.finditer(section):
        letter = m.group(1)
        if letter in "ai" and re.match(r"[ \t]+[a-z0-9]", section[m.end():]):
            continue  # "the answer is a combination ..." is the article, not option A
        if letter in "AI" and _starts_a_phrase(section[m.end():]):
            continue  # "Answer: A 45-year-old man ..." / "answer is I think": the article or the pronoun
        if letter.upper() in options:
            found.append((letter.upper(), m.end()))
    return found


@MATCH_TIERS.register("letter")
def marked_letters(section: str, options: dict[str, str]) -> list[Hit]:
    """A standalone capital option letter: (B), **B**, B., B), 'Option B', a letter alone on a line; not inside words,
    not the article 'A'/pronoun 'I', not an abbreviation ('E. coli'), not after other words ('vitamin D')."""
    found = []
    for m in _BARE_LETTER_RE.finditer(section):
        letter = m.group(1)
        if letter in options and _counts_as_option(section, m.start(), m.end()):
            found.append((letter, m.end()))
    return found


@MATCH_TIERS.register("option_text")
def option_text_letters(section: str, options: dict[str, str]) -> list[Hit]:
    """The section contains exactly one option's text (normalised; the longest wins when one text contains another)."""
    text = f" {normalise_words(section)} "
    normalised = {k: normalise_words(v) for k, v in options.items()}
    hits = {k: v for k, v in normalised.items() if v and f" {v} " in text}
    longest = [k for k, v in hits.items() if not any(v != w and f" {v} " in f" {w} " for w in hits.values())]
    return [(longest[0], -1)] if len(longest) == 1 else []


@MATCH_TIERS.register("similarity")
def similar_option_letters(section: str, options: dict[str, str]) -> list[Hit]:
    """The option whose words best match the section's words (mean difflib ratio), if >= 0.75 and unrivalled."""
    words = sorted(set(normalise_words(section).split()))
    scores = {letter: _fuzzy_recall(normalise_words(text).split(), words) for letter, text in options.items()}
    ranked = sorted(scores.values(), reverse=True)
    if not ranked or ranked[0] < SIMILARITY_THRESHOLD or ranked[1:2] == ranked[:1]:
        return []
    return [(max(scores, key=scores.get), -1)]


def _fuzzy_recall(tokens: list[str], words: list[str]) -> float:
    """How well each option word is matched by some output word (1.0 each when all appear verbatim)."""
    if not tokens:
        return 0.0
    total = 0.0
    for token in tokens:
        close = difflib.get_close_matches(token, words, n=1, cutoff=0.6)  # cutoff lets difflib skip far words fast
        total += difflib.SequenceMatcher(None, token, close[0]).ratio() if close else 0.0
    return total / len(tokens)


def _counts_as_option(text: str, start: int, end: int) -> bool:
    before, after = text[:start], text[end:]
    around = before[-1:] + after[:1]
    if around in ("()", "[]", "**", "__"):
        return True  # (B), [B], **B**, _B_: explicitly marked
    if re.match(r"\.[ \t]*[a-z]", after):
        return False  # "E. coli", "S. aureus": an abbreviation
    if text[start] in "AI" and _starts_a_phrase(after):
        return False  # "A 45-year-old man", "I think": article or pronoun
    context = before.rsplit("\n", 1)[-1].rstrip(_MARKUP)
    if not context or not context[-1].isalnum():
        return True  # at the start of a line or sentence, or after ':' ',' '-'
    last_word = re.findall(r"\w+", context)[-1].lower()
    return last_word in _LETTER_CUES


def _starts_a_phrase(after: str) -> bool:
    """Is a bare 'A'/'I' followed by a lower-case word or a number that makes it the article or the pronoun?"""
    if not re.match(r"[ \t]+(?:\d|[a-z])", after):
        return False
    next_word = re.match(r"[ \t]+(\S+)", after).group(1).strip(".,;:").lower()
    return next_word not in _LETTER_VERBS


# One option letter as a list member: "A", "(A)", "**A**", "A." ... and what joins two members.
_MEMBER = r"[*_(\[]{0,2}([A-Z])[*_)\].]{0,3}"
_JOIN = r"[ \t]*(?:,[ \t]*(?:and|or)\b|,|/|&|\+|\band\b|\bor\b)[ \t]*"
_LIST_BEFORE_RE = re.compile(rf"(?:(?<![\w'’-]){_MEMBER}{_JOIN})+$")
_LIST_AFTER_RE = re.compile(rf"^[*_)\].]{{0,3}}(?:{_JOIN}{_MEMBER}(?![\w'’-]))+")


def listed_options(section: str, end: int, options: dict[str, str]) -> list[str]:
    """The options named together with the letter that ends at ``end`` ("A and I", "B or C", "A, C"), that letter
    included; just that letter when it stands alone."""
    letter = section[end - 1]
    before = _LIST_BEFORE_RE.search(section[:end - 1].rstrip("*_(["))
    after = _LIST_AFTER_RE.match(section[end:])
    members = re.findall(_MEMBER, before.group(0)) if before else []
    members += [letter] + (re.findall(_MEMBER, after.group(0)) if after else [])
    tail = section[end + (after.end() if after else 0):]
    if members[-1] in "AI" and len(members) > 1 and _starts_a_phrase(tail):
        members.pop()  # "C and I am sure": the pronoun, not option I
    return [m for m in members if m in options]


def _unique(letters: list[str]) -> list[str]:
    return list(dict.fromkeys(letters))


def _first_line(doc: str | None) -> str:
    return " ".join((doc or "").split("\n\n")[0].split())
