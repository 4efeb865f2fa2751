"""One training row as the trace code sees it: question, trace, response, answer options; and the failures its LLM
calls met on the way (a row with a failure keeps its input trace and is marked in rows.parquet)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from meds1.errors import MedS1Error
from meds1.traces.steps import ANSWER_SENTENCE


@dataclass
class TraceRow:
    """``question``/``response`` may be rewritten (nejmcr-qa); ``failures`` collects "<task>: <reason>" lines."""

    id: str
    question: str
    cot: str
    response: str
    options: dict[str, str] = field(default_factory=dict)
    answer_idx: str | None = None
    answer: str | None = None  # text of the correct option, when known
    failures: list[str] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: dict, index: int) -> "TraceRow":
        row_id = str(row.get("id", index))
        for column in ("Question", "Complex_CoT", "Response"):
            if column not in row:
                raise MedS1Error(f"row '{row_id}' has no '{column}' column (columns: {sorted(row)})", key=column)
        question, cot, response = (text_of(row[c]) for c in ("Question", "Complex_CoT", "Response"))
        options = clean_options(row.get("options")) or options_from_question(question)
        answer_idx = text_of(row.get("answer_idx")).strip().upper() or answer_letter(response)
        return cls(id=row_id, question=question, cot=cot, response=response, options=options,
                   answer_idx=answer_idx, answer=text_of(row.get("answer")) or options.get(answer_idx or ""))

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def payload(self) -> dict:
        """The structured inputs the offline stand-ins read (never sent to a real model)."""
        return {"id": self.id, "question": self.question, "cot": self.cot, "answer": self.response,
                "options": dict(self.options), "answer_idx": self.answer_idx, "answer_text": self.answer}


def text_of(value) -> str:
    """A cell as text: None and pandas' NaN (missing values) become ""."""
    return value if isinstance(value, str) else ""


def clean_options(options) -> dict[str, str]:
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


def answer_letter(response: str) -> str | None:
    found = ANSWER_SENTENCE.findall(response)
    return found[-1].upper() if found else None
