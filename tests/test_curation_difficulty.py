"""difficulty-substring, difficulty-n-gram (the seed's scorer, hand-computed) and selection order on the project's own
demo set."""
from __future__ import annotations

import json
import random
import types

import pandas as pd
import pytest

from curation_helpers import DEMO_SFT, demo_rows, run_method
from meds1.curation.methods import difficulty_ngram as ng
from meds1.curation.methods import difficulty_substring as sub
from meds1.data.train import load_train_dataset
from meds1.plugins import SELECTION_METHODS


@pytest.fixture(scope="module")
def df():
    return demo_rows()


def ctx(seed=0):
    return types.SimpleNamespace(seed=seed, spec={"experiment": "t"}, cache_dir="unused")


def run(method, df, seed=0, **cur):
    return run_method(method, df, {"n_samples": 30, **cur}, ctx(seed))


def test_plugins_register_every_method():
    for name in ("difficulty-substring", "difficulty-n-gram", "embedding-diversity", "embedding-similarity",
                 "novelty-answer", "s1", "random", "all"):
        assert name in SELECTION_METHODS


# --------------------------------------------------------------------------------------------------------- substring
def test_marker_file_lists_the_seed_markers():
    assert set(sub.self_correction_markers()) == {"confus", "mislead", "overlook", "double-check", "confirm"}


def test_substring_keeps_only_traces_with_a_marker(df):
    markers = ("confus", "mislead", "overlook", "double-check", "confirm")
    has_marker = [any(m in t.lower() for m in markers) for t in df["Complex_CoT"]]
    assert 30 < sum(has_marker) < len(df)  # the demo set has both kinds
    sel = run("difficulty-substring", df)
    assert len(sel.order) == 30 and len(set(sel.order)) == 30 and all(has_marker[i] for i in sel.order)
    assert set(sel.removed) == {i for i, ok in enumerate(has_marker) if not ok}
    assert set(sel.removed.values()) == {("difficulty", "no self-correction marker")}


def test_substring_is_case_insensitive_and_substring_based():
    frame = pd.DataFrame({"Complex_CoT": ["I was CONFUSED at first.", "Let me Double-Check.", "Plain reasoning."]})
    sel = run_method("difficulty-substring", frame, {"n_samples": 10}, ctx())
    assert sel.order == [0, 1] and list(sel.removed) == [2]
    assert sel.columns["self_correction_markers"] == ["confus", "double-check", None]


def test_substring_same_seed_same_rows_other_seed_other_rows(df):
    a, b, c = run("difficulty-substring", df, 1), run("difficulty-substring", df, 1), run("difficulty-substring", df, 2)
    assert a.order == b.order and a.order != c.order


# ----------------------------------------------------------------------------------------------------------- n-gram
# Worked by hand from the seed lexicon: normalise (lower case, punctuation -> space), count each phrase as a substring,
# sum count x weight, divide by words + 1.
HAND_SCORED = [
    ("Hmm.", 3.5 / 2),                                                    # hmm
    ("Let's think.", (5 + 4.5 + 8 + 8 + 10) / 4),                         # let, think, let s, s think, let s think
    ("The blood cells.", (4 + 3.5 + 3.5) / 4),                            # blood, cells, cell (inside "cells")
    ("It's likely right, I'm sure!", (5 + 4 + 7 + 9) / 8),                # like (in likely), right, i m, it s like
    ("Okay, let's see: we've got pain.", (3.5 + 5 + 8 + 10 + 9 + 9 + 4) / 9),  # okay, let, let s, okay let s,
]                                                                         # let s see, we ve got, pain


@pytest.mark.parametrize("text, expected", HAND_SCORED)
def test_ngram_score_equals_the_hand_computed_seed_score(text, expected):
    assert ng.ngram_score(text) == pytest.approx(expected)


def test_ngram_lexicon_is_the_seeds_35_phrases():
    lexicon = ng.seed_lexicon()
    assert len(lexicon) == 35 and lexicon["let s think"] == 10.0 and lexicon["hmm"] == 3.5
    assert min(lexicon.values()) == 3.5 and max(lexicon.values()) == 10.0
    assert ng.ngram_score("") == 0.0 and ng.normalise_trace("Let's   see.\nOK") == "let s see ok"


def test_ngram_takes_the_top_n_by_score(df):
    sel = run("difficulty-n-gram", df)
    scores = sel.columns["ngram_score"]
    assert scores == [ng.ngram_score(t) for t in df["Complex_CoT"]]
    chosen = [scores[i] for i in sel.order]
    assert len(sel.order) == 30 and chosen == sorted(chosen, reverse=True)
    assert min(chosen) >= max(scores[i] for i in range(len(df)) if i not in set(sel.order))
    assert set(sel.removed.values()) == {("difficulty", "low_ngram_score")} and len(sel.removed) == len(df) - 30


def test_ngram_ties_keep_row_order():
    frame = pd.DataFrame({"Complex_CoT": ["plain", "hmm yes", "plain too", "hmm yes", "hmm yes"]})
    sel = run_method("difficulty-n-gram", frame, {"n_samples": 2}, ctx())
    assert sel.order == [1, 3]


# ------------------------------------------------------------------------------------------------ deterministic order
@pytest.mark.parametrize("method", ["random", "difficulty-n-gram", "difficulty-substring"])
def test_shuffled_input_gives_the_identical_selection(tmp_path, df, method):
    rows = json.loads(DEMO_SFT.read_text())
    for row in rows:
        row.pop("id")  # ids derived from content must not depend on file order either
    random.Random(7).shuffle(rows)
    (tmp_path / "a.json").write_text(json.dumps(rows))
    random.Random(8).shuffle(rows)
    (tmp_path / "b.json").write_text(json.dumps(rows))
    a = load_train_dataset({"key": "demo", "file_path": str(tmp_path / "a.json")})
    b = load_train_dataset({"key": "demo", "file_path": str(tmp_path / "b.json")})
    pd.testing.assert_frame_equal(a, b)
    assert list(a["Question"]) == sorted(a["Question"])
    picked = [[frame["id"].iloc[i] for i in run(method, frame).order] for frame in (a, b)]
    assert picked[0] == picked[1] and len(picked[0]) == 30
