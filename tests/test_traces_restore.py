"""Restore (meds1.traces.restore) and the whole trace pipeline (meds1.traces.apply) on the project's own fixture."""
from __future__ import annotations

import json

import pytest

from llm_standins import OfflineStandIn, Scripted, trace_rows
from meds1.errors import MedS1Error
from meds1.llm.offline import offline_answer
from meds1.traces.apply import plan_transforms, transform_traces
from meds1.traces.extract import apply_extracts
from meds1.traces.perturb import apply_perturbation
from meds1.traces.restore import restore_traces
from meds1.traces.steps import Step, parse_steps, render_steps


@pytest.fixture(scope="module")
def rows():
    mcq, free = trace_rows("mcq"), trace_rows("free")
    return mcq[:3] + free[:3]


@pytest.fixture(scope="module")
def skipped(rows):
    """(unperturbed step traces, traces with every step but one skipped)."""
    steps, _ = apply_extracts(rows, ["step"], OfflineStandIn())
    perturbed, _, _ = apply_perturbation(rows, steps, {"type": "skip", "rate": 1.0}, OfflineStandIn(), seed=3)
    assert all(len(parse_steps(p)) == 1 for p in perturbed)
    return steps, perturbed


def test_restore_accepts_a_longer_multi_step_rebuild(rows, skipped):
    steps, perturbed = skipped
    client = OfflineStandIn()
    traces, responses, info = restore_traces(rows, perturbed, steps, client)
    assert [x["restore"] for x in info] == ["restored"] * len(rows)
    assert responses == [row["Response"] for row in rows]
    for trace, before, meta in zip(traces, perturbed, info):
        assert len(parse_steps(trace)) == meta["steps"] >= 2 and len(trace) > len(before)
    assert [r.task for r in client.requests] == ["restore"] * len(rows)
    assert all(p in r.prompt and r.payload["cot"] == p for r, p in zip(client.requests, perturbed))
    assert all(row["Response"] in r.prompt for r, row in zip(client.requests, rows))  # it sees the response


@pytest.mark.parametrize("reply, reason", [
    ("## Step 1: Too short\n\nBrief.", "1 step(s) < 2"),
    ("## Step 1: A\n\na\n\n## Step 2: B\n\nb", "not longer than the perturbed trace"),
    ("", "0 step(s) < 2"),
])
def test_restore_falls_back_to_the_unperturbed_trace(rows, skipped, reply, reason):
    steps, perturbed = skipped
    traces, _, info = restore_traces(rows, perturbed, steps, Scripted(lambda r: reply))
    assert traces == steps
    assert all(x["restore"] == "fallback" and reason in x["reason"] for x in info)


def test_restore_trims_preambles_and_leaves_unperturbed_rows_alone(rows, skipped):
    steps, perturbed = skipped
    long_steps = render_steps([Step("One", "x " * 400), Step("Two", "y " * 400)])
    mixed = [perturbed[0], steps[1]]  # row 1 was not changed by its perturbation
    client = Scripted(lambda r: "Sure, here is the restored reasoning:\n\n" + long_steps)
    traces, _, info = restore_traces(rows[:2], mixed, steps[:2], client)
    assert traces == [long_steps, steps[1]] and [x["restore"] for x in info] == ["restored", "unchanged"]
    assert len(client.requests) == 1


def test_plan_adds_step_only_when_a_perturbation_needs_it():
    skip = {"type": "skip", "rate": 0.33}
    assert plan_transforms({"extract": "list", "perturbation": skip}) == ["list", "step"]
    assert plan_transforms({"extract": None, "perturbation": skip}) == ["step"]
    assert plan_transforms({"extract": ["cot", "step-evidence"], "perturbation": skip}) == ["cot", "step-evidence"]
    assert plan_transforms({"extract": "list"}) == ["list"]


def test_pipeline_keeps_every_intermediate_column(rows):
    curation = {"extract": ["list"], "perturbation": {"type": "skip", "rate": 0.66}, "restore": True}
    out = transform_traces(rows, curation, OfflineStandIn(), seed=5)
    cols = out.columns
    assert list(cols) == ["Complex_CoT_original", "Complex_CoT_list", "Complex_CoT_step", "Complex_CoT_perturbed",
                          "perturbation_info", "Complex_CoT_restored", "restore_status", "restore_info", "llm_failed"]
    assert cols["llm_failed"] == [None] * len(rows) and out.counts["llm_failed_rows"] == 0
    assert out.counts["perturbation"]["touched"] == len(rows) and out.counts["restore"] == {"restored": len(rows)}
    assert cols["Complex_CoT_original"] == [row["Complex_CoT"] for row in rows]
    assert all(t.startswith("- ") for t in cols["Complex_CoT_list"])
    for stepped, perturbed in zip(cols["Complex_CoT_step"], cols["Complex_CoT_perturbed"]):
        assert len(parse_steps(stepped)) > len(parse_steps(perturbed))
    assert out.traces == cols["Complex_CoT_restored"] and set(cols["restore_status"]) == {"restored"}
    assert all(json.loads(x)["type"] == "skip" for x in cols["perturbation_info"])
    assert out.responses == [row["Response"] for row in rows] and "Response_original" not in cols


def test_pipeline_answer_perturbation_records_the_original_response(rows):
    curation = {"extract": "step", "perturbation": {"type": "answer", "rate": 0.33}}
    out = transform_traces(rows, curation, OfflineStandIn(), 1)
    changed = [i for i, (a, b) in enumerate(zip(out.responses, out.columns["Response_original"])) if a != b]
    assert len(changed) == int(0.33 * len(rows)) and out.traces == out.columns["Complex_CoT_perturbed"]
    assert out.counts["perturbation"] | {"unchanged_by_reason": {}} == {
        "type": "answer", "rate": 0.33, "touched": 1, "changed": 1, "unchanged": 0, "unchanged_by_reason": {}}


def test_answer_plus_restore_keeps_reasoning_and_answer_consistent(rows):
    curation = {"extract": "step", "perturbation": {"type": "answer", "rate": 1.0}, "restore": True}
    client = OfflineStandIn()
    out = transform_traces(rows, curation, client, 1)
    restores = [r for r in client.requests if r.task == "restore"]
    assert [r.payload["answer"] for r in restores] == out.responses  # each rebuild was told the wrong response
    assert all(r != row["Response"] for r, row in zip(out.responses, rows))
    # a rejected restore reverts BOTH the trace and the response to the unperturbed row
    stepped = out.columns["Complex_CoT_step"]
    rejected = transform_traces(rows, curation, Scripted(lambda r: "## Step 1: x\n\ny" if r.task == "restore"
                                                         else offline_answer(r)[0]), 1)
    assert rejected.traces == stepped and rejected.responses == [row["Response"] for row in rows]
    assert set(rejected.columns["restore_status"]) == {"fallback"}


def test_failed_rows_keep_their_input_are_marked_and_fail_the_job_past_the_share(rows):
    failing = {rows[0]["id"]}
    client = Scripted(lambda r: None if r.payload["id"] in failing else offline_answer(r)[0])
    client.max_failed_share = 0.2
    out = transform_traces(rows, {"extract": "step", "perturbation": {"type": "skip", "rate": 1.0}}, client, 1)
    assert out.traces[0] == rows[0]["Complex_CoT"] and out.responses[0] == rows[0]["Response"]
    assert json.loads(out.columns["llm_failed"][0])[0].startswith("extract:step: gave_up_500")
    assert out.columns["llm_failed"][1] is None
    assert out.counts["llm_failed_rows"] == 1 and out.counts["llm_failed_by_task"] == {"extract:step": 1}
    assert json.loads(out.columns["perturbation_info"][0])["touched"] is False
    failing.add(rows[1]["id"])  # 2 of 6 rows > 0.2
    with pytest.raises(MedS1Error, match=r"key 'llm.max_failed_share': 2 of 6 rows' LLM calls failed"):
        transform_traces(rows, {"extract": "step"}, client, 1)


def test_pipeline_rejects_restore_without_perturbation(rows):
    with pytest.raises(MedS1Error, match="key 'curation.restore'"):
        transform_traces(rows, {"extract": "step", "restore": True}, OfflineStandIn(), 1)


def test_pipeline_through_the_real_client_with_the_offline_provider(rows, tmp_path):
    client_module = pytest.importorskip("meds1.llm.client")
    client = client_module.LLMClient({"provider": "offline"}, tmp_path / "cache")
    curation = {"extract": ["note", "step"], "perturbation": {"type": "collapse_consecutive", "rate": 0.66},
                "restore": True}
    out = transform_traces(rows, curation, client, seed=2)
    assert transform_traces(rows, curation, OfflineStandIn(), seed=2) == out  # the stand-in behaves like the provider
    assert [json.loads(x)["steps_after"] for x in out.columns["perturbation_info"]] == \
        [n - int((0.66 + 0.01) * (n - 1)) for n in (len(parse_steps(t)) for t in out.columns["Complex_CoT_step"])]
    assert client.ledger["calls"] == len(rows) * 3 + sum(len(json.loads(x)["merged_groups"])
                                                         for x in out.columns["perturbation_info"]) + len(rows)
