"""The seed-compatible scorer follows the seed's match_choice and max(first, last) rule (seed-system.md §5.4), one
test per rule, and is reported beside our accuracy."""
from __future__ import annotations

import json

import pytest

from meds1.evaluate.metrics import compute_metrics
from meds1.evaluate.seed_scoring import SeedMatch, seed_match, seed_source_accuracy
from meds1.matcher import match

DRUGS = {"A": "Pyrazinamide", "B": "Chloroquine", "C": "Ethambutol", "D": "Tetracycline"}


# 1. the text after the last occurrence of each marker, in turn
@pytest.mark.parametrize("text, first, last", [
    ("answer is A <|start_header_id|>answer<|end_header_id|> the answer is B", "B", "B"),
    ("the answer is A. Answer: the answer is C", "C", "C"),
    ("the answer is A\n## Final Response\n\nthe answer is D", "D", "D"),
    ("the answer is A\n## Final Response\nthe answer is D", "A", "D"),    # needs the two newlines to split
    ("<think>the answer is A</think>the answer is B", "B", "B"),
    ("Answer: the answer is C </think> so (D)", "D", "D"),             # "in turn": </think> cut comes last
])
def test_split_markers_in_turn(text, first, last):
    assert (seed_match(text, DRUGS).first, seed_match(text, DRUGS).last) == (first, last)


# 2. strict: "answer is" + A-N, case-sensitive, first and last, any letter A-N
def test_strict_pattern_takes_first_and_last_and_any_letter_a_to_n():
    assert seed_match("the answer is B, no, the answer is C", DRUGS) == SeedMatch("B", "C", 1)
    assert seed_match("the answer is N", DRUGS) == SeedMatch("N", "N", 1)     # not an option: still taken
    assert seed_match("The answer is B12 deficiency", DRUGS).first == "B"      # no word boundary
    assert seed_match("Answer is N", DRUGS).kind == 3                         # case-sensitive "answer is"


# 3. loose: a valid option letter after a non-word character / "is " / start, not "A " as an article
@pytest.mark.parametrize("text, expected", [
    ("(B) fits", SeedMatch("B", "B", 1)),
    ("I pick C.", SeedMatch("C", "C", 1)),
    ("B and then D", SeedMatch("B", "D", 1)),
    ("A patient with fever (C)", SeedMatch("C", "C", 1)),    # "A " is the article
])
def test_loose_pattern(text, expected):
    assert seed_match(text, DRUGS) == expected


def test_loose_pattern_only_takes_letters_of_the_options():
    assert seed_match("E is the one", DRUGS).kind == 3           # 4 options: A-D only


# 4. option text: last = latest last occurrence; first = the LATEST first occurrence (the seed's quirk)
def test_option_text_first_is_the_seed_quirk():
    text = "chloroquine first, then ethambutol, and again chloroquine"
    assert seed_match(text, DRUGS) == SeedMatch("C", "B", 2)    # first: ethambutol starts later than chloroquine


# 5. fallback: most similar option to the whole text, ties to the later option; never abstains
def test_fallback_always_guesses():
    assert seed_match("", DRUGS) == SeedMatch("D", "D", 3)      # all ratios 0: the last option wins the tie
    assert seed_match("tetracyclin", DRUGS) == SeedMatch("D", "D", 3)
    assert match("", DRUGS).letter is None                      # ours abstains


# 6. per source: the better of first-letter and last-letter accuracy
def test_source_accuracy_is_max_of_first_and_last():
    matches = [SeedMatch("A", "B", 1), SeedMatch("C", "C", 1), SeedMatch("A", "D", 2)]
    block = seed_source_accuracy(matches, ["B", "C", "D"])
    assert (block["first_correct"], block["last_correct"], block["accuracy"]) == (1, 3, 1.0)


def test_metrics_report_both_accuracies():
    def record(i, answer, output, source):
        return {"id": f"{source}{i}", "source": source, "question": "q", "options": DRUGS, "answer_idx": answer,
                "output": output, "run": 0, "approach": "default"}
    records = [record(0, "D", "", "S"), record(1, "C", "ethambutol", "S"), record(2, "A", "(A) or (B)", "T"),
               record(3, "B", "the answer is B", "T")]
    metrics = compute_metrics(records, bootstrap_resamples=100)
    assert metrics["overall"]["accuracy"] == pytest.approx((1 / 2 + 1 / 2) / 2)     # ours: "" and "(A) or (B)" fail
    seed = metrics["seed_compatible"]
    assert seed["sources"]["S"]["accuracy"] == 1.0 and seed["sources"]["S"]["guessed"] == 1
    assert seed["sources"]["T"]["accuracy"] == 1.0                                   # first letter of "(A) or (B)"
    assert seed["accuracy"] == 1.0 and "max(first" in seed["rule"]


def test_the_150_huatuogpt_responses(shared_data):
    """Both accuracies on the 150 shared HuatuoGPT-o1 responses (the closing note of issue 15 reports them)."""
    rows = json.loads((shared_data / "huatuogpt-o1_demo_data.json").read_text())
    records = [{"id": str(i), "source": "huatuo-demo", "question": r["question"], "options": r["options"],
                "answer_idx": r["answer_idx"], "output": r["Response"], "run": 0, "approach": "default"}
               for i, r in enumerate(rows)]
    metrics = compute_metrics(records, bootstrap_resamples=100)
    ours, seed = metrics["sources"]["huatuo-demo"], metrics["seed_compatible"]["sources"]["huatuo-demo"]
    assert (ours["n"], ours["correct"]) == (150, 34)                  # 22.7 %: 107 unparsed, 1 ambiguous
    assert (ours["unparsed"], ours["ambiguous"]) == (108, 1)
    assert (seed["first_correct"], seed["last_correct"]) == (65, 61)  # 43.3 %: the seed always guesses
    assert seed["accuracy"] == pytest.approx(65 / 150) and seed["guessed"] == 78
