"""``nejmcr-qa``: from a case report, write a hard free-response exam question and its answer. It replaces the row's
Question and Response; the case report stays the trace."""
from __future__ import annotations

import re

from meds1.plugins import TRACE_TRANSFORMS
from meds1.traces.extract import ask
from meds1.traces.prompts import stand_in
from meds1.traces.textrules import key_sentence


def parse_question_answer(text: str | None) -> tuple[str, str] | None:
    found = re.search(r"Question\s*:\s*(.+?)\s*\n\s*\**Answer\s*:\**\s*(.+)", text or "", re.DOTALL | re.IGNORECASE)
    return (found.group(1).strip(), found.group(2).strip()) if found else None


def offline_nejmcr_qa(p: dict) -> str:
    question = re.sub(r"(?m)^[ \t]*\(?[A-J][.):][ \t]+.*$\n?", "", p["question"]).strip()
    answer = p.get("answer_text") or key_sentence(p["answer"]) or p["answer"].strip()
    return f"Question: {' '.join(question.split())}\nAnswer: {answer}"


OFFLINE = stand_in(offline_nejmcr_qa, "question without answer choices + the correct answer's text")


@TRACE_TRANSFORMS.register("nejmcr-qa", needs={"llm"})
def extract_nejmcr_qa(rows, client):
    """Rewrites the row's Question and Response as an exam question + answer; the case report stays the trace."""
    for row, out in zip(rows, ask(client, "nejmcr-qa", rows, offline=OFFLINE, anchor=r"^[ \t]*\**Question\s*:")):
        parsed = parse_question_answer(out)
        if parsed:
            row.question, row.response = parsed
        elif out is not None:
            row.failures.append("extract:nejmcr-qa: no 'Question: ... Answer: ...' in the reply")
    return [row.cot for row in rows]
