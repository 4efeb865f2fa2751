"""difficulty-substring and difficulty-n-gram on the shared 150-row HuatuoGPT-o1 sample."""
from __future__ import annotations

import json
import types

import pandas as pd
import pytest

from curation_helpers import run_method
from meds1.curation.methods import difficulty_ngram as sd
from meds1.curation.methods import difficulty_substring as sds
from meds1.plugins import SELECTION_METHODS
from meds1.data.train import load_train_dataset


@pytest.fixture(scope="module")
def df(shared_data):
    return load_train_dataset({"file_path": str(shared_data / "huatuogpt-o1_demo_data.json"), "key": "shared"})


def ctx(seed=0):
    return types.SimpleNamespace(seed=seed, spec={"experiment": "t"}, cache_dir="unused")


def run(method, df, seed=0, **cur):
    return run_method(method, df, {"n_samples": 30, **cur}, ctx(seed))


def test_plugins_register_every_method():
    for name in ("difficulty-substring", "difficulty-n-gram", "embedding-diversity", "embedding-similarity",
                 "novelty-answer", "s1"):
        assert name in SELECTION_METHODS


# --------------------------------------------------------------------------------------------------------- substring
def test_marker_file_lists_the_issue_markers():
    assert set(sds.self_correction_markers()) == {"confus", "mislead", "overlook", "double-check", "confirm"}


def test_substring_keeps_only_traces_with_a_marker(df):
    sel = run("difficulty-substring", df)
    markers = ("confus", "mislead", "overlook", "double-check", "confirm")
    has_marker = [any(m in t.lower() for m in markers) for t in df["Complex_CoT"]]
    assert len(sel.order) == 30 and len(set(sel.order)) == 30
    assert all(has_marker[i] for i in sel.order)
    assert set(sel.removed) == {i for i, ok in enumerate(has_marker) if not ok}
    assert set(sel.removed.values()) == {("difficulty", "no self-correction marker")}
    assert all((sel.columns["self_correction_markers"][i] is None) == (not has_marker[i]) for i in range(len(df)))


def test_substring_is_case_insensitive_and_substring_based():
    frame = pd.DataFrame({"Complex_CoT": ["I was CONFUSED at first.", "Let me Double-Check.", "Plain reasoning."]})
    sel = run_method("difficulty-substring", frame, {"n_samples": 10}, ctx())
    assert sel.order == [0, 1] and list(sel.removed) == [2]
    assert sel.columns["self_correction_markers"] == ["confus", "double-check", None]


def test_substring_same_seed_same_rows_other_seed_other_rows(df):
    a, b, c = run("difficulty-substring", df, 1), run("difficulty-substring", df, 1), run("difficulty-substring", df, 2)
    assert a.order == b.order and a.order != c.order


def test_substring_with_fewer_hard_rows_than_n_keeps_them_all(df):
    sel = run("difficulty-substring", df, n_samples=1000)
    assert len(sel.order) == len(df) - len(sel.removed)


# ----------------------------------------------------------------------------------------------------------- n-gram
def test_ngram_normalises_punctuation_and_prefers_the_longest_phrase():
    weights, _, per_words = sd.reasoning_lexicon()
    # "wait let s think hmm but wait" = 7 words: wait + let s think + hmm + but wait (not also "wait")
    expected = (weights["wait"] + weights["let s think"] + weights["hmm"] + weights["but wait"]) * per_words / 7
    assert sd.reasoning_score("Wait... Let's think. Hmm, but wait!") == pytest.approx(expected)
    assert sd.reasoning_score("double-check") == pytest.approx(weights["double check"] * per_words / 2)
    assert sd.reasoning_score("awaited thinking") == 0.0  # whole words only
    assert sd.reasoning_score("") == 0.0


def test_lexicon_file_has_positive_weights_and_the_issue_phrases():
    weights, _, _ = sd.reasoning_lexicon()
    assert all(w > 0 for w in weights.values())
    for phrase in ("let s think", "hmm", "wait", "alright", "double check", "on second thought"):
        assert phrase in weights
    raw = json.loads((sd.RESOURCES / "reasoning_lexicon.json").read_text())["phrases"]
    assert len(weights) == len(raw)  # no two phrases collapse to the same normalised form


def test_ngram_takes_the_top_n_by_score(df):
    sel = run("difficulty-n-gram", df)
    scores = sel.columns["ngram_score"]
    assert scores == [sd.reasoning_score(t) for t in df["Complex_CoT"]]
    chosen = [scores[i] for i in sel.order]
    assert len(sel.order) == 30 and chosen == sorted(chosen, reverse=True)
    assert min(chosen) >= max(scores[i] for i in range(len(df)) if i not in set(sel.order))
    assert min(chosen) > 0


def test_ngram_ties_keep_row_order():
    frame = pd.DataFrame({"Complex_CoT": ["plain", "hmm yes", "plain too", "hmm yes", "hmm yes"]})
    sel = run_method("difficulty-n-gram", frame, {"n_samples": 2}, ctx())
    assert sel.order == [1, 3]
