"""``note`` (two calls: the LLM picks SOAP/SOAPIE/ISBAR/POMR, then writes that note) and the named notes ``soap``,
``soapie``, ``isbar``, ``pomr`` (one call with the format fixed). Sections: ``resources/prompts/note-formats.json``."""
from __future__ import annotations

import functools
import json
import re

from meds1.plugins import TRACE_TRANSFORMS
from meds1.traces.extract import ask
from meds1.traces.prompts import PROMPTS_DIR, stand_in
from meds1.traces.rows import TraceRow
from meds1.traces.textrules import statements, units

SELECT_PARAMS = {"temperature": 0.0, "max_output_tokens": 10}  # one word back


@functools.cache
def note_formats() -> dict[str, dict]:
    data = json.loads((PROMPTS_DIR / "note-formats.json").read_text(encoding="utf-8"))
    return {name: spec for name, spec in data.items() if not name.startswith("_")}


def parse_note_format(text: str | None) -> str:
    """The format the LLM named; longest names first so SOAPIE is not read as SOAP. Default SOAP."""
    for name in sorted(note_formats(), key=len, reverse=True):
        if re.search(rf"\b{name}\b", (text or "").upper()):
            return name
    return "SOAP"


def normalise_note(text: str) -> str:
    text = re.sub(r"(?m)^#[ \t]+", "## ", text)
    return re.sub(r"\n\s*\n\s*\n+", "\n\n", text)


# ---- offline stand-ins

def offline_note_select(p: dict) -> str:
    text = f"{p['question']} {p['cot']}".lower()
    if re.search(r"\b(?:handover|hand-off|handoff|escalat|on call|sbar)\b", text):
        return "ISBAR"
    treated = re.search(r"\b(?:administered|was given|was started|after treatment)\b", text)
    if treated and re.search(r"\brespon|improv", text):
        return "SOAPIE"
    if len(re.findall(r"\b(?:problem|comorbid|also has|another issue)\b", text)) >= 3:
        return "POMR"
    return "SOAP"


def offline_note(p: dict) -> str:
    spec = note_formats()[p["note_format"]]
    placed: dict[str, list[str]] = {name: [] for name in spec["sections"]}
    for sentence in (s for _, text in units(p["cot"]) for s in statements(text, 4)):
        placed[_best_section(sentence, spec)].append(sentence)
    blocks = []
    for name, sentences in placed.items():
        bullets = "\n".join(f"- {s}" for s in sentences) or "- Not documented in the reasoning."
        blocks.append(f"## {name}\n{bullets}")
    return "\n\n".join(blocks)


def _best_section(sentence: str, spec: dict) -> str:
    lowered = sentence.lower()
    scores = {name: sum(k in lowered for k in section["keywords"]) for name, section in spec["sections"].items()}
    best = max(scores, key=scores.get)
    return best if scores[best] else spec["default"]


SELECT_OFFLINE = stand_in(offline_note_select, "keyword heuristic: handover -> ISBAR, treatment+response -> SOAPIE, "
                                               "several problems -> POMR, else SOAP")
NOTE_OFFLINE = stand_in(offline_note, "each sentence placed in the note section whose keywords it matches best")


# ---- the transforms

def write_note(rows: list[TraceRow], client, formats: list[str]) -> list[str | None]:
    extra = []
    for fmt in formats:
        sections = note_formats()[fmt]["sections"]
        listing = "\n".join(f"## {name}\n- {spec['describe']}" for name, spec in sections.items())
        extra.append({"note_format": fmt, "note_sections": listing})
    return ask(client, "note", rows, offline=NOTE_OFFLINE, anchor=r"^#{1,3}[ \t]+\S", extra=extra,
               post=normalise_note)


@TRACE_TRANSFORMS.register("note", needs={"llm"})
def extract_note(rows, client):
    """Two calls: the LLM picks the note format that fits, then writes the note."""
    picks = ask(client, "note-select", rows, offline=SELECT_OFFLINE, params=SELECT_PARAMS)
    return write_note(rows, client, [parse_note_format(p) for p in picks])


def _named_note(fmt: str):
    def extract(rows, client):
        return write_note(rows, client, [fmt] * len(rows))
    extract.__doc__ = f"One call: the trace as a {fmt} note."
    return extract


for _fmt in ("SOAP", "SOAPIE", "ISBAR", "POMR"):
    TRACE_TRANSFORMS.register(_fmt.lower(), needs={"llm"})(_named_note(_fmt))
