"""The answer matcher on hand-written output styles: each case asserts the chosen letter and the deciding tier."""
from __future__ import annotations

import pytest

from meds1.matcher import MATCHER_VERSION, Match, answer_section, match, matcher_rules

DRUGS = {"A": "Pyrazinamide", "B": "Chloroquine", "C": "Ethambutol", "D": "Tetracycline"}

# (output, expected letter, expected parsed_by) -- all against DRUGS
CASES = [
    # strict: "answer is X" / "answer: X"
    ("The answer is (C)", "C", "strict"),
    ("The answer is C.", "C", "strict"),
    ("the answer is c", "C", "strict"),
    ("The answer is a.", "A", "strict"),
    ("Answer: D", "D", "strict"),
    ("answer:B", "B", "strict"),
    ("Final answer: B", "B", "strict"),
    ("The correct answer is **B. Chloroquine**", "B", "strict"),
    ("The answer is **D**.", "D", "strict"),
    ("The correct option is D.", "D", "strict"),
    ("The answer would be C because it damages the optic nerve.", "C", "strict"),
    ("The answer is option B", "B", "strict"),
    ("So the answer is: (a)", "A", "strict"),
    ("The answer is A. The answer is C.", "C", "strict"),
    ("Answer: D\n\nExplanation: Option A is hepatotoxic and B causes retinopathy.", "D", "strict"),
    ("The answer is [B]", "B", "strict"),
    # answer sections: the last marker decides, reasoning before it is ignored
    ("## Thinking\nA or B?\n## Final Response\nThe answer is (C).", "C", "strict"),
    ("## Thinking\nOption A seems plausible, but B is wrong.\n\n## Final Response\n\nD", "D", "letter"),
    ("## Thinking\nThe answer is A.\n## Final Response\nThe answer is B.", "B", "strict"),
    ("### Final Response\n**C. Ethambutol** causes optic neuritis.", "C", "letter"),
    ("<think>Maybe A. Or B? Option D is wrong.</think>\nThe answer is C.", "C", "strict"),
    ("<think>The answer is A, no wait, B.</think>\n**C**", "C", "letter"),
    ("<think>Could be (A) or (D)</think>Ethambutol.", "C", "option_text"),
    ("<think>Let me consider A and B carefully", None, "none"),     # truncated thinking never answered
    ("<think>The answer is A</think>", None, "none"),                # nothing after the thinking
    ("<|start_header_id|>think<|end_header_id|>\n\nA? B?<|start_header_id|>answer<|end_header_id|>\n\nC", "C",
     "letter"),
    ("<|im_start|>think\nMaybe (A).\n<|im_start|>answer\nAnswer: B", "B", "strict"),
    ("Reasoning: (A) fits poorly.\n## Answer\nB", "B", "letter"),
    ("I considered A and D.\nFinal answer: C", "C", "strict"),
    ("Answer: Ethambutol is the culprit.", "C", "option_text"),
    ("Option A is tempting.\nAnswer: the one causing optic neuritis, ethambutol.", "C", "option_text"),
    ("The answer is A.\n## Final Response\nI am not sure.", None, "none"),
    # letter: standalone, marked option letters
    ("**B. Chloroquine**", "B", "letter"),
    ("Option B", "B", "letter"),
    ("(B)", "B", "letter"),
    ("B", "B", "letter"),
    ("B.", "B", "letter"),
    ("B!", "B", "letter"),
    ("B)", "B", "letter"),
    ("C: Ethambutol", "C", "letter"),
    ("- D", "D", "letter"),
    ("*A*", "A", "letter"),
    ("A is correct.", "A", "letter"),
    ("I think B is correct.", "B", "letter"),
    ("Diagnosis: B", "B", "letter"),
    ("I would choose D.", "D", "letter"),
    ("The best choice here is clear. B fits.", "B", "letter"),
    ("A or B, probably B", "B", "letter"),                       # several letters: the last one decides
    ("Option A is tempting. B fits.", "B", "letter"),
    ("The answer is E, otherwise (C).", "C", "letter"),          # E is no option: strict finds nothing valid
    # not letters: inside words, articles, pronouns, abbreviations, noun modifiers
    ("Antibiotics target DNA.", None, "none"),
    ("A 45-year-old man presents with fever.", None, "none"),
    ("A patient with a cough.", None, "none"),
    ("I cannot tell.", None, "none"),
    ("Vitamin D deficiency.", None, "none"),
    ("Hepatitis B virus infection", None, "none"),
    ("E. coli infection", None, "none"),
    ("B-cell lymphoma", None, "none"),
    ("Fever of 38°C.", None, "none"),
    ("Crohn's disease", None, "none"),
    ("the answer is a combination of drugs", None, "none"),
    ("The answer is B12 deficiency", None, "none"),
    ("The answer is E.", None, "none"),
    ("", None, "none"),
    ("   \n\n  ", None, "none"),
    # option text
    ("It is ethambutol, which causes optic neuritis.", "C", "option_text"),
    ("I think the drug is ETHAMBUTOL!", "C", "option_text"),
    ("tetracycline", "D", "option_text"),
    ("Pyrazinamide and chloroquine both fit", None, "none"),    # two options' texts: ambiguous, not guessed
    ("Ethambutols are a class", None, "none"),                  # whole words only
    # a final answer that names two or more options is ambiguous: never correct, never guessed
    ("A or B", None, "ambiguous"),
    ("Both (A) and (C) are plausible", None, "ambiguous"),
    ("The answer is B or C.", None, "ambiguous"),
    ("Answer: A, C", None, "ambiguous"),
    ("The answer is (B)/(D)", None, "ambiguous"),
    ("**B** and **D**", None, "ambiguous"),
    ("Answer: (B) or (B)", "B", "strict"),                      # the same option twice is one option
    ("The answer is C and I am sure of it.", "C", "strict"),    # "I am": the pronoun, not option I
    ("The answer is A, because it is hepatotoxic.", "A", "strict"),
    # the capital article / pronoun in the strict tier
    ("Answer: A 45-year-old man with optic neuritis needs (C)", "C", "letter"),
    ("Answer: I think it is D", "D", "letter"),
]


@pytest.mark.parametrize(("output", "letter", "parsed_by"), CASES, ids=[repr(c[0])[:50] for c in CASES])
def test_output_styles(output, letter, parsed_by):
    got = match(output, DRUGS)
    assert (got.letter, got.parsed_by) == (letter, parsed_by)
    assert (got.letter is None) == (got.letters == [] or got.ambiguous)
    assert not got.ambiguous or len(got.letters) > 1
    assert all(x in DRUGS for x in got.letters)


def test_case_count_meets_the_brief():
    assert len(CASES) >= 60


@pytest.mark.parametrize(("output", "options", "letter", "parsed_by"), [
    ("The most likely next step is amniocentesis.", {"A": "Amniocentesis", "B": "Repeat amniocentesis"}, "A",
     "option_text"),
    ("Repeat amniocentesis is indicated.", {"A": "Amniocentesis", "B": "Repeat amniocentesis"}, "B", "option_text"),
    ("Class II div 2 malocclusion", {"A": "Class II div 1", "B": "Class II div 2", "C": "Class III"}, "B",
     "option_text"),
    ("Yes.", {"A": "yes", "B": "no", "C": "maybe"}, "A", "option_text"),
    ("There is no evidence, so yes.", {"A": "yes", "B": "no", "C": "maybe"}, None, "none"),
    ("Diamond", {"A": "Arkansas.", "B": "Silicon carbide.", "C": "Alumina.", "D": "Diamond."}, "D", "option_text"),
    ("I. Herpes zoster", {k: f"opt {k}" for k in "ABCDEFGHIJ"}, "I", "letter"),
    ("The answer is (I)", {k: f"opt {k}" for k in "ABCDEFGHIJ"}, "I", "strict"),
    ("I think so.", {k: f"opt {k}" for k in "ABCDEFGHIJ"}, None, "none"),
    # a real output whose options run to J: two options named as the answer
    ("## Final Response\n\nAnswer: A and I", {k: f"opt {k}" for k in "ABCDEFGHIJ"}, None, "ambiguous"),
    ("The answer is I.", {k: f"opt {k}" for k in "ABCDEFGHIJ"}, "I", "strict"),
])
def test_option_sets(output, options, letter, parsed_by):
    got = match(output, options)
    assert (got.letter, got.parsed_by) == (letter, parsed_by)


def test_letters_record_every_valid_letter_of_the_deciding_tier():
    assert match("A or B, probably B", DRUGS) == Match(letters=["A", "B"], letter="B", parsed_by="letter")
    assert match("The answer is B. Hmm, the answer is A.", DRUGS).letters == ["B", "A"]
    ambiguous = match("Answer: A and C", DRUGS)
    assert ambiguous == Match(letters=["A", "C"], letter=None, parsed_by="ambiguous") and ambiguous.ambiguous


@pytest.mark.parametrize(("output", "letter", "parsed_by"), [
    ("The drug is ethambutole.", "C", "similarity"),                   # a misspelling: no exact option text
    ("It is chloroquin toxicity", "B", "similarity"),
    ("Nothing here resembles any option", None, "none"),
    ("The answer is (C)", "C", "strict"),                               # earlier tiers still come first
])
def test_similarity_tier_only_when_asked(output, letter, parsed_by):
    got = match(output, DRUGS, similarity=True)
    assert (got.letter, got.parsed_by) == (letter, parsed_by)
    if parsed_by == "similarity":
        assert match(output, DRUGS).parsed_by == "none"


def test_answer_section_is_from_the_last_marker():
    assert answer_section("x Answer: A\n## Final Response\nB") == "## Final Response\nB"
    assert answer_section("no marker at all") == "no marker at all"
    assert answer_section("pre <think>open and never closed") == "pre "


def test_rules_describe_the_tiers_in_order():
    rules = matcher_rules(similarity=False)
    assert [r.split(":")[0] for r in rules] == ["section", "strict", "letter", "option_text", "choice", "ambiguous"]
    assert [r.split(":")[0] for r in matcher_rules(similarity=True)][-3] == "similarity"
    assert all("\n" not in r for r in rules)
    assert MATCHER_VERSION == "2"
