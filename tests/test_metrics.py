"""compute_metrics: Wilson and bootstrap CIs, repetitions, the unweighted overall, approaches, determinism."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from statsmodels.stats.proportion import proportion_confint

from meds1.errors import MedS1Error
from meds1.evaluate.metrics import COMPUTED_KEYS, compute_metrics, wilson_interval

OPTIONS = {"A": "alpha", "B": "beta", "C": "gamma", "D": "delta"}
NO_ANSWER = "I am not sure."


def gen(item_id, answer, output, *, source="S", run=0, approach="default", reasoning=None):
    """One generations.jsonl line; ``output`` may be a letter (rendered as 'The answer is X.') or free text."""
    text = f"The answer is {output}." if output in OPTIONS else output
    return {"id": item_id, "source": source, "question": f"q {item_id}?", "options": OPTIONS, "answer_idx": answer,
            "output": text, "run": run, "approach": approach, "n_output_tokens": 5, "n_reasoning_tokens": reasoning}


def table(source, answers_and_outputs):
    """{id: (answer, [output per run])} -> records."""
    return [gen(i, ans, out, source=source, run=r) for i, (ans, outs) in answers_and_outputs.items()
            for r, out in enumerate(outs)]


# A hand-made 3-run table; None = an unparsed output.
THREE_RUNS = {
    "q1": ("A", ["A", "A", "B"]),          # run 0 right; majority A right; mean 2/3
    "q2": ("B", ["C", "B", "B"]),          # run 0 wrong; majority B right; mean 2/3
    "q3": ("C", ["A", "B", NO_ANSWER]),    # tie A/B -> earliest run's A: wrong; mean 0
    "q4": ("D", [NO_ANSWER, "D", "A"]),    # tie D/A -> D (seen first): right; run 0 unparsed; mean 1/3
    "q5": ("A", [NO_ANSWER] * 3),          # never parsed: wrong everywhere, not guessed
}


@pytest.fixture(scope="module")
def three_run_metrics():
    return compute_metrics(table("S", THREE_RUNS), bootstrap_resamples=500, seed=3)


@pytest.mark.parametrize(("correct", "n"), [(0, 10), (7, 10), (10, 10), (45, 60), (1, 1), (512, 1000)])
def test_wilson_matches_statsmodels(correct, n):
    expected = proportion_confint(correct, n, alpha=0.05, method="wilson")
    assert wilson_interval(correct, n) == pytest.approx(list(expected), abs=1e-12)


def test_source_block_wilson_is_of_first_run_counts(three_run_metrics):
    block = three_run_metrics["sources"]["S"]
    assert (block["n"], block["correct"], block["accuracy"]) == (5, 1, 0.2)
    assert block["wilson"] == pytest.approx(list(proportion_confint(1, 5, method="wilson")))


def test_majority_and_mean_over_runs_on_three_runs(three_run_metrics):
    block = three_run_metrics["sources"]["S"]
    assert block["runs"] == 3
    assert block["majority"]["accuracy"] == pytest.approx(3 / 5)   # q1, q2, q4
    assert block["majority"]["wilson"] == pytest.approx(list(proportion_confint(3, 5, method="wilson")))
    assert block["mean_over_runs"]["accuracy"] == pytest.approx((2 / 3 + 2 / 3 + 0 + 1 / 3 + 0) / 5)
    lo, hi = block["mean_over_runs"]["ci"]
    assert 0 <= lo <= block["mean_over_runs"]["accuracy"] <= hi <= 1


def test_unparsed_is_counted_not_guessed(three_run_metrics):
    block = three_run_metrics["sources"]["S"]
    assert (block["parsed"], block["unparsed"]) == (3, 2)           # q4 and q5 unparsed at run 0
    assert three_run_metrics["per_item"] == {"q1": 1, "q2": 0, "q3": 0, "q4": 0, "q5": 0}


def test_single_run_has_no_repetition_blocks():
    block = compute_metrics([gen("q1", "A", "A"), gen("q2", "B", "A")])["sources"]["S"]
    assert (block["runs"], block["majority"], block["mean_over_runs"]) == (1, None, None)


def test_bootstrap_is_seeded_and_recorded():
    records = table("S", {f"q{i}": ("A", ["A" if i % 3 else "B"]) for i in range(40)})
    first = compute_metrics(records, bootstrap_resamples=300, seed=11)
    again = compute_metrics(records, bootstrap_resamples=300, seed=11)
    other = compute_metrics(records, bootstrap_resamples=300, seed=12)
    assert first["sources"]["S"]["bootstrap"] == again["sources"]["S"]["bootstrap"]
    assert first["sources"]["S"]["bootstrap"] != other["sources"]["S"]["bootstrap"]
    lo, hi = first["sources"]["S"]["bootstrap"]
    assert first["sources"]["S"]["accuracy"] == pytest.approx(26 / 40)
    assert lo < 26 / 40 < hi
    assert first["ci"] == {"level": 0.95, "wilson": True,
                           "bootstrap": {"method": "percentile", "resamples": 300, "seed": 11}}


def test_overall_is_the_unweighted_mean_of_sources():
    big = table("Big", {f"b{i}": ("A", ["A"]) for i in range(10)})             # 10/10
    small = table("Small", {"s1": ("A", ["B"]), "s2": ("B", ["B"]), "s3": ("C", ["A"]), "s4": ("D", ["A"])})  # 1/4
    overall = compute_metrics(big + small, bootstrap_resamples=400)["overall"]
    assert overall["accuracy"] == pytest.approx((1.0 + 0.25) / 2)              # not 11/14
    assert (overall["n"], overall["n_sources"]) == (14, 2)
    lo, hi = overall["ci"]
    assert 0.5 <= lo <= overall["accuracy"] <= hi <= 1.0                      # Big is constant at 1.0


def test_overall_ci_of_one_source_is_its_bootstrap():
    metrics = compute_metrics(table("S", {f"q{i}": ("A", ["A" if i % 2 else "C"]) for i in range(30)}))
    assert metrics["overall"]["ci"] == metrics["sources"]["S"]["bootstrap"]


def test_test_time_scaling_approaches_and_the_primary_one():
    records = [gen("q1", "A", "A", approach="immediate", reasoning=0), gen("q2", "B", "C", approach="immediate",
                                                                          reasoning=0),
               gen("q1", "A", "A", approach="budget_2048", reasoning=100),
               gen("q2", "B", "B", approach="budget_2048", reasoning=300)]
    metrics = compute_metrics(records, primary_approach="immediate")
    assert metrics["primary_approach"] == "immediate"
    assert metrics["sources"]["S"]["accuracy"] == 0.5                         # the headline is the primary approach
    tts = metrics["test_time_scaling"]
    assert list(tts) == ["budget_2048", "immediate"]                          # every approach, the primary included
    assert (tts["budget_2048"]["accuracy"], tts["budget_2048"]["mean_reasoning_tokens"]) == (1.0, 200.0)
    assert tts["budget_2048"]["sources"] == {"S": 1.0} and tts["immediate"]["accuracy"] == 0.5
    assert compute_metrics(records, primary_approach="budget_2048")["overall"]["accuracy"] == 1.0
    assert compute_metrics(records[:2])["test_time_scaling"] is None          # one approach: no block


def test_the_primary_approach_must_be_among_several():
    records = [gen("q1", "A", "B", approach="short"), gen("q1", "A", "A", approach="long")]
    with pytest.raises(MedS1Error, match="primary approach 'reasoning' is not among the generations' approaches"):
        compute_metrics(records)                                              # the default primary is "reasoning"
    assert compute_metrics(records[:1], primary_approach="reasoning")["primary_approach"] == "short"  # the only one


def test_ambiguous_answers_are_unparsed_and_counted():
    metrics = compute_metrics([gen("q1", "A", "The answer is A or B."), gen("q2", "B", "B")])
    block = metrics["sources"]["S"]
    assert (block["correct"], block["parsed"], block["unparsed"], block["ambiguous"]) == (1, 1, 1, 1)


def test_item_sources_name_the_source_of_every_paired_item():
    records = table("S", {"s1": ("A", ["A"])}) + table("T", {"t1": ("B", ["A"])})
    assert compute_metrics(records)["item_sources"] == {"s1": "S", "t1": "T"}


def test_same_input_gives_identical_json_in_any_order():
    records = table("S", THREE_RUNS) + table("T", {"t1": ("B", ["B", "A", "B"]), "t2": ("A", ["C", "C", "A"])})
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    extra = {"experiment": "x", "sampling": {"top_p": 1.0, "temperature": 0.0}}
    a = json.dumps(compute_metrics(records, extra=extra), indent=2)
    b = json.dumps(compute_metrics(shuffled, extra=dict(reversed(extra.items()))), indent=2)
    assert a == b


def test_shape_follows_the_contract():
    metrics = compute_metrics([gen("q1", "A", "A")], similarity=True, extra={"experiment": "e", "backend": "hf"})
    assert set(metrics) == set(COMPUTED_KEYS) | {"experiment", "backend"}
    assert metrics["matcher"]["similarity"] is True and metrics["matcher"]["version"] == "2"
    assert set(metrics["sources"]["S"]) == {"n", "correct", "accuracy", "wilson", "bootstrap", "parsed", "unparsed",
                                            "ambiguous", "runs", "majority", "mean_over_runs"}
    assert metrics["primary_approach"] == "default" and metrics["seed_compatible"]["accuracy"] == 1.0
    assert all(type(v) is float for v in metrics["sources"]["S"]["wilson"] + metrics["overall"]["ci"])


def test_similarity_flag_reaches_the_matcher():
    records = [gen("q1", "B", "it must be betta")]
    assert compute_metrics(records)["sources"]["S"]["correct"] == 0
    assert compute_metrics(records, similarity=True)["sources"]["S"]["correct"] == 1


@pytest.mark.parametrize(("records", "extra", "message"), [
    ([], None, "no generations"),
    ([{k: v for k, v in gen("q1", "A", "A").items() if k != "output"}], None, "key 'output'"),
    ([gen("q1", "A", "A"), gen("q1", "A", "B")], None, "both id 'q1' run 0"),
    ([gen("q1", "A", "A")], {"sources": {}}, "key 'sources'"),
])
def test_bad_input_is_a_one_line_error(records, extra, message):
    with pytest.raises(MedS1Error, match=message) as err:
        compute_metrics(records, extra=extra)
    assert "\n" not in str(err.value)


def test_benchmark_shaped_items_count_up_per_source():
    """The project's own 14 items of four benchmark sources, answered right exactly when their index is even."""
    from meds1.data.eval_items import load_eval_items

    items = load_eval_items({"file_path": str(Path(__file__).parent / "data" / "eval_items.json")})
    records = []
    for i, item in enumerate(items):
        wrong = next(k for k in item["options"] if k != item["answer_idx"])
        output = f"## Final Response\nThe answer is {item['answer_idx'] if i % 2 == 0 else wrong}."
        records.append({**item, "id": f"s{i}", "output": output, "run": 0, "approach": "default"})
    metrics = compute_metrics(records)
    assert sum(b["n"] for b in metrics["sources"].values()) == 14
    assert sum(b["correct"] for b in metrics["sources"].values()) == 7
    assert all(b["unparsed"] == 0 for b in metrics["sources"].values())
    assert metrics["overall"]["n_sources"] == 4
