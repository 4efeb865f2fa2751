"""Perturbations of step traces (meds1.traces.perturb + meds1/traces/perturbations/) on the project's own fixture
(tests/data/traces_rows.json: 6 MCQ and 6 free-text rows)."""
from __future__ import annotations

from collections import Counter

import pytest

from llm_standins import OfflineStandIn, Scripted, trace_rows
from meds1.errors import MedS1Error
from meds1.llm.offline import offline_answer
from meds1.traces.extract import apply_extracts
from meds1.traces.perturb import ACCEPTED_RATES, apply_perturbation
from meds1.traces.perturbations.collapse_consecutive import merge_groups
from meds1.traces.perturbations.shuffle import shuffle_count
from meds1.traces.steps import ANSWER_SENTENCE, parse_steps

SEED = 7


@pytest.fixture(scope="module")
def rows():
    return trace_rows()


@pytest.fixture(scope="module")
def step_traces(rows):
    traces, _ = apply_extracts(rows, ["step"], OfflineStandIn())
    assert all(len(parse_steps(t)) >= 3 for t in traces)
    return traces


def perturb(rows, traces, ptype, rate, client=None, seed=SEED):
    return apply_perturbation(rows, traces, {"type": ptype, "rate": rate}, client or OfflineStandIn(), seed)


@pytest.mark.parametrize("rate", ACCEPTED_RATES)
def test_shuffle_keeps_the_step_multiset_and_moves_exactly_the_counted_positions(rows, step_traces, rate):
    new, responses, info = perturb(rows, step_traces, "shuffle", rate)
    assert responses == [row["Response"] for row in rows]
    for before_text, after_text, meta in zip(step_traces, new, info):
        before, after = parse_steps(before_text), parse_steps(after_text)
        assert Counter(before) == Counter(after)
        moved = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
        expected = int(rate * len(before))
        assert len(moved) == shuffle_count(rate, len(before)) == (2 if expected == 1 else expected)
        assert moved == meta["moved"]


def test_shuffle_of_one_counted_position_moves_two(rows):
    four = "\n\n".join(f"## Step {i}: T{i}\n\nbody {i}" for i in range(1, 5))
    new, _, info = perturb(rows[:1], [four], "shuffle", 0.33)  # int(0.33 * 4) == 1: one step cannot move alone
    before, after = parse_steps(four), parse_steps(new[0])
    assert sum(a != b for a, b in zip(before, after)) == 2 == len(info[0]["moved"])
    assert Counter(before) == Counter(after)


@pytest.mark.parametrize("rate", ACCEPTED_RATES)
def test_skip_drops_the_counted_steps_keeps_order_and_at_least_one(rows, step_traces, rate):
    new, _, info = perturb(rows, step_traces, "skip", rate)
    for before_text, after_text, meta in zip(step_traces, new, info):
        before, after = parse_steps(before_text), parse_steps(after_text)
        n_skip = min(int(rate * len(before)), len(before) - 1)
        assert len(after) == len(before) - n_skip >= 1
        assert after == [s for i, s in enumerate(before) if i not in meta["dropped"]]  # survivors in original order


def test_skip_on_a_single_step_changes_nothing(rows):
    one = "## Step 1: Only\n\nThe one step."
    new, _, info = perturb(rows[:1], [one], "skip", 1.0)
    assert new == [one] and info[0]["changed"] is False


@pytest.mark.parametrize("rate", ACCEPTED_RATES)
def test_collapse_reduces_step_count_by_the_formula(rows, step_traces, rate):
    client = OfflineStandIn()
    new, _, info = perturb(rows, step_traces, "collapse_consecutive", rate, client)
    expected_calls = 0
    for before_text, after_text, meta in zip(step_traces, new, info):
        before, after = parse_steps(before_text), parse_steps(after_text)
        n_merges = int((rate + 0.01) * (len(before) - 1))
        assert len(after) == len(before) - n_merges == meta["steps_after"]
        if rate == 1.0:
            assert len(after) == 1
        # steps outside the merged groups are untouched
        merged = {i for group in meta["merged_groups"] for i in group}
        assert Counter(after) & Counter(s for i, s in enumerate(before) if i not in merged) == \
            Counter(s for i, s in enumerate(before) if i not in merged)
        expected_calls += len(meta["merged_groups"])
    assert len(client.requests) == expected_calls
    assert {r.task for r in client.requests} == {"perturb:collapse_consecutive"}


def test_merge_groups_remove_exactly_the_requested_boundaries():
    import random

    for n_merges in range(0, 9):
        groups = merge_groups(9, n_merges, random.Random(n_merges))
        assert sum(groups, []) == list(range(9)) and len(groups) == 9 - n_merges


def test_collapse_falls_back_to_joining_when_the_llm_gives_nothing(rows, step_traces):
    new, _, info = perturb(rows[:2], step_traces[:2], "collapse_consecutive", 1.0, Scripted(lambda r: ""))
    for before_text, after_text in zip(step_traces[:2], new):
        (merged,) = parse_steps(after_text)
        assert all(step.body in merged.body for step in parse_steps(before_text))


@pytest.mark.parametrize("rate", ACCEPTED_RATES)
def test_add_irrelevant_inserts_counted_steps_from_other_traces(rows, step_traces, rate):
    new, _, info = perturb(rows, step_traces, "add_irrelevant", rate)
    steps_by_row = {row["id"]: parse_steps(t) for row, t in zip(rows, step_traces)}
    for row, before_text, after_text, meta in zip(rows, step_traces, new, info):
        before, after = parse_steps(before_text), parse_steps(after_text)
        assert len(after) == len(before) + int(rate * len(before)) == len(before) + len(meta["inserted"])
        positions = {ins["position"] for ins in meta["inserted"]}
        for ins in meta["inserted"]:
            assert ins["from_row"] != row["id"]
            assert after[ins["position"]] == steps_by_row[ins["from_row"]][ins["from_step"]]
            assert after[ins["position"]] not in before
        assert [s for i, s in enumerate(after) if i not in positions] == before


@pytest.mark.parametrize("rate", ACCEPTED_RATES)
def test_answer_changes_the_response_of_exactly_the_counted_rows_mcq_and_free_text(rows, step_traces, rate):
    new, responses, info = perturb(rows, step_traces, "answer", rate)
    changed = [i for i, meta in enumerate(info) if meta["answer_changed"]]
    touched = [i for i, meta in enumerate(info) if meta["touched"]]
    assert len(changed) == len(touched) == int(rate * len(rows))
    for i, row in enumerate(rows):
        before, after = parse_steps(step_traces[i]), parse_steps(new[i])
        if i not in changed:
            assert responses[i] == row["Response"] and new[i] == step_traces[i]
            continue
        assert responses[i] != row["Response"] and after[-1].body != before[-1].body and after[:-1] == before[:-1]
        if "options" in row:  # MCQ: a wrong option letter, named with its text
            letter = ANSWER_SENTENCE.findall(responses[i])[-1].upper()
            assert letter != row["answer_idx"] and letter in row["options"] and letter == info[i]["new_letter"]
            assert row["options"][letter] in responses[i]


def reply_with(response: str, step: str = "I reconsidered the findings.") -> str:
    return f"ORIGINAL ANSWER: x\nWRONG ANSWER: y\nSTEP: {step}\nRESPONSE: {response}"


def test_a_reply_that_repeats_the_right_answer_is_rejected_counted_and_kept_unperturbed(rows, step_traces):
    def repeat(r):  # MCQ: names the correct letter; free text: the original response again
        return reply_with(f"The answer is {r.payload['answer_idx']}." if r.payload["answer_idx"] else r.payload["answer"])
    new, responses, info = perturb(rows, step_traces, "answer", 1.0, Scripted(repeat))
    assert new == step_traces and responses == [row["Response"] for row in rows]
    assert not any(x["answer_changed"] or x["changed"] for x in info) and all(x["touched"] for x in info)
    reasons = Counter(x["reason"] for x in info)
    assert reasons == Counter("rejected: the new response keeps the correct answer " + r["answer_idx"]
                              if "options" in r else "rejected: the new response repeats the original response"
                              for r in rows)


@pytest.mark.parametrize("reply, reason", [
    ("STEP: only a step", "the reply has no STEP and RESPONSE"),
    ("ORIGINAL ANSWER: gout\nWRONG ANSWER: Gout.\nSTEP: s\nRESPONSE: A new paragraph about gout.",
     "the wrong answer it names is the original answer"),
])
def test_free_text_replies_that_change_nothing_are_rejected(rows, step_traces, reply, reason):
    free = [r for r in rows if "options" not in r]
    traces = [t for r, t in zip(rows, step_traces) if "options" not in r]
    _, responses, info = perturb(free, traces, "answer", 1.0, Scripted(lambda r: reply))
    assert responses == [r["Response"] for r in free] and all(x["reason"] == f"rejected: {reason}" for x in info)


def test_an_mcq_reply_that_names_no_option_is_rejected(rows, step_traces):
    mcq = [r for r in rows if "options" in r]
    _, _, info = perturb(mcq, step_traces[:len(mcq)], "answer", 1.0,
                         Scripted(lambda r: reply_with("It is something else entirely.")))
    assert {x["reason"] for x in info} == {"rejected: the new response names no single answer option"}


def test_skip_reports_every_row_it_left_unchanged(rows):
    short = ["## Step 1: A\n\na\n\n## Step 2: B\n\nb", "## Step 1: A\n\na\n\n## Step 2: B\n\nb\n\n## Step 3: C\n\nc"]
    new, _, info = perturb(rows[:2], short, "skip", 0.33)  # int(0.33 x 2) = int(0.33 x 3) = 0 steps to skip
    assert new == short and [x["changed"] for x in info] == [False, False]
    assert [x["reason"] for x in info] == ["2 step(s) at rate 0.33: no step to skip",
                                           "3 step(s) at rate 0.33: no step to skip"]


def test_rows_whose_earlier_call_failed_are_not_perturbed(rows, step_traces):
    new, _, info = apply_perturbation(rows[:3], step_traces[:3], {"type": "shuffle", "rate": 1.0}, OfflineStandIn(),
                                      SEED, failed=[False, True, False])
    assert new[1] == step_traces[1] and info[1]["touched"] is False and "earlier LLM call" in info[1]["reason"]
    assert new[0] != step_traces[0] and new[2] != step_traces[2]


def test_a_failed_merge_call_leaves_the_row_unperturbed_and_says_so(rows, step_traces):
    failing = rows[0]["id"]
    client = Scripted(lambda r: None if r.payload["id"] == failing else offline_answer(r)[0])
    new, _, info = perturb(rows[:2], step_traces[:2], "collapse_consecutive", 1.0, client)
    assert new[0] == step_traces[0] and info[0]["changed"] is False
    assert info[0]["llm_failures"][0].startswith("perturb:collapse_consecutive: gave_up_500")
    assert len(parse_steps(new[1])) == 1


@pytest.mark.parametrize("ptype", ["shuffle", "skip", "collapse_consecutive", "add_irrelevant", "answer"])
def test_same_seed_same_output_other_seed_differs(rows, step_traces, ptype):
    first = perturb(rows, step_traces, ptype, 0.66, seed=11)
    assert perturb(rows, step_traces, ptype, 0.66, seed=11) == first
    assert perturb(rows, step_traces, ptype, 0.66, seed=12)[0] != first[0]


def test_bad_config_is_a_one_line_error(rows, step_traces):
    with pytest.raises(MedS1Error, match=r"key 'curation.perturbation.rate': rate 0.5 is not one of"):
        perturb(rows, step_traces, "skip", 0.5)
    with pytest.raises(MedS1Error, match=r"unknown perturbation 'shufle'.*did you mean 'shuffle'"):
        perturb(rows, step_traces, "shufle", 0.33)
    with pytest.raises(MedS1Error, match="12 rows but 1 traces"):
        perturb(rows, step_traces[:1], "skip", 0.33)
