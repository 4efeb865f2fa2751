"""Trace transforms (meds1.traces.extract) through the offline rules, on the HuatuoGPT-o1 demo data."""
from __future__ import annotations

import json
import re

import pytest

from meds1.errors import MedS1Error
from meds1.llm.base import OFFLINE_TASKS, LLMResult
from meds1.traces.extract import EXTRACTS, PROMPTS_DIR, apply_extracts, note_formats, render_prompt, run_extracts
from meds1.traces.steps import parse_steps, split_sentences, step_numbers

N_ROWS = 6


class OfflineStandIn:
    """What the offline provider does: answer each request with OFFLINE_TASKS[request.task]."""

    def __init__(self):
        self.requests, self.results = [], []

    def run_many(self, requests):
        results = []
        for request in requests:
            out = OFFLINE_TASKS.get(request.task)(request)
            text, meta = out if isinstance(out, tuple) else (out, {})
            results.append(LLMResult(text=text, provider="offline", meta=meta))
        self.requests += requests
        self.results += results
        return results


class Scripted:
    """A fake LLM: ``reply(request) -> text``."""

    def __init__(self, reply):
        self.reply, self.requests = reply, []

    def run_many(self, requests):
        self.requests += requests
        return [LLMResult(text=self.reply(r)) for r in requests]


@pytest.fixture(scope="module")
def rows(shared_data):
    data = json.loads((shared_data / "huatuogpt-o1_demo_data.json").read_text())
    return [dict(row, id=f"demo-{i}") for i, row in enumerate(data[:N_ROWS])]


@pytest.fixture(scope="module")
def outputs(rows):
    """Every registered transform run once over the rows: name -> (traces, client)."""
    out = {}
    for name in EXTRACTS.names():
        client = OfflineStandIn()
        out[name] = (apply_extracts(rows, [name], client)[0], client)
    return out


def _assert_steps(text):
    numbers = step_numbers(text)
    assert len(numbers) >= 2 and numbers == list(range(1, len(numbers) + 1)), text[:300]


def _headings(text):
    return re.findall(r"(?m)^## (.+)$", text)


def _check_note(text, fmt=None):
    heads = _headings(text)
    expected = [list(spec["sections"]) for name, spec in note_formats().items() if fmt in (None, name)]
    assert heads in expected
    assert all(line.startswith("- ") for line in text.splitlines() if line and not line.startswith("## "))


def _check_one_sentence(text, row):
    assert len(split_sentences(text)) == 1 and text.endswith(".") and len(text.split()) <= 80
    assert len(text) < len(row["Complex_CoT"])


def _check_decision_tree(text, row):
    lines = text.splitlines()
    assert len(lines) >= 3 and all(re.match(r"^\s*If .+ -> .+", line) for line in lines[:-1])
    assert lines[-1].strip().startswith("-> Decision:")
    depths = [len(line) - len(line.lstrip()) for line in lines[:-1]]
    assert depths == sorted(depths) and depths[-1] > 0


def _check_qa(text, row):
    lines = text.splitlines()
    assert len(lines) >= 4 and len(lines) % 2 == 0
    assert all(q.startswith("Q: ") and q.endswith("?") and a.startswith("A: ") for q, a in zip(lines[::2], lines[1::2]))


def _check_socratic(text, row):
    speakers = [re.match(r"^([A-Z][\w ]+): \S", line).group(1) for line in text.splitlines()]
    assert len(set(speakers)) >= 2 and len(speakers) >= 4
    assert all(line.endswith("?") for line in text.splitlines() if line.startswith("Attending:"))


def _lines_from_trace(text, row, *, one_per_line=True):
    cot_sentences = set(split_sentences(row["Complex_CoT"]))
    lines = text.splitlines() if one_per_line else split_sentences(text)
    assert len(lines) >= 2 and all(line in cot_sentences for line in lines)


def _check_styled(text, row):
    lines = text.splitlines()
    assert len(lines) >= 2 and any(line.startswith(("Hmm, ", "Oh, ", "Wait, ")) for line in lines)
    assert "case report" not in text.lower()


def _check_evidence(text, row):
    _assert_steps(text)
    assert all("**Evidence:**" in step.body for step in parse_steps(text))


def _check_markdown(text, row):
    assert len(_headings(text)) >= 2 and sum(line.startswith("- ") for line in text.splitlines()) >= 2


def _check_cot(text, row):
    first_finding = split_sentences(row["Question"])[0].rstrip(".")
    assert len(text.splitlines()) >= 3 and first_finding[1:] in text  # (its first letter may be lower-cased)
    assert text != row["Complex_CoT"]


# What each transform promises, checked on every row (a transform without a check here fails
# test_every_transform_is_checked).
CHECKS = {
    "none": lambda t, row: t == "",
    "nejmcr": lambda t, row: t == row["Complex_CoT"],
    "nejmcr-qa": lambda t, row: t == row["Complex_CoT"],   # rewrites Question/Response instead (tested below)
    "nejmcr-clean": lambda t, row: "case report" not in t.lower() and t == row["Complex_CoT"],  # nothing to clean here
    "step": lambda t, row: _assert_steps(t),
    "cot-step": lambda t, row: _assert_steps(t),
    "step-evidence": _check_evidence,
    "1-sentence": _check_one_sentence,
    "list": lambda t, row: len(t.splitlines()) >= 2 and all(line.startswith("- ") for line in t.splitlines()),
    "markdown": _check_markdown,
    "note": lambda t, row: _check_note(t),
    "soap": lambda t, row: _check_note(t, "SOAP"),
    "soapie": lambda t, row: _check_note(t, "SOAPIE"),
    "isbar": lambda t, row: _check_note(t, "ISBAR"),
    "pomr": lambda t, row: _check_note(t, "POMR"),
    "decision-tree": _check_decision_tree,
    "qa": _check_qa,
    "socratic": _check_socratic,
    "cot": _check_cot,
    "nejmcr-transform": lambda t, row: _lines_from_trace(t, row),
    "nejmcr-reason": lambda t, row: _lines_from_trace(t, row),
    "nejmcr-reason-extraction": lambda t, row: "\n" not in t and _lines_from_trace(t, row, one_per_line=False),
    "nejmcr-reason-structure": lambda t, row: _lines_from_trace(t, row),
    "nejmcr-reason-depth": lambda t, row: _lines_from_trace(t, row),
    "nejmcr-reason-purity": lambda t, row: _lines_from_trace(t, row),
    "nejmcr-reason-style": _check_styled,
}
UNCHANGED_BY_DESIGN = {"nejmcr", "nejmcr-qa", "nejmcr-clean"}


def test_every_transform_is_checked():
    assert set(EXTRACTS.names()) == set(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_transform_keeps_its_promise(name, rows, outputs):
    traces, client = outputs[name]
    assert len(traces) == len(rows)
    for trace, row in zip(traces, rows):
        assert CHECKS[name](trace, row) is not False, f"{name} on {row['id']}: {trace[:300]!r}"
        if name not in UNCHANGED_BY_DESIGN:
            assert trace != row["Complex_CoT"]
    # every answer came from a named offline rule (no silent pass-through)
    assert all(result.meta.get("offline_rule") for result in client.results)


def test_requests_carry_rendered_prompts_and_structured_inputs(rows, outputs):
    _, client = outputs["step"]
    assert [r.task for r in client.requests] == ["extract:step"] * len(rows)
    for request, row in zip(client.requests, rows):
        assert row["Complex_CoT"] in request.prompt and row["Question"] in request.prompt
        assert "{cot}" not in request.prompt and request.payload["cot"] == row["Complex_CoT"]
        assert request.payload["options"] == row["options"] and request.payload["answer_idx"] == row["answer_idx"]


def test_every_prompt_template_has_an_offline_rule():
    tasks = {"perturb-collapse": "perturb:collapse_consecutive", "perturb-answer": "perturb:answer",
             "restore": "restore"}
    for path in sorted(PROMPTS_DIR.glob("*.txt")):
        assert tasks.get(path.stem, f"extract:{path.stem}") in OFFLINE_TASKS, path.name


def test_render_prompt_names_missing_placeholders():
    with pytest.raises(MedS1Error, match=r"needs \['cot'\]"):
        render_prompt("step", question="q", answer="a")
    assert "{x} stays" in render_prompt("step", question="{x} stays", cot="c", answer="a")


def test_ordered_list_applies_in_order_and_keeps_intermediates(rows):
    traces, inter = apply_extracts(rows, ["step", "list"], OfflineStandIn())
    assert list(inter) == ["step", "list"]
    step_only, _ = apply_extracts(rows, ["step"], OfflineStandIn())
    assert inter["step"] == step_only
    stepped_rows = [dict(row, Complex_CoT=t) for row, t in zip(rows, step_only)]
    assert traces == inter["list"] == apply_extracts(stepped_rows, ["list"], OfflineStandIn())[0]
    # order matters: list then step is a different trace
    reversed_order, _ = apply_extracts(rows, ["list", "step"], OfflineStandIn())
    assert all(step_numbers(t) and not step_numbers(u) for t, u in zip(reversed_order, traces))


def test_repeated_names_keep_every_intermediate_and_cot_ignores_the_trace(rows):
    _, inter = apply_extracts(rows, ["cot", "step", "cot"], OfflineStandIn())
    assert list(inter) == ["cot", "step", "cot_2"]
    assert inter["cot"] == inter["cot_2"]  # cot is built from question + answer only
    blanked = [dict(row, Complex_CoT="") for row in rows]
    assert apply_extracts(blanked, ["cot"], OfflineStandIn())[0] == inter["cot"]


def test_no_names_is_identity_and_unknown_name_is_a_one_line_error(rows):
    traces, inter = apply_extracts(rows, [], OfflineStandIn())
    assert traces == [row["Complex_CoT"] for row in rows] and inter == {}
    with pytest.raises(MedS1Error, match=r"key 'curation.extract': unknown trace transform 'stpe'.*did you mean"):
        apply_extracts(rows, ["stpe"], OfflineStandIn())
    with pytest.raises(MedS1Error, match="no 'Complex_CoT' column"):
        apply_extracts([{"Question": "q", "Response": "r"}], ["step"], OfflineStandIn())


def test_llm_preambles_fences_and_sign_offs_are_trimmed(rows):
    reply = ("Sure! Here's the rewritten reasoning:\n```markdown\n## Step 1: Findings\n\nLow Hb.\n\n"
             "### Step 2 - Conclusion\n\nParvovirus.\n```\nI hope this helps!")
    traces, _ = apply_extracts(rows[:2], ["step"], Scripted(lambda r: reply))
    assert traces == ["## Step 1: Findings\n\nLow Hb.\n\n## Step 2: Conclusion\n\nParvovirus."] * 2
    reply = "Here are the key facts:\n* Hb low\n2. Retic low"
    listed, _ = apply_extracts(rows[:1], ["list"], Scripted(lambda r: reply))
    assert listed == ["- Hb low\n- Retic low"]


def test_empty_llm_output_keeps_the_input_trace_and_empty_traces_are_not_sent(rows):
    client = Scripted(lambda r: "   ")
    traces, _ = apply_extracts(rows[:2] + [dict(rows[2], Complex_CoT="")], ["step"], client)
    assert traces == [rows[0]["Complex_CoT"], rows[1]["Complex_CoT"], ""]
    assert len(client.requests) == 2


@pytest.mark.parametrize("reply, expected", [("ISBAR", "ISBAR"), ("**SOAPIE**", "SOAPIE"), ("no idea", "SOAP")])
def test_note_uses_the_format_the_llm_picks(rows, reply, expected):
    def answer(request):
        if request.task == "extract:note-select":
            return reply
        return OFFLINE_TASKS.get(request.task)(request)[0]

    client = Scripted(answer)
    traces, _ = apply_extracts(rows[:1], ["note"], client)
    assert _headings(traces[0]) == list(note_formats()[expected]["sections"])
    note_request = client.requests[1]
    assert note_request.payload["note_format"] == expected and f"a {expected} clinical note" in note_request.prompt


def test_nejmcr_qa_rewrites_question_and_response_and_keeps_the_case_report(rows):
    option_lines = "\n".join(f"{k}. {v}" for k, v in rows[0]["options"].items())
    mcq = dict(rows[0], Question=f"{rows[0]['question']}\n{option_lines}")
    result = run_extracts([mcq], ["nejmcr-qa"], OfflineStandIn())
    assert result.traces == [mcq["Complex_CoT"]]
    assert result.responses == [rows[0]["answer"]]  # "Parvovirus B19 infection"
    assert "A. " not in result.questions[0] and rows[0]["question"].split("\n")[0] in result.questions[0]


def test_nejmcr_clean_and_purity_remove_case_report_mentions(rows):
    row = dict(rows[0], Complex_CoT="The case report mentions that the reticulocyte count is low. "
                                     "According to the case report, parvovirus B19 infection halts erythropoiesis.")
    cleaned, _ = apply_extracts([row], ["nejmcr-clean"], OfflineStandIn())
    assert cleaned == ["The reticulocyte count is low. Parvovirus B19 infection halts erythropoiesis."]
    pure, _ = apply_extracts([row], ["nejmcr-reason-purity"], OfflineStandIn())
    assert "case report" not in pure[0].lower() and pure[0].count("\n") == 1
