"""Trace formats render the seed system's layouts exactly (seed-system.md §3.6), split back, and never put an
end-of-turn token inside a completion."""
from __future__ import annotations

import pytest

from meds1.errors import MedS1Error
from meds1.traces.examples import build_example
from meds1.traces.formats import TRACE_FORMATS, format_name, get_format

COT, RESPONSE = "Step 1: ST elevation in II, III, aVF.\nStep 2: inferior wall.", "The right coronary artery (B)."

# The seed's data/utils/formatting.py, written out: every format but huatuo prefixes "Answer: ".
SEED_LAYOUTS = {
    "huatuo": f"## Thinking\n\n{COT}\n\n## Final Response\n\n{RESPONSE}",
    "qwen": f"<|im_start|>think\n{COT}\n<|im_start|>answer\nAnswer: {RESPONSE}",
    "nemotron": f"<think>{COT}</think>Answer: {RESPONSE}",
    "llama": f"<|start_header_id|>think<|end_header_id|>\n{COT}\n<|start_header_id|>answer<|end_header_id|>\n"
             f"Answer: {RESPONSE}",
}
OURS = {"think-tags": f"<think>\n{COT}\n</think>\n\n{RESPONSE}"}
EXPECTED = SEED_LAYOUTS | OURS
# curation extract: none (the seed's no-cot mode)
ANSWER_ONLY = {
    "huatuo": f"## Final Response\n\n{RESPONSE}",
    "qwen": f"<|im_start|>answer\nAnswer: {RESPONSE}",
    "nemotron": f"Answer: {RESPONSE}",
    "llama": f"<|start_header_id|>answer<|end_header_id|>\nAnswer: {RESPONSE}",
    "think-tags": RESPONSE,
}


def test_every_registered_format_is_covered():
    assert set(TRACE_FORMATS.names()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_render_matches_the_seed_layout(name):
    assert get_format(name).render(COT, RESPONSE) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("empty", ["", None, "  \n"])
def test_without_reasoning_the_seed_keeps_the_answer_section(name, empty):
    assert get_format(name).render(empty, RESPONSE) == ANSWER_ONLY[name]


@pytest.mark.parametrize("name", ["qwen", "nemotron", "llama"])
def test_an_answer_that_already_says_answer_is_not_prefixed_twice(name):
    rendered = get_format(name).render(COT, "Answer: B")
    assert rendered.endswith("Answer: B") and rendered.count("Answer:") == 1


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_markers_and_split(name):
    fmt = get_format(name)
    rendered = fmt.render(COT, RESPONSE)
    assert rendered.startswith(fmt.think_open) and fmt.think_open.strip()
    assert rendered.index(COT) + len(COT) + len(fmt.before_answer) == rendered.rindex(fmt.answer_marker)
    assert fmt.split(rendered) == (COT, RESPONSE)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_completion_ends_its_turn_only_at_the_end(tiny_model_dir, name):
    """A mid-completion end-of-turn teaches the model to stop before answering (the old llama format did)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for template in (tokenizer.chat_template, LLAMA3_TEMPLATE):
        example = build_example("Which artery?", COT, RESPONSE, fmt=name)
        prompt = tokenizer.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True,
                                               chat_template=template)
        full = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False,
                                             chat_template=template)
        completion = full[len(prompt):]
        end = "<|im_end|>" if template is not LLAMA3_TEMPLATE else "<|eot_id|>"
        assert completion.count(end) == 1 and completion.rstrip().endswith(end), completion
        assert "<|eot_id|>" not in completion[:completion.rindex(end)] and "<|im_end|>" not in completion[:-12]


# Llama 3's chat layout, reduced to what matters here (its own template also writes a date header).
LLAMA3_TEMPLATE = ("{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}"
                   "<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant"
                   "<|end_header_id|>\n\n{% endif %}")


def test_braces_in_a_trace_are_kept_verbatim():
    cot = "dose {answer} {cot} {0}"
    assert get_format("think-tags").render(cot, "B") == "<think>\ndose {answer} {cot} {0}\n</think>\n\nB"


def test_split_without_marker_is_all_answer():
    assert get_format("huatuo").split("  B. Folate deficiency ") == ("", "B. Folate deficiency")


def test_only_nemotron_brings_its_own_system_prompt():
    prompts = {name: get_format(name).system_prompt for name in EXPECTED}
    assert prompts == {**{n: None for n in EXPECTED}, "nemotron": "detailed thinking on"}


def test_legacy_huatuo_format_flag_experiment_format_and_model_family():
    assert format_name({"huatuo_format": True}, {"format": "llama"}, "qwen") == "huatuo"
    assert format_name({"format": "qwen", "huatuo_format": True}) == "qwen"
    assert format_name({"huatuo_format": False}, {"format": "llama"}) == "llama"
    assert format_name({"huatuo_format": False}, {"format": "llama"}, "think-tags") == "think-tags"
    assert format_name(None, {"format": "nemotron"}) == "nemotron"
    assert format_name({}) == format_name(None) == "huatuo"


def test_unknown_format_is_one_line_error_with_suggestion():
    with pytest.raises(MedS1Error) as err:
        get_format("huatou", experiment="exp1", key="curation.format")
    text = str(err.value)
    assert "\n" not in text
    assert "exp1" in text and "curation.format" in text and "did you mean 'huatuo'" in text
