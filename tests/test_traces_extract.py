"""Trace transforms (meds1.traces.extract + the table and modules of meds1/traces/transforms/) through their offline
stand-ins, on the project's own step-trace fixture (tests/data/traces_rows.json: MCQ and free-text rows)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from llm_standins import OfflineStandIn, Scripted, trace_rows
from meds1.errors import MedS1Error
from meds1.llm.offline import offline_answer
from meds1.plugins import TRACE_TRANSFORMS
from meds1.traces.extract import PromptTransform, apply_extracts, run_extracts
from meds1.traces.prompts import PROMPTS_DIR, render_prompt
from meds1.traces.steps import parse_steps, split_sentences, step_numbers
from meds1.traces.transforms.note import note_formats

TRACES = Path(__file__).resolve().parents[1] / "meds1" / "traces"


@pytest.fixture(scope="module")
def rows():
    return trace_rows()


@pytest.fixture(scope="module")
def outputs(rows):
    """Every registered transform run once over the rows: name -> (traces, client)."""
    out = {}
    for name in TRACE_TRANSFORMS.names():
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
    assert set(TRACE_TRANSFORMS.names()) == set(CHECKS)


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
        assert request.payload["options"] == row.get("options", {})
        assert request.payload["answer_idx"] == row.get("answer_idx")
        assert request.offline is not None and request.params == {"temperature": 0.0}  # the limit: the llm block's


def test_every_prompt_template_is_rendered_by_some_plug_in_and_every_request_has_a_stand_in(rows, monkeypatch):
    import meds1.traces.prompts as prompts
    from meds1.traces.apply import transform_traces

    used = set()
    real = prompts.render_prompt
    monkeypatch.setattr(prompts, "render_prompt", lambda name, **values: used.add(name) or real(name, **values))
    client = OfflineStandIn()
    for name in TRACE_TRANSFORMS.names():
        apply_extracts(rows[:2], [name], client)
    for ptype in ("collapse_consecutive", "answer"):
        transform_traces(rows[:4], {"extract": "step", "perturbation": {"type": ptype, "rate": 1.0},
                                    "restore": True}, client, seed=1)
    assert used == {p.stem for p in PROMPTS_DIR.glob("*.txt")}
    assert all(r.offline is not None for r in client.requests)


def test_simple_transforms_are_table_rows_and_the_llm_layer_knows_none():
    rows_of_table = [p.name for p in TRACE_TRANSFORMS if isinstance(p.impl, PromptTransform)]
    assert {"step", "list", "qa", "socratic", "markdown", "1-sentence", "cot"} <= set(rows_of_table)
    assert {p.module for p in TRACE_TRANSFORMS if not isinstance(p.impl, PromptTransform)} <= {
        f"meds1.traces.transforms.{m}" for m in ("note", "cot_step", "nejmcr_qa", "nejmcr_reason_clean", "no_llm")}
    llm_code = "".join(p.read_text() for p in (TRACES.parent / "llm").glob("*.py"))
    assert "meds1.traces" not in llm_code and "meds1.curation" not in llm_code and "importlib.import_module(" not in \
        llm_code.replace("importlib.import_module(_EXPORTS", "")


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
    result = run_extracts(rows[:2] + [dict(rows[2], Complex_CoT="")], ["step"], client)
    assert result.traces == [rows[0]["Complex_CoT"], rows[1]["Complex_CoT"], ""]
    assert len(client.requests) == 2
    assert result.failures == [["extract:step: no usable text in the reply"]] * 2 + [[]]


def test_a_failed_call_keeps_the_rows_input_and_later_transforms_skip_it(rows):
    failing = {rows[1]["id"]}
    client = Scripted(lambda r: None if r.payload["id"] in failing else offline_answer(r)[0])
    result = run_extracts(rows[:3], ["cot", "step"], client)
    assert result.traces[1] == rows[1]["Complex_CoT"] and result.questions[1] == rows[1]["Question"]
    assert result.failures[1] == ["extract:cot: gave_up_500: scripted failure"]
    assert [r.payload["id"] for r in client.requests].count(rows[1]["id"]) == 1  # step was not asked for it
    assert all(step_numbers(t) for t in (result.traces[0], result.traces[2]))


@pytest.mark.parametrize("reply, expected", [("ISBAR", "ISBAR"), ("**SOAPIE**", "SOAPIE"), ("no idea", "SOAP")])
def test_note_uses_the_format_the_llm_picks(rows, reply, expected):
    def answer(request):
        if request.task == "extract:note-select":
            return reply
        return offline_answer(request)[0]

    client = Scripted(answer)
    traces, _ = apply_extracts(rows[:1], ["note"], client)
    assert _headings(traces[0]) == list(note_formats()[expected]["sections"])
    note_request = client.requests[1]
    assert note_request.payload["note_format"] == expected and f"a {expected} clinical note" in note_request.prompt


def test_nejmcr_qa_rewrites_question_and_response_and_keeps_the_case_report(rows):
    mcq = rows[0]
    result = run_extracts([mcq], ["nejmcr-qa"], OfflineStandIn())
    assert result.traces == [mcq["Complex_CoT"]]
    assert result.responses == [mcq["answer"]]  # "Right coronary artery"
    assert "A. " not in result.questions[0] and mcq["Question"].split("\n")[0][:60] in result.questions[0]


def test_nejmcr_clean_and_purity_remove_case_report_mentions(rows):
    row = dict(rows[0], Complex_CoT="The case report mentions that the reticulocyte count is low. "
                                     "According to the case report, parvovirus B19 infection halts erythropoiesis.")
    cleaned, _ = apply_extracts([row], ["nejmcr-clean"], OfflineStandIn())
    assert cleaned == ["The reticulocyte count is low. Parvovirus B19 infection halts erythropoiesis."]
    pure, _ = apply_extracts([row], ["nejmcr-reason-purity"], OfflineStandIn())
    assert "case report" not in pure[0].lower() and pure[0].count("\n") == 1
