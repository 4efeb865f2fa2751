"""Restore (``curation.restore``): an LLM rebuilds a full trace from a perturbed one.

A rebuilt trace is accepted only if it has at least 2 steps and is longer than the perturbed trace (a restore that
shrinks the trace did not restore anything); otherwise the row falls back to its unperturbed trace. Each row records
which happened.

Example::

    traces, info = restore_traces(rows, perturbed, unperturbed, client)
    # info[i]["restore"]: "restored" | "fallback" (unperturbed trace used, with "reason") | "unchanged"
"""
from __future__ import annotations

from meds1.errors import MedS1Error
from meds1.traces.extract import STEP_ONE, TRANSFORM_PARAMS, TraceRow, build_request, normalise_steps, run_texts
from meds1.traces.steps import parse_steps, strip_preamble

MIN_RESTORED_STEPS = 2


def restore_traces(rows: list[dict], perturbed: list[str], unperturbed: list[str], client
                   ) -> tuple[list[str], list[dict]]:
    """Rebuild each perturbed trace; rows whose perturbation changed nothing are left alone ("unchanged")."""
    if not len(rows) == len(perturbed) == len(unperturbed):
        raise MedS1Error(f"{len(rows)} rows, {len(perturbed)} perturbed and {len(unperturbed)} unperturbed traces",
                         key="curation.restore")
    state = [TraceRow.from_row(row, i) for i, row in enumerate(rows)]
    todo = [i for i in range(len(rows)) if perturbed[i].strip() and perturbed[i] != unperturbed[i]]
    requests = [build_request("restore", "restore", {"question": state[i].question, "cot": perturbed[i]},
                              {**state[i].payload(), "cot": perturbed[i]}, TRANSFORM_PARAMS) for i in todo]
    traces = list(perturbed)
    info = [{"restore": "unchanged"} for _ in rows]
    for i, text in zip(todo, run_texts(client, requests)):
        candidate = normalise_steps(strip_preamble(text, STEP_ONE))
        problem = why_rejected(candidate, perturbed[i])
        if problem:
            traces[i], info[i] = unperturbed[i], {"restore": "fallback", "reason": problem}
        else:
            traces[i], info[i] = candidate, {"restore": "restored", "steps": len(parse_steps(candidate))}
    return traces, info


def why_rejected(candidate: str, perturbed: str) -> str | None:
    n_steps = len(parse_steps(candidate))
    if n_steps < MIN_RESTORED_STEPS:
        return f"{n_steps} step(s) < {MIN_RESTORED_STEPS}"
    if len(candidate) <= len(perturbed):
        return f"not longer than the perturbed trace ({len(candidate)} <= {len(perturbed)} chars)"
    return None
