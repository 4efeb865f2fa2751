"""The curate stage's trace pipeline for selected rows: transforms in order -> step format -> perturbation -> restore.

Example (inside the curate script, after selection)::

    out = transform_traces(rows, spec["curation"], client, seed=spec["seed"])
    # out.traces / out.questions / out.responses replace Complex_CoT / Question / Response;
    # out.columns go to rows.parquet (Complex_CoT_original, Complex_CoT_<transform>, Complex_CoT_perturbed, ...)
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from meds1.errors import MedS1Error
from meds1.plugins import TRACE_TRANSFORMS
from meds1.traces.extract import extract_names, run_extracts
from meds1.traces.perturb import apply_perturbation
from meds1.traces.restore import restore_traces


@dataclass
class TraceOutput:
    traces: list[str]            # final Complex_CoT per row
    questions: list[str]         # final Question per row
    responses: list[str]         # final Response per row
    columns: dict[str, list]     # extra per-row columns for rows.parquet (JSON strings for structured info)


def plan_transforms(curation: dict) -> list[str]:
    """``curation.extract`` as a list, with "step" appended when a perturbation needs step format and lacks it."""
    names = extract_names(curation.get("extract"))
    if curation.get("perturbation") and (not names or "makes_steps" not in TRACE_TRANSFORMS.get(names[-1]).needs):
        names.append("step")
    return names


def transform_traces(rows: list[dict], curation: dict, client, seed: int) -> TraceOutput:
    perturbation, restore = curation.get("perturbation"), bool(curation.get("restore"))
    if restore and not perturbation:
        raise MedS1Error("restore rebuilds perturbed traces, but no perturbation is configured", key="curation.restore")
    extracted = run_extracts(rows, plan_transforms(curation), client)
    columns: dict[str, list] = {"Complex_CoT_original": [row["Complex_CoT"] for row in rows]}
    columns.update({f"Complex_CoT_{name}": traces for name, traces in extracted.intermediates.items()})
    traces, responses = extracted.traces, extracted.responses
    if perturbation:
        current = [dict(row, Question=q, Response=r) for row, q, r in zip(rows, extracted.questions, responses)]
        perturbed, responses, info = apply_perturbation(current, traces, perturbation, client, seed)
        columns["Complex_CoT_perturbed"] = perturbed
        columns["perturbation_info"] = [json.dumps(x, sort_keys=True) for x in info]
        unperturbed, traces = traces, perturbed
        if restore:
            traces, restored = restore_traces(current, perturbed, unperturbed, client)
            columns["Complex_CoT_restored"] = traces
            columns["restore_status"] = [x["restore"] for x in restored]
            columns["restore_info"] = [json.dumps(x, sort_keys=True) for x in restored]
    _keep_if_changed(columns, "Question_original", [row["Question"] for row in rows], extracted.questions)
    _keep_if_changed(columns, "Response_original", [row["Response"] for row in rows], responses)
    return TraceOutput(traces=traces, questions=extracted.questions, responses=responses, columns=columns)


def _keep_if_changed(columns: dict, name: str, before: list[str], after: list[str]) -> None:
    if before != after:
        columns[name] = before
