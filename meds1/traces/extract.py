"""Trace transformations (``curation.extract``): rewrite each selected row's reasoning trace with an LLM.

``extract`` is one name or an ordered list; each transform's output feeds the next, and every intermediate is kept so
the caller can store ``Complex_CoT_original`` and ``Complex_CoT_<name>`` columns. Each transform is a plug-in in
``EXTRACTS``; its prompt is data (``meds1/resources/prompts/<name>.txt``). Requests go through ``client.run_many``;
the offline provider answers them with the deterministic rules in ``meds1.traces.offline``.

Example::

    traces, columns = apply_extracts(rows, ["step", "list"], client)   # columns == {"step": [...], "list": [...]}
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import meds1.traces.offline  # noqa: F401  (registers the offline answers for every task built here)
from meds1.errors import MedS1Error
from meds1.llm.base import LLMRequest
from meds1.plugins import TRACE_TRANSFORMS
from meds1.traces.steps import ANSWER_SENTENCE, parse_steps, render_steps, strip_preamble

log = logging.getLogger(__name__)

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "resources" / "prompts"
TRANSFORM_PARAMS = {"temperature": 0.0, "max_output_tokens": 8192}
STEP_ONE = r"^[ \t]*#{1,6}[ \t]*Step[ \t]*1\b"

# fn(rows, client) -> one new trace per row (None: the LLM gave nothing usable, keep the input trace)
Transform = Callable[[list["TraceRow"], Any], list["str | None"]]
EXTRACTS = TRACE_TRANSFORMS


@dataclass
class TraceRow:
    """One row as the transforms see it; ``question``/``response`` may be rewritten (nejmcr-qa)."""

    id: str
    question: str
    cot: str
    response: str
    options: dict[str, str] = field(default_factory=dict)
    answer_idx: str | None = None
    answer: str | None = None  # text of the correct option, when known

    @classmethod
    def from_row(cls, row: dict, index: int) -> "TraceRow":
        row_id = str(row.get("id", index))
        for column in ("Question", "Complex_CoT", "Response"):
            if column not in row:
                raise MedS1Error(f"row '{row_id}' has no '{column}' column (columns: {sorted(row)})", key=column)
        question, cot, response = (_text(row[c]) for c in ("Question", "Complex_CoT", "Response"))
        options = _clean_options(row.get("options")) or options_from_question(question)
        answer_idx = _text(row.get("answer_idx")).strip().upper() or _answer_letter(response)
        return cls(id=row_id, question=question, cot=cot, response=response, options=options,
                   answer_idx=answer_idx, answer=_text(row.get("answer")) or options.get(answer_idx or ""))

    def payload(self) -> dict:
        """The structured inputs the offline provider reads (never sent to a real model)."""
        return {"id": self.id, "question": self.question, "cot": self.cot, "answer": self.response,
                "options": dict(self.options), "answer_idx": self.answer_idx, "answer_text": self.answer}


@dataclass
class ExtractResult:
    traces: list[str]                     # final trace per row
    intermediates: dict[str, list[str]]   # transform name -> trace after that transform
    questions: list[str]                  # final Question per row (changed only by nejmcr-qa)
    responses: list[str]                  # final Response per row (changed only by nejmcr-qa)


def apply_extracts(rows: list[dict], names: list[str], client) -> tuple[list[str], dict[str, list[str]]]:
    """Apply the transforms ``names`` in order to ``rows`` (Question, Complex_CoT, Response); see ``run_extracts``."""
    result = run_extracts(rows, names, client)
    return result.traces, result.intermediates


def run_extracts(rows: list[dict], names, client) -> ExtractResult:
    """Like ``apply_extracts`` but also returns the rows' final Question/Response (nejmcr-qa rewrites them).

    A repeated name gets its column as ``name_2``, ``name_3``, ... so no intermediate is lost.
    """
    names = extract_names(names)
    state = [TraceRow.from_row(row, i) for i, row in enumerate(rows)]
    intermediates: dict[str, list[str]] = {}
    for name in names:
        outputs = EXTRACTS.get(name, key="curation.extract").impl(state, client)
        kept = sum(out is None for out in outputs)
        if kept:
            log.warning("extract %s: %d of %d rows got no usable LLM output; their input trace is kept",
                        name, kept, len(state))
        for row, out in zip(state, outputs):
            row.cot = row.cot if out is None else out
        intermediates[_column_key(name, intermediates)] = [row.cot for row in state]
    return ExtractResult(traces=[r.cot for r in state], intermediates=intermediates,
                         questions=[r.question for r in state], responses=[r.response for r in state])


def extract_names(value) -> list[str]:
    """``curation.extract`` as a list of known transform names (None/"" -> [])."""
    if value is None or value == "":
        return []
    names = [value] if isinstance(value, str) else list(value)
    for name in names:
        if not isinstance(name, str):
            raise MedS1Error(f"transform names must be strings, got {name!r}", key="curation.extract")
        EXTRACTS.get(name, key="curation.extract")  # unknown name -> one-line error with "did you mean"
    return names


def _column_key(name: str, taken: dict) -> str:
    key, n = name, 1
    while key in taken:
        n += 1
        key = f"{name}_{n}"
    return key


# ---------------------------------------------------------------------------------------------- prompts and requests

@functools.cache
def load_prompt(name: str) -> str:
    path = PROMPTS_DIR / f"{name}.txt"
    if not path.exists():
        raise MedS1Error(f"no prompt template '{name}'", file=str(path))
    return path.read_text(encoding="utf-8")


def render_prompt(name: str, **values: Any) -> str:
    """Fill the ``{placeholder}``s of template ``name`` (one pass, so braces inside the values are left alone)."""
    template = load_prompt(name)
    missing = set(re.findall(r"\{([a-z_]+)\}", template)) - set(values)
    if missing:
        raise MedS1Error(f"prompt template '{name}' needs {sorted(missing)}", file=str(PROMPTS_DIR / f"{name}.txt"))
    return re.sub(r"\{([a-z_]+)\}", lambda m: str(values[m.group(1)]), template)


def build_request(task: str, template: str, values: dict, payload: dict, params: dict | None = None) -> LLMRequest:
    return LLMRequest(task=task, prompt=render_prompt(template, **values), payload=payload,
                      params=dict(params or TRANSFORM_PARAMS))


def run_texts(client, requests: list[LLMRequest]) -> list[str]:
    """The text of each answer ('' for a failed call), in request order."""
    if not requests:
        return []
    return [(result.text or "") if result is not None else "" for result in client.run_many(requests)]


def ask(client, template: str, rows: list[TraceRow], *, anchor: str | None = None, needs_cot: bool = True,
        extra: list[dict] | None = None, params: dict | None = None) -> list[str | None]:
    """One request per row with template ``template`` (task ``extract:<template>``); cleaned text or None.

    Rows with an empty trace are not sent when ``needs_cot`` (there is nothing to rewrite).
    """
    todo = [i for i, row in enumerate(rows) if row.cot.strip() or not needs_cot]
    requests = []
    for i in todo:
        row, more = rows[i], (extra[i] if extra else {})
        values = {"question": row.question, "cot": row.cot, "answer": row.response, **more}
        requests.append(build_request(f"extract:{template}", template, values, {**row.payload(), **more}, params))
    outputs: list[str | None] = [None] * len(rows)
    for i, text in zip(todo, run_texts(client, requests)):
        outputs[i] = strip_preamble(text, anchor) or None
    return outputs


def _post(outputs: list[str | None], fn: Callable[[str], str]) -> list[str | None]:
    return [fn(out) if out else out for out in outputs]


def _with_cot(rows: list[TraceRow], traces: list[str | None]) -> list[TraceRow]:
    """Copies of ``rows`` whose trace is ``traces`` (for transforms made of several LLM calls)."""
    return [dataclasses.replace(row, cot=row.cot if t is None else t) for row, t in zip(rows, traces)]


# ---------------------------------------------------------------------------------------------- output clean-up

def normalise_steps(text: str) -> str:
    steps = parse_steps(text)
    return render_steps(steps) if steps else text


def one_sentence(text: str) -> str:
    sentence = " ".join(text.split()).strip('"')
    if len(sentence) > 700:
        sentence = sentence[:697].rstrip() + "..."
    return sentence if sentence.endswith((".", "!", "?")) else sentence + "."


def as_bullets(text: str) -> str:
    lines = [re.sub(r"^(?:[-*\u2022]|\d+[.)])\s*", "", line.strip()) for line in text.splitlines()]
    return "\n".join(f"- {line}" for line in lines if line)


def normalise_qa(text: str) -> str:
    return re.sub(r"(?m)^[ \t]*\**[ \t]*(Q|A)[ \t]*\d*[ \t]*[:.][ \t]*\**[ \t]*", r"\1: ", text)


def normalise_arrows(text: str) -> str:
    text = re.sub(r"(?m)^([ \t]*)-+>[ \t]*", r"\1-> ", text)   # keep the indentation that encodes depth
    return re.sub(r"(?<=\S)[ \t]*-+>[ \t]*", " -> ", text)


def normalise_note(text: str) -> str:
    text = re.sub(r"(?m)^#[ \t]+", "## ", text)
    return re.sub(r"\n\s*\n\s*\n+", "\n\n", text)


def normalise_evidence(text: str) -> str:
    text = re.sub(r"(?im)^[ \t]*(?:#+[ \t]*)?\**[ \t]*evidence[ \t]*:?[ \t]*\**[ \t]*:?[ \t]*", "**Evidence:** ", text)
    return normalise_steps(text)


def parse_question_answer(text: str | None) -> tuple[str, str] | None:
    found = re.search(r"Question\s*:\s*(.+?)\s*\n\s*\**Answer\s*:\**\s*(.+)", text or "", re.DOTALL | re.IGNORECASE)
    return (found.group(1).strip(), found.group(2).strip()) if found else None


# ---------------------------------------------------------------------------------------------- the transforms

@EXTRACTS.register("none")
def extract_none(rows, client):
    return ["" for _ in rows]  # no thinking section: the format layer then omits it


@EXTRACTS.register("nejmcr")
def extract_nejmcr(rows, client):
    return [row.cot for row in rows]  # the case report itself is the reasoning; no LLM call


@EXTRACTS.register("step", needs={"llm", "makes_steps"})
def extract_step(rows, client):
    return _post(ask(client, "step", rows, anchor=STEP_ONE), normalise_steps)


@EXTRACTS.register("1-sentence", needs={"llm"})
def extract_one_sentence(rows, client):
    return _post(ask(client, "1-sentence", rows), one_sentence)


@EXTRACTS.register("list", needs={"llm"})
def extract_list(rows, client):
    return _post(ask(client, "list", rows, anchor=r"^[ \t]*(?:[-*\u2022]|\d+[.)])[ \t]"), as_bullets)


@EXTRACTS.register("markdown", needs={"llm"})
def extract_markdown(rows, client):
    return ask(client, "markdown", rows)


@EXTRACTS.register("step-evidence", needs={"llm", "makes_steps"})
def extract_step_evidence(rows, client):
    return _post(ask(client, "step-evidence", rows, anchor=STEP_ONE), normalise_evidence)


@EXTRACTS.register("decision-tree", needs={"llm"})
def extract_decision_tree(rows, client):
    return _post(ask(client, "decision-tree", rows, anchor=r"^[^\n]*-+>"), normalise_arrows)


@EXTRACTS.register("qa", needs={"llm"})
def extract_qa(rows, client):
    return _post(ask(client, "qa", rows, anchor=r"^[ \t]*\**[ \t]*Q[ \t]*\d*[ \t]*[:.]"), normalise_qa)


@EXTRACTS.register("socratic", needs={"llm"})
def extract_socratic(rows, client):
    return _post(ask(client, "socratic", rows), lambda t: re.sub(r"(?m)^\*\*([^*\n:]+):\*\*", r"\1:", t))


@EXTRACTS.register("cot", needs={"llm"})
def extract_cot(rows, client):
    return ask(client, "cot", rows, needs_cot=False)  # built from question + answer only


@EXTRACTS.register("cot-step", needs={"llm", "makes_steps"})
def extract_cot_step(rows, client):
    return extract_step(_with_cot(rows, extract_cot(rows, client)), client)


# ---- clinical notes: the LLM picks a format (note) or the experiment names one (soap, soapie, isbar, pomr)

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


def write_note(rows: list[TraceRow], client, formats: list[str]) -> list[str | None]:
    extra = []
    for fmt in formats:
        sections = note_formats()[fmt]["sections"]
        listing = "\n".join(f"## {name}\n- {spec['describe']}" for name, spec in sections.items())
        extra.append({"note_format": fmt, "note_sections": listing})
    return _post(ask(client, "note", rows, anchor=r"^#{1,3}[ \t]+\S", extra=extra), normalise_note)


@EXTRACTS.register("note", needs={"llm"})
def extract_note(rows, client):
    picks = ask(client, "note-select", rows, params={"temperature": 0.0, "max_output_tokens": 10})
    return write_note(rows, client, [parse_note_format(p) for p in picks])


def _named_note(fmt: str) -> Transform:
    return lambda rows, client: write_note(rows, client, [fmt] * len(rows))


for _fmt in ("SOAP", "SOAPIE", "ISBAR", "POMR"):
    EXTRACTS.register(_fmt.lower(), needs={"llm"})(_named_note(_fmt))


# ---- the nejmcr family: for case-report-like datasets (the "trace" is a case report)

@EXTRACTS.register("nejmcr-transform", needs={"llm"})
def extract_nejmcr_transform(rows, client):
    return ask(client, "nejmcr-transform", rows)


@EXTRACTS.register("nejmcr-qa", needs={"llm"})
def extract_nejmcr_qa(rows, client):
    """Rewrites the row's Question and Response as an exam question + answer; the case report stays the trace."""
    for row, out in zip(rows, ask(client, "nejmcr-qa", rows, anchor=r"^[ \t]*\**Question\s*:")):
        parsed = parse_question_answer(out)
        if parsed:
            row.question, row.response = parsed
    return [row.cot for row in rows]


@EXTRACTS.register("nejmcr-reason", needs={"llm"})
def extract_nejmcr_reason(rows, client):
    return ask(client, "nejmcr-reason", rows)


@EXTRACTS.register("nejmcr-clean", needs={"llm"})
def extract_nejmcr_clean(rows, client):
    return ask(client, "nejmcr-clean", rows)


# Ablations of nejmcr-reason: each level adds requirements to the previous one; purity and style add a clean-up pass.
REASON_ABLATION_CLEANUP = {"extraction": None, "structure": None, "depth": None,
                           "purity": "nejmcr-clean", "style": "nejmcr-clean-style"}


def _reason_ablation(level: str) -> Transform:
    def extract(rows, client):
        reasoned = ask(client, f"nejmcr-reason-{level}", rows)
        cleanup = REASON_ABLATION_CLEANUP[level]
        if not cleanup:
            return reasoned
        cleaned = ask(client, cleanup, _with_cot(rows, reasoned))
        return [c if c is not None else r for c, r in zip(cleaned, reasoned)]
    return extract


for _level in REASON_ABLATION_CLEANUP:
    EXTRACTS.register(f"nejmcr-reason-{_level}", needs={"llm"})(_reason_ablation(_level))


# ---------------------------------------------------------------------------------------------- row helpers

def _text(value) -> str:
    """A cell as text: None and pandas' NaN (missing values) become ""."""
    return value if isinstance(value, str) else ""


def _clean_options(options) -> dict[str, str]:
    """Options as {letter: text}; accepts a dict, a JSON string, or a parquet struct with None for absent letters."""
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except json.JSONDecodeError:
            return {}
    if not isinstance(options, dict):
        return {}
    return {str(k).strip().upper(): str(v) for k, v in sorted(options.items()) if v not in (None, "")}


def options_from_question(question: str) -> dict[str, str]:
    """"A. text" lines in the question (the canonical MCQ prompt), when they start at A and run in order."""
    found = dict(re.findall(r"(?m)^[ \t]*\(?([A-J])[.):][ \t]+(.+?)[ \t]*$", question))
    letters = sorted(found)
    if len(letters) >= 2 and letters == [chr(ord("A") + i) for i in range(len(letters))]:
        return {k: found[k] for k in letters}
    return {}


def _answer_letter(response: str) -> str | None:
    found = ANSWER_SENTENCE.findall(response)
    return found[-1].upper() if found else None
