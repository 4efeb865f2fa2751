"""Trace formats render exactly as specified, split back into (reasoning, answer), and drop empty reasoning."""
from __future__ import annotations

import pytest

from meds1.errors import MedS1Error
from meds1.traces.formats import TRACE_FORMATS, format_from_curation, get_format

COT, ANSWER = "Step 1: ST elevation in II, III, aVF.\nStep 2: inferior wall.", "The answer is B."

EXPECTED = {
    "huatuo": f"## Thinking\n\n{COT}\n\n## Final Response\n\n{ANSWER}",
    "qwen": f"<think>\n{COT}\n</think>\n\n{ANSWER}",
    "m1": f"<|im_start|>think\n{COT}\n<|im_start|>answer\n{ANSWER}",
    "nemotron": f"<think>{COT}</think>{ANSWER}",
    "llama": f"<|start_header_id|>think<|end_header_id|>\n\n{COT}<|eot_id|>"
             f"<|start_header_id|>answer<|end_header_id|>\n\n{ANSWER}",
}


def test_every_registered_format_is_covered():
    assert set(TRACE_FORMATS.names()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_render_matches_the_specified_layout(name):
    assert get_format(name).render(COT, ANSWER) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_answer_marker_precedes_the_answer_and_split_inverts_render(name):
    fmt = get_format(name)
    rendered = fmt.render(COT, ANSWER)
    assert rendered.rindex(fmt.answer_marker) < rendered.index(ANSWER)
    assert rendered[rendered.rindex(fmt.answer_marker) + len(fmt.answer_marker):].strip() == ANSWER
    assert rendered.startswith(fmt.think_open)
    assert fmt.think_close in rendered[rendered.index(COT) + len(COT):]
    assert fmt.split(rendered) == (COT, ANSWER)


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("empty", ["", None, "  \n"])
def test_empty_reasoning_drops_the_thinking_part(name, empty):
    assert get_format(name).render(empty, ANSWER) == ANSWER


def test_braces_in_a_trace_are_kept_verbatim():
    cot = "dose {answer} {cot} {0}"
    assert get_format("nemotron").render(cot, "B") == "<think>dose {answer} {cot} {0}</think>B"


def test_split_without_marker_is_all_answer():
    assert get_format("huatuo").split("  B. Folate deficiency ") == ("", "B. Folate deficiency")


def test_only_nemotron_brings_its_own_system_prompt():
    prompts = {name: get_format(name).system_prompt for name in EXPECTED}
    assert prompts == {**{n: None for n in EXPECTED}, "nemotron": "detailed thinking on"}


def test_legacy_huatuo_format_flag_and_model_family():
    assert format_from_curation({"huatuo_format": True}).name == "huatuo"
    assert format_from_curation({"format": "qwen", "huatuo_format": True}).name == "qwen"
    assert format_from_curation({"huatuo_format": False}, {"format": "llama"}).name == "llama"
    assert format_from_curation({}).name == "huatuo"


def test_unknown_format_is_one_line_error_with_suggestion():
    with pytest.raises(MedS1Error) as err:
        get_format("huatou", experiment="exp1", key="curation.format")
    text = str(err.value)
    assert "\n" not in text
    assert "exp1" in text and "curation.format" in text and "did you mean 'huatuo'" in text
