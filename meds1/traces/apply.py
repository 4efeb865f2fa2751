"""The curate stage's trace pipeline for selected rows: transforms in order -> step format -> perturbation -> restore.

Example (inside the curate script, after selection)::

    out = transform_traces(rows, spec["curation"], client, seed=spec["seed"])
    # out.traces / out.questions / out.responses replace Complex_CoT / Question / Response;
    # out.columns go to rows.parquet (Complex_CoT_original, Complex_CoT_<transform>, Complex_CoT_perturbed,
    #   llm_failed: JSON list of "<task>: <reason>" for a row whose LLM calls failed, else None);
    # out.counts go to stats.json ("traces")

A row whose LLM call fails (retries exhausted, blocked, nothing usable) keeps its input trace, question and response
and is marked in ``llm_failed``; the job fails only when more than ``llm.max_failed_share`` of the rows failed.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from meds1.errors import MedS1Error
from meds1.llm.settings import DEFAULT_MAX_FAILED_SHARE
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
    counts: dict = field(default_factory=dict)  # for stats.json: failed rows, what the perturbation changed


def plan_transforms(curation: dict) -> list[str]:
    """``curation.extract`` as a list, with the step transform (the plug-in marked ``default_for_steps``) appended
    when a perturbation needs step format and the chain does not end in a transform that makes steps."""
    names = extract_names(curation.get("extract"))
    if curation.get("perturbation") and (not names or "makes_steps" not in TRACE_TRANSFORMS.get(names[-1]).needs):
        names.append(next(p.name for p in TRACE_TRANSFORMS if p.extra.get("default_for_steps")))
    return names


def transform_traces(rows: list[dict], curation: dict, client, seed: int) -> TraceOutput:
    perturbation, restore = curation.get("perturbation"), bool(curation.get("restore"))
    if restore and not perturbation:
        raise MedS1Error("restore rebuilds perturbed traces, but no perturbation is configured", key="curation.restore")
    extracted = run_extracts(rows, plan_transforms(curation), client)
    columns: dict[str, list] = {"Complex_CoT_original": [row["Complex_CoT"] for row in rows]}
    columns.update({f"Complex_CoT_{name}": traces for name, traces in extracted.intermediates.items()})
    failures = [list(f) for f in extracted.failures]
    traces, responses = extracted.traces, extracted.responses
    if perturbation:
        traces, responses = _perturb(rows, extracted, curation, client, seed, columns, failures)
    columns["llm_failed"] = [json.dumps(f) if f else None for f in failures]
    _keep_if_changed(columns, "Question_original", [row["Question"] for row in rows], extracted.questions)
    _keep_if_changed(columns, "Response_original", [row["Response"] for row in rows], responses)
    counts = counts_from_columns(columns)
    _check_failed_share(counts, getattr(client, "max_failed_share", DEFAULT_MAX_FAILED_SHARE))
    return TraceOutput(traces=traces, questions=extracted.questions, responses=responses, columns=columns,
                       counts=counts)


def _perturb(rows, extracted, curation, client, seed, columns, failures) -> tuple[list[str], list[str]]:
    current = [dict(row, Question=q, Response=r) for row, q, r in zip(rows, extracted.questions, extracted.responses)]
    unperturbed = extracted.traces
    perturbed, responses, info = apply_perturbation(current, unperturbed, curation["perturbation"], client, seed,
                                                    failed=[bool(f) for f in failures])
    _collect_failures(failures, info)
    columns["Complex_CoT_perturbed"] = perturbed
    columns["perturbation_info"] = [json.dumps(x, sort_keys=True) for x in info]
    if not curation.get("restore"):
        return perturbed, responses
    traces, responses, restored = restore_traces(current, perturbed, unperturbed, client, responses,
                                                 extracted.responses)
    _collect_failures(failures, restored)
    columns["Complex_CoT_restored"] = traces
    columns["restore_status"] = [x["restore"] for x in restored]
    columns["restore_info"] = [json.dumps(x, sort_keys=True) for x in restored]
    return traces, responses


def _collect_failures(failures: list[list[str]], infos: list[dict]) -> None:
    for row_failures, info in zip(failures, infos):
        row_failures += [f for f in info.get("llm_failures", []) if f not in row_failures]


def counts_from_columns(columns: dict) -> dict:
    """What stats.json reports about the trace pipeline, from its rows.parquet columns (one place for both)."""
    failed = [json.loads(x) for x in columns.get("llm_failed", []) if isinstance(x, str) and x]
    out: dict = {"rows": len(columns.get("Complex_CoT_original", [])), "llm_failed_rows": len(failed),
                 # each failure reads "<task>: <reason>" (task names hold ":" but never ": ")
                 "llm_failed_by_task": dict(Counter(f.split(": ")[0] for row in failed for f in row))}
    infos = [json.loads(x) for x in columns.get("perturbation_info", []) if isinstance(x, str)]
    if infos:
        touched = [x for x in infos if x.get("touched", True)]
        unchanged = [x for x in touched if not x["changed"]]
        out["perturbation"] = {"type": infos[0]["type"], "rate": infos[0]["rate"], "touched": len(touched),
                               "changed": len(touched) - len(unchanged), "unchanged": len(unchanged),
                               "unchanged_by_reason": dict(Counter(x.get("reason", "") for x in unchanged))}
    if "restore_status" in columns:
        out["restore"] = dict(Counter(columns["restore_status"]))
    return out


def _check_failed_share(counts: dict, max_share: float) -> None:
    failed, total = counts["llm_failed_rows"], counts["rows"]
    if total and failed > max_share * total:
        raise MedS1Error(f"{failed} of {total} rows' LLM calls failed ({counts['llm_failed_by_task']}), more than "
                         f"llm.max_failed_share {max_share:g}; their answers so far are cached: a rerun retries only "
                         f"the failed calls", key="llm.max_failed_share")


def _keep_if_changed(columns: dict, name: str, before: list[str], after: list[str]) -> None:
    if before != after:
        columns[name] = before
