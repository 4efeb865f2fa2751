"""Reading and writing reasoning traces: "## Step N: title" blocks, paragraphs, sentences, LLM preamble trimming.

Every trace transform, perturbation and restore goes through these helpers, so "what counts as a step" is decided in
exactly one place.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# A step heading as LLMs write it: "## Step 3: Title", "### Step 3 - Title", "## Step 3." (title may be empty).
STEP_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]*Step[ \t]*(\d+)[ \t]*[:.\-\u2013\u2014]?[ \t]*(.*)$",
                          re.IGNORECASE | re.MULTILINE)
ANSWER_SENTENCE = re.compile(r"the\s+answer\s+is\s*:?\s*\**\(?([A-J])\b\)?", re.IGNORECASE)

# Abbreviations that end in a period but do not end a sentence (medical text is full of them).
_ABBREVIATIONS = frozenset({"dr.", "mr.", "mrs.", "ms.", "e.g.", "i.e.", "vs.", "st.", "approx.", "no.", "fig.",
                            "g/dl.", "mg/dl."})
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_FILLER_START = re.compile(
    r"^(?:(?:okay|ok|alright|all right|hmm+|oh|ah|wait|so|well|now|yeah|yep|right|and|but|also|then|first|next|"
    r"finally|actually|anyway|let me see|let's see)\b[,.!]?\s+)+",
    re.IGNORECASE,
)

# Polite openers and sign-offs that chat models wrap around the requested text.
_PREAMBLE_LINE = re.compile(
    r"^(?:(?:sure|certainly|of course|absolutely|okay|ok|great|got it)\b[!,.]?\s*)?"
    r"(?:here(?:'s| is| are)\b|below (?:is|are)\b"
    r"|i(?:'ve| have) (?:rewritten|transformed|converted|reformatted|restructured)\b"
    r"|the following is\b)",
    re.IGNORECASE,
)
_COURTESY_LINE = re.compile(r"^(?:sure|certainly|of course|absolutely|got it)\b[^\n]{0,80}[.!:]$", re.IGNORECASE)
_SIGN_OFF = re.compile(r"^(?:let me know|i hope|feel free|if you (?:need|want|would like)|hope this helps)",
                       re.IGNORECASE)
_FENCED = re.compile(r"```[\w+-]*[ \t]*\n(.*?)\n?```", re.DOTALL)


@dataclass(frozen=True)
class Step:
    title: str
    body: str


def parse_steps(text: str) -> list[Step]:
    """Split a "## Step N: title" trace into steps (text before the first heading is ignored)."""
    text = text or ""
    heads = list(STEP_HEADING.finditer(text))
    steps = []
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        steps.append(Step(title=head.group(2).strip(), body=text[head.end():end].strip()))
    return steps


def render_steps(steps: list[Step]) -> str:
    """Steps numbered 1..N as "## Step N: title\\n\\nbody" blocks separated by blank lines."""
    blocks = []
    for number, step in enumerate(steps, 1):
        head = f"## Step {number}: {step.title}".rstrip()
        blocks.append(f"{head}\n\n{step.body}".rstrip())
    return "\n\n".join(blocks)


def normalise_steps(text: str) -> str:
    """Steps renumbered 1..N with one heading style (an LLM may write "### Step 2 -"); other text as it is."""
    steps = parse_steps(text)
    return render_steps(steps) if steps else text


def step_numbers(text: str) -> list[int]:
    return [int(m.group(1)) for m in STEP_HEADING.finditer(text or "")]


def is_step_format(text: str, min_steps: int = 1) -> bool:
    return len(step_numbers(text)) >= min_steps


def split_paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text or "") if p.strip()]


def split_sentences(text: str) -> list[str]:
    """Sentences of a text, line by line (bullet markers dropped); no split after "Dr.", "e.g.", "vs." and the like."""
    lines = (_BULLET.sub("", line) for line in (text or "").splitlines())
    return [sentence for line in lines for sentence in _line_sentences(line)]


def _line_sentences(line: str) -> list[str]:
    pieces = _SENTENCE_END.split(" ".join(line.split()))
    sentences: list[str] = []
    for piece in pieces:
        if sentences and sentences[-1].split()[-1].lower() in _ABBREVIATIONS:
            sentences[-1] = f"{sentences[-1]} {piece}"
        elif piece.strip():
            sentences.append(piece.strip())
    return sentences


def drop_filler(sentence: str) -> str:
    """Remove spoken-style openers ("Okay, so, hmm, ...") and capitalise what is left."""
    core = _FILLER_START.sub("", sentence.strip())
    core = re.sub(r"^let's\s+", "", core, flags=re.IGNORECASE) if len(core.split()) > 4 else core
    return core[:1].upper() + core[1:] if core else sentence.strip()


def short_title(sentence: str, max_words: int = 8) -> str:
    """A heading from a sentence: its first clause when that is long enough, at most ``max_words`` words."""
    text = drop_filler(re.sub(r"^[#*\-\s]+", "", sentence)).rstrip(".!?:;,")
    head = re.split(r"[,;:\u2014]| - ", text, maxsplit=1)[0]
    words = (head if len(head.split()) >= 3 else text).split()
    return " ".join(words[:max_words]).rstrip(",;:")


def strip_preamble(text: str, anchor: str | None = None) -> str:
    """Remove what a chat model wraps around the requested text: code fences, "Sure, here is ..." lines, sign-offs.

    ``anchor`` (a regex, multiline) marks where the requested text must start, e.g. ``^#+\\s*Step\\s*1\\b``; when it
    is found everything before it goes.
    """
    text = _unfence((text or "").strip())
    if anchor:
        found = re.search(anchor, text, re.MULTILINE | re.IGNORECASE)
        if found:
            text = text[found.start():]
    return _drop_wrappers(text)


def _drop_wrappers(text: str) -> str:
    lines = text.split("\n")
    while lines and (not lines[0].strip() or _is_preamble(lines[0].strip())):
        lines.pop(0)
    while lines and (not lines[-1].strip() or _SIGN_OFF.match(lines[-1].strip())):
        lines.pop()
    return "\n".join(lines).strip()


def _is_preamble(line: str) -> bool:
    if _PREAMBLE_LINE.match(line):
        return line.endswith(":") or len(line.split()) <= 20
    return bool(_COURTESY_LINE.match(line)) and len(line.split()) <= 15


def _unfence(text: str) -> str:
    """The inside of a code fence when only wrappers (preamble, sign-off) or little else surround it."""
    fenced = _FENCED.search(text)
    if not fenced:
        return text
    outside = _drop_wrappers(text[:fenced.start()]) + _drop_wrappers(text[fenced.end():])
    if not outside or len(fenced.group(1)) >= 0.5 * len(text):
        return fenced.group(1).strip()
    return text
