"""Step parsing/rendering and LLM-output clean-up (meds1.traces.steps)."""
from __future__ import annotations

from meds1.traces.steps import (
    Step,
    drop_filler,
    is_step_format,
    parse_steps,
    render_steps,
    short_title,
    split_paragraphs,
    split_sentences,
    step_numbers,
    strip_preamble,
)


def test_parse_and_render_round_trip():
    steps = [Step("Assess the anemia", "Hb 6 g/dL.\n\nLow reticulocytes."), Step("Conclude", "Parvovirus B19.")]
    text = render_steps(steps)
    assert text.startswith("## Step 1: Assess the anemia\n\nHb 6 g/dL.")
    assert step_numbers(text) == [1, 2]
    assert parse_steps(text) == steps


def test_parse_accepts_heading_variants_and_ignores_text_before_step_one():
    text = "Intro line\n### Step 1 - First\nbody one\n## step 2. Second\nbody two\n##Step 3:\nbody three"
    steps = parse_steps(text)
    assert [s.title for s in steps] == ["First", "Second", ""]
    assert [s.body for s in steps] == ["body one", "body two", "body three"]
    assert is_step_format(text, min_steps=3) and not is_step_format("no steps here")


def test_render_renumbers_from_one():
    text = render_steps(parse_steps("## Step 4: D\n\nd\n\n## Step 2: B\n\nb"))
    assert step_numbers(text) == [1, 2] and "## Step 1: D" in text


def test_sentences_do_not_split_after_abbreviations_or_decimals():
    text = "Dr. Smith saw a 45-year-old man. His Hb was 6.5 g/dL, e.g. very low! Is it B12? Maybe."
    assert split_sentences(text) == ["Dr. Smith saw a 45-year-old man.", "His Hb was 6.5 g/dL, e.g. very low!",
                                     "Is it B12?", "Maybe."]
    assert split_paragraphs("a\n\n  \n b \n\nc") == ["a", "b", "c"]


def test_fillers_and_titles():
    assert drop_filler("Okay, so, hmm, the count is low.") == "The count is low."
    assert short_title("Alright, the reticulocyte count is only 0.4%, which is quite low.") == \
        "The reticulocyte count is only 0.4%"


def test_strip_preamble_fences_and_sign_off():
    raw = ("Sure! Here is the rewritten reasoning in steps:\n\n"
           "```markdown\n## Step 1: A\n\nx\n\n## Step 2: B\n\ny\n```\nLet me know if you need anything else.")
    assert strip_preamble(raw) == "## Step 1: A\n\nx\n\n## Step 2: B\n\ny"
    assert strip_preamble("Here's the rewritten trace:\n- a\n- b") == "- a\n- b"
    assert strip_preamble("Certainly.\nQ: why?\nA: because") == "Q: why?\nA: because"


def test_strip_preamble_keeps_natural_openings_and_cuts_to_anchor():
    trace = "Okay, let's think about this. The patient is 45."
    assert strip_preamble(trace) == trace
    assert strip_preamble("I rewrote it for you as asked, enjoy\n## Step 1: A\nx", anchor=r"^#+\s*Step\s*1\b") == \
        "## Step 1: A\nx"
