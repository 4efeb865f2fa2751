"""Restore (``curation.restore``): an LLM rebuilds a full trace from a perturbed one.

The rebuild sees the row's (possibly perturbed) Response and must lead to it, so reasoning and answer stay
consistent after the wrong-answer perturbation. A rebuilt trace is accepted only if it has at least 2 steps and is
longer than the perturbed trace (a restore that shrinks the trace did not restore anything); otherwise the row falls
back to its unperturbed trace AND its unperturbed Response. Each row records which happened.

Example::

    traces, responses, info = restore_traces(rows, perturbed, unperturbed, client, responses, original_responses)
    # info[i]["restore"]: "restored" | "fallback" (unperturbed trace and response used, with "reason") | "unchanged"
"""
from __future__ import annotations

from meds1.errors import MedS1Error
from meds1.traces.extract import STEP_ONE, run_texts
from meds1.traces.prompts import build_request, stand_in
from meds1.traces.rows import TraceRow
from meds1.traces.steps import Step, normalise_steps, parse_steps, render_steps, short_title, strip_preamble
from meds1.traces.textrules import key_sentence, lower_first, titled_units, units

MIN_RESTORED_STEPS = 2


def offline_restore(p: dict) -> str:
    pieces = titled_units(p["cot"])
    if len(pieces) == 1:
        pieces = [(short_title(key_sentence(t)) or "Reasoning", t) for _, t in units(" ".join(pieces[0][1].split()))]
    steps = [Step(title, text) for title, text in pieces]
    if steps:
        recap = "; ".join(lower_first(s.title) for s in steps)
        steps.append(Step("Summary of the reasoning", f"Putting the steps together: {recap}."))
    return render_steps(steps)


OFFLINE = stand_in(offline_restore, "steps kept in order, a lone long step split into sentence groups, "
                                    "a summary step appended")


def restore_traces(rows: list[dict], perturbed: list[str], unperturbed: list[str], client,
                   responses: list[str] | None = None, original_responses: list[str] | None = None
                   ) -> tuple[list[str], list[str], list[dict]]:
    """Rebuild each perturbed trace toward its (perturbed) response; rows the perturbation left alone stay as they
    are ("unchanged"). Returns (traces, responses, info)."""
    if not len(rows) == len(perturbed) == len(unperturbed):
        raise MedS1Error(f"{len(rows)} rows, {len(perturbed)} perturbed and {len(unperturbed)} unperturbed traces",
                         key="curation.restore")
    state = [TraceRow.from_row(row, i) for i, row in enumerate(rows)]
    responses = list(responses or [row.response for row in state])
    original_responses = list(original_responses or responses)
    todo = [i for i in range(len(rows)) if perturbed[i].strip() and perturbed[i] != unperturbed[i]]
    requests = [build_request("restore", "restore", {"question": state[i].question, "cot": perturbed[i],
                                                     "answer": responses[i]},
                              {**state[i].payload(), "cot": perturbed[i], "answer": responses[i]}, offline=OFFLINE)
                for i in todo]
    traces, info = list(perturbed), [{"restore": "unchanged"} for _ in rows]
    for i, text in zip(todo, run_texts(client, requests, [state[i] for i in todo])):
        candidate = normalise_steps(strip_preamble(text, STEP_ONE)) if text is not None else ""
        problem = "the LLM call failed" if text is None else why_rejected(candidate, perturbed[i])
        if problem:  # back to the unperturbed row: its trace and the response that goes with it
            traces[i], responses[i] = unperturbed[i], original_responses[i]
            info[i] = {"restore": "fallback", "reason": problem}
        else:
            traces[i], info[i] = candidate, {"restore": "restored", "steps": len(parse_steps(candidate))}
        if state[i].failures:
            info[i]["llm_failures"] = list(state[i].failures)
    return traces, responses, info


def why_rejected(candidate: str, perturbed: str) -> str | None:
    n_steps = len(parse_steps(candidate))
    if n_steps < MIN_RESTORED_STEPS:
        return f"{n_steps} step(s) < {MIN_RESTORED_STEPS}"
    if len(candidate) <= len(perturbed):
        return f"not longer than the perturbed trace ({len(candidate)} <= {len(perturbed)} chars)"
    return None
