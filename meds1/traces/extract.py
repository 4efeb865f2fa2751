"""Trace transformations (``curation.extract``): rewrite each selected row's reasoning trace with an LLM.

``extract`` is one name or an ordered list; each transform's output feeds the next, and every intermediate is kept
so the caller can store ``Complex_CoT_original`` and ``Complex_CoT_<name>`` columns. A transform is a plug-in of
``meds1.plugins.TRACE_TRANSFORMS``: ``fn(rows, client) -> one new trace per row (None: keep the input)``.

- One LLM call per row (most transforms) is a ROW of the table ``meds1.traces.transforms.table``: a
  ``PromptTransform`` (prompt template, where the answer starts, its clean-up, and its offline stand-in).
- Several calls per row (note, cot-step, nejmcr-qa, the purity/style ablations) is one module of
  ``meds1/traces/transforms/`` that uses ``ask``.

A row whose LLM call fails (retries exhausted, blocked, no usable text) is not sent to later transforms and keeps
its input trace, question and response; ``TraceRow.failures`` says why.

Example::

    traces, columns = apply_extracts(rows, ["step", "list"], client)   # columns == {"step": [...], "list": [...]}
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable

from meds1.errors import MedS1Error
from meds1.llm.base import LLMRequest
from meds1.plugins import TRACE_TRANSFORMS
from meds1.traces.prompts import Rule, build_request, stand_in
from meds1.traces.rows import TraceRow
from meds1.traces.steps import strip_preamble

log = logging.getLogger(__name__)

STEP_ONE = r"^[ \t]*#{1,6}[ \t]*Step[ \t]*1\b"

# fn(rows, client) -> one new trace per row (None: the LLM gave nothing usable, keep the input trace)
Transform = Callable[[list[TraceRow], Any], list["str | None"]]


@dataclass
class ExtractResult:
    traces: list[str]                     # final trace per row (the input trace for a row whose call failed)
    intermediates: dict[str, list[str]]   # transform name -> trace after that transform
    questions: list[str]                  # final Question per row (changed only by nejmcr-qa)
    responses: list[str]                  # final Response per row (changed only by nejmcr-qa)
    failures: list[list[str]]             # per row: "<task>: <reason>" of each failed call (empty: none)


def apply_extracts(rows: list[dict], names: list[str], client) -> tuple[list[str], dict[str, list[str]]]:
    """Apply the transforms ``names`` in order to ``rows`` (Question, Complex_CoT, Response); see ``run_extracts``."""
    result = run_extracts(rows, names, client)
    return result.traces, result.intermediates


def run_extracts(rows: list[dict], names, client) -> ExtractResult:
    """Like ``apply_extracts`` but also returns the rows' final Question/Response (nejmcr-qa rewrites them) and
    their failures. A repeated name gets its column as ``name_2``, ``name_3``, ... so no intermediate is lost."""
    names = extract_names(names)
    state = [TraceRow.from_row(row, i) for i, row in enumerate(rows)]
    intermediates: dict[str, list[str]] = {}
    for name in names:
        outputs = TRACE_TRANSFORMS.get(name, key="curation.extract").impl(state, client)
        for row, out in zip(state, outputs):
            row.cot = row.cot if out is None or row.failed else out
        intermediates[_column_key(name, intermediates)] = [row.cot for row in state]
    inputs = [TraceRow.from_row(row, i) for i, row in enumerate(rows)]
    final = [original if row.failed else row for row, original in zip(state, inputs)]
    failed = sum(row.failed for row in state)
    if failed:
        log.warning("extract %s: %d of %d rows met a failed LLM call; they keep their input trace",
                    "+".join(names), failed, len(state))
    return ExtractResult(traces=[r.cot for r in final], intermediates=intermediates,
                         questions=[r.question for r in final], responses=[r.response for r in final],
                         failures=[list(r.failures) for r in state])


def extract_names(value) -> list[str]:
    """``curation.extract`` as a list of known transform names (None/"" -> [])."""
    if value is None or value == "":
        return []
    names = [value] if isinstance(value, str) else list(value)
    for name in names:
        if not isinstance(name, str):
            raise MedS1Error(f"transform names must be strings, got {name!r}", key="curation.extract")
        TRACE_TRANSFORMS.get(name, key="curation.extract")  # unknown name -> one-line error with "did you mean"
    return names


def _column_key(name: str, taken: dict) -> str:
    key, n = name, 1
    while key in taken:
        n += 1
        key = f"{name}_{n}"
    return key


# ---------------------------------------------------------------------------------------------- asking the LLM

def run_texts(client, requests: list[LLMRequest], rows: list[TraceRow]) -> list[str | None]:
    """The text of each answer, in request order; a failed call gives None and is recorded on its row."""
    if not requests:
        return []
    texts: list[str | None] = []
    for request, row, result in zip(requests, rows, client.run_many(requests, keep_going=True)):
        if result is None or getattr(result, "error", None):
            row.failures.append(f"{request.task}: {getattr(result, 'error', None) or 'no answer'}")
            texts.append(None)
        else:
            texts.append(result.text or "")
    return texts


def ask(client, template: str, rows: list[TraceRow], *, offline: Callable, anchor: str | None = None,
        needs_cot: bool = True, extra: list[dict] | None = None, params: dict | None = None,
        post: Callable[[str], str] | None = None) -> list[str | None]:
    """One request per row with template ``template`` (task ``extract:<template>``): the cleaned text, or None.

    Rows that already failed are not sent, nor rows with an empty trace when ``needs_cot`` (nothing to rewrite).
    A reply with no usable text after clean-up counts as a failure of that row.
    """
    todo = [i for i, row in enumerate(rows) if not row.failed and (row.cot.strip() or not needs_cot)]
    requests = []
    for i in todo:
        row, more = rows[i], (extra[i] if extra else {})
        values = {"question": row.question, "cot": row.cot, "answer": row.response, **more}
        requests.append(build_request(f"extract:{template}", template, values, {**row.payload(), **more},
                                      offline=offline, params=params))
    outputs: list[str | None] = [None] * len(rows)
    for i, request, text in zip(todo, requests, run_texts(client, requests, [rows[i] for i in todo])):
        cleaned = strip_preamble(text, anchor) if text is not None else None
        if text is not None and not cleaned:
            rows[i].failures.append(f"{request.task}: no usable text in the reply")
        outputs[i] = (post(cleaned) if post else cleaned) if cleaned else None
    return outputs


def with_cot(rows: list[TraceRow], traces: list[str | None]) -> list[TraceRow]:
    """Copies of ``rows`` whose trace is ``traces`` (for transforms made of several LLM calls); failures shared."""
    return [dataclasses.replace(row, cot=row.cot if t is None else t, failures=row.failures)
            for row, t in zip(rows, traces)]


@dataclass(frozen=True)
class PromptTransform:
    """A transform made of one LLM call per row: a row of the table in ``meds1.traces.transforms.table``."""

    prompt: str                              # template name under resources/prompts/
    rule: Rule                               # the offline stand-in: payload -> text
    describe: str                            # what the stand-in does (meta["offline_rule"])
    anchor: str | None = None                # regex where the requested text starts (anything before it goes)
    post: Callable[[str], str] | None = None  # clean-up of the LLM's text
    needs_cot: bool = True                   # False: built from question + answer only

    def __call__(self, rows: list[TraceRow], client) -> list[str | None]:
        return ask(client, self.prompt, rows, offline=stand_in(self.rule, self.describe), anchor=self.anchor,
                   needs_cot=self.needs_cot, post=self.post)
