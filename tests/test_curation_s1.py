"""s1 as the seed ran it: quality filter, base-model difficulty + judge, specialty labels, and the long-first /
70 % uniform / 30 % weighted sampling with 2^-rank draws — checked at the seed's scale on synthetic rows (18,000 hard
rows over 140 specialties, n = 1000) — plus base-model probing with the tiny Llama and novelty-answer."""
from __future__ import annotations

import collections

import numpy as np
import pytest
from scipy import stats

from curation_helpers import OfflineStandIn, demo_rows, make_context, run_method
from meds1.curation import base_model, offline_tasks
from meds1.curation.methods import s1
from meds1.curation.settings import CurationSettings
from meds1.errors import MedS1Error
from meds1.llm.base import LLMRequest, LLMResult

N_HARD, N_SPECIALTIES, N = 18_000, 140, 1000


@pytest.fixture(scope="module")
def df():
    return demo_rows()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("s1-cache")


@pytest.fixture(scope="module")
def tiny_entry(tiny_model_dir):
    return {"key": "tiny", "path": str(tiny_model_dir), "system_prompt": "Be brief.", "chat_template": None}


def ctx_for(cache_dir, tiny_entry, seed=0, **settings):
    return make_context(cache_dir, seed=seed, base_model=tiny_entry,
                        curation_settings={"base_max_new_tokens": 4, "llama_batch_size": 16, **settings})


# ------------------------------------------------------------------------------------------- sampling at seed scale
@pytest.fixture(scope="module")
def synthetic():
    """18,000 hard rows over 140 specialties with trace lengths below the long threshold."""
    rng = np.random.default_rng(1)
    labels = {i: f"S{i % N_SPECIALTIES:03d}" for i in range(N_HARD)}
    lengths = rng.integers(100, 1000, size=N_HARD).tolist()
    return list(range(N_HARD)), lengths, labels


def test_phase_mix_is_70_percent_uniform_then_30_percent_weighted(synthetic):
    rows, lengths, labels = synthetic
    picks = s1.diversity_sample(rows, lengths, labels, N, {}, seed=42)
    assert [phase for _, phase, _ in picks] == ["uniform"] * 700 + ["weighted"] * 300
    assert len({i for i, _, _ in picks}) == N


def test_uniform_phase_spreads_evenly_over_specialties(synthetic):
    rows, lengths, labels = synthetic
    picks = s1.diversity_sample(rows, lengths, labels, N, {}, seed=42)
    counts = collections.Counter(labels[i] for i, phase, _ in picks if phase == "uniform")
    observed = [counts.get(f"S{k:03d}", 0) for k in range(N_SPECIALTIES)]
    assert stats.chisquare(observed).pvalue > 0.01  # 700 picks, 5 per specialty expected


def test_weighted_phase_follows_int_10_x_weight_copies(synthetic):
    rows, lengths, labels = synthetic
    weights = {"S000": 4.0, "S001": 0.05, "S002": 2.55}  # copies 40, 0 (int(0.5)), 25; unnamed 10
    counts: collections.Counter = collections.Counter()
    for seed in range(10):  # 3,000 weighted picks: about 21 per ordinary specialty
        picks = s1.diversity_sample(rows, lengths, labels, N, weights, seed=seed)
        counts.update(labels[i] for i, phase, _ in picks if phase == "weighted")
    copies = np.array([{"S000": 40, "S001": 0, "S002": 25}.get(f"S{k:03d}", 10) for k in range(N_SPECIALTIES)])
    assert counts.get("S001", 0) == 0
    live = copies > 0
    observed = np.array([counts.get(f"S{k:03d}", 0) for k in range(N_SPECIALTIES)])[live]
    expected = copies[live] / copies[live].sum() * observed.sum()
    assert observed.sum() == 3000 and stats.chisquare(observed, expected).pvalue > 0.01
    ordinary = np.mean([counts[f"S{k:03d}"] for k in range(3, N_SPECIALTIES)])
    assert 3.2 < counts["S000"] / ordinary < 4.8 and 2.0 < counts["S002"] / ordinary < 3.0


def test_within_a_specialty_rank_r_is_drawn_with_probability_2_to_the_minus_r(synthetic):
    rows, lengths, labels = synthetic
    ranks = []
    for seed in range(3):  # 3,000 draws
        ranks += [r for _, _, r in s1.diversity_sample(rows, lengths, labels, N, {}, seed=seed)]
    observed = np.bincount(np.minimum(ranks, 4), minlength=5)
    expected = np.array([1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 16]) * len(ranks)
    assert stats.chisquare(observed, expected).pvalue > 0.01
    assert 0.47 < observed[0] / len(ranks) < 0.53  # the longest left is drawn about half the time


def test_rank_zero_is_the_longest_trace_left(synthetic):
    rows, lengths, labels = synthetic
    taken: set[int] = set()
    for i, _, rank in s1.diversity_sample(rows, lengths, labels, 200, {}, seed=3):
        left = sorted((j for j in rows if labels[j] == labels[i] and j not in taken), key=lambda j: -lengths[j])
        assert left[rank] == i
        taken.add(i)


def test_every_long_trace_comes_first_and_may_overshoot_n(synthetic):
    rows, lengths, labels = synthetic
    longer = list(lengths)
    for i in range(0, N_HARD, 15):  # 1,200 traces of 1000+ tokens, more than n
        longer[i] = 1000 + i % 500
    picks = s1.diversity_sample(rows, longer, labels, N, {}, seed=42)
    assert len(picks) == 1200 and {p for _, p, _ in picks} == {"long"}  # the seed's overshoot
    capped = s1.diversity_sample(rows, longer, labels, N, {}, seed=42, long_traces="within-n")
    assert len(capped) == N and [i for i, _, _ in capped] == sorted(range(0, N_HARD, 15), key=lambda i: -longer[i])[:N]


def test_long_traces_then_the_uniform_phase_up_to_70_percent(synthetic):
    rows, lengths, labels = synthetic
    longer = list(lengths)
    for i in range(0, 3000, 10):  # 300 long traces
        longer[i] = 2000
    phases = collections.Counter(p for _, p, _ in s1.diversity_sample(rows, longer, labels, N, {}, seed=42))
    assert phases == {"long": 300, "uniform": 400, "weighted": 300}


def test_zero_weights_everywhere_fall_back_to_uniform(synthetic):
    rows, lengths, labels = synthetic
    weights = {f"S{k:03d}": 0.0 for k in range(N_SPECIALTIES)}
    picks = s1.diversity_sample(rows, lengths, labels, N, weights, seed=42)
    assert len(picks) == N


def test_exhausted_specialties_leave_the_draw():
    labels = {0: "A", 1: "A", 2: "B", 3: None}  # row 3 is unlabelled: only a long trace could take it
    picks = s1.diversity_sample([0, 1, 2, 3], [5, 6, 7, 8], labels, 10, {}, seed=0)
    assert sorted(i for i, _, _ in picks) == [0, 1, 2]


# --------------------------------------------------------------------------------------------- quality and parsing
def test_quality_filter_uses_the_seeds_reasons(df):
    frame = df.head(5).copy()
    frame.loc[0, "Question"], frame.loc[1, "Response"] = "", " "
    problems = s1.quality_filter(frame, [10, 20, 1024, 1023, 1025], limit=1024)
    assert problems == {0: "missing_Question", 1: "missing_Response", 2: "exact_1024_tokens"}


def test_judge_verdict_is_the_last_word():
    assert s1.judge_verdict("Both name SCFE, so they agree.\nYes") is True
    assert s1.judge_verdict("Yes, similar at first, but the drug differs. No.") is False
    assert s1.judge_verdict("They are equivalent.") is None


def test_specialty_reply_names_a_number_of_the_seed_list():
    labels = s1.load_specialties()
    # the seed's file: described as 146 labels, it holds 147 lines (the last, "Astronomy", has no newline)
    assert len(labels) == 147 == len(set(labels)) and labels[0] == "Allergy and Immunology"
    assert s1.parse_specialty("Heart disease.\nSPECIALTY: 30") == labels[29] == "Cardiovascular Disease"
    assert s1.parse_specialty("**SPECIALTY: 044**") == labels[43]
    assert s1.parse_specialty("SPECIALTY: 148") is None and s1.parse_specialty("Cardiology") is None


def test_offline_stand_ins_answer_like_the_real_llm(df):
    options = {"A": "Folate deficiency", "B": "Parvovirus B19 infection"}

    def judge(answer, letter="B"):
        req = LLMRequest(task="judge", prompt="", payload={"answer": answer, "reference": options[letter],
                                                          "options": options, "answer_idx": letter})
        return s1.judge_verdict(offline_tasks.judge_answer(req)[0])
    assert judge("The answer is B.") is True and judge("The answer is A.") is False
    assert judge("This is most likely a parvovirus-B19 infection.") is True
    labels = s1.load_specialties()
    req = LLMRequest(task="specialty", prompt="", payload={"question": "Crushing chest pain; ECG shows ST elevation.",
                                                          "labels": labels})
    assert s1.parse_specialty(offline_tasks.label_specialty(req)[0]) == "Cardiovascular Disease"
    fallback, rules = offline_tasks.keyword_rules()
    assert fallback in labels and all(name in labels for name, _ in rules)


def test_unknown_specialty_weight_is_refused_when_the_registry_loads():
    with pytest.raises(MedS1Error, match="results.json: experiment 'x': key 'config.curation.specialty_weights"
                                         ".Cardiology': unknown specialty 'Cardiology'"):
        CurationSettings.from_block({"method": "s1", "n_samples": 5, "specialty_weights": {"Cardiology": 2}},
                                    file="results.json", experiment="x", prefix="config.curation")


# ---------------------------------------------------------------------------------------------------- s1 end to end
def knows_every(df, every: int):
    """A stand-in base model that knows the answer to every ``every``-th question (by row)."""
    gold = dict(zip(df["Question"], df["answer"]))
    rows = {q: i for i, q in enumerate(df["Question"])}

    def fake(model_entry, questions, **kwargs):
        return [gold[q] if rows[q] % every == 0 else "I am not sure." for q in questions]
    return fake


@pytest.fixture(scope="module")
def s1_run(df, cache_dir, tiny_entry):
    frame = df.copy()
    frame.loc[0, "Question"], frame.loc[1, "Response"] = "", "   "
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(base_model, "answer_questions", knows_every(frame, 3))
        lengths = [len(t.split()) for t in frame["Complex_CoT"]]
        lengths[5] = 1024
        mp.setattr(base_model, "token_lengths", lambda texts, entry: lengths)
        ctx = ctx_for(cache_dir, tiny_entry, gemini_batch_size=50)
        return frame, ctx, run_method("s1", frame, {"n_samples": 40}, ctx)


def test_s1_records_every_stage_and_reason(s1_run):
    frame, ctx, sel = s1_run
    assert sel.removed[0] == ("quality", "missing_Question") and sel.removed[1] == ("quality", "missing_Response")
    assert sel.removed[5] == ("quality", "exact_1024_tokens")
    easy = {i for i in range(3, len(frame), 3) if i != 5}
    assert {i for i, (stage, _) in sel.removed.items() if stage == "difficulty"} == easy
    assert all(sel.removed[i] == ("difficulty", "base_model_correct") for i in easy)
    hard = set(range(len(frame))) - easy - {0, 1, 5}
    assert {i for i, (st, r) in sel.removed.items() if st == "diversity"} == hard - set(sel.order)
    assert set(sel.removed.values()) - {s for s in sel.removed.values() if s[0] != "diversity"} == {
        ("diversity", "not_selected_in_sampling")}
    assert ctx.stand_in.calls == {"judge": len(frame) - 3, "specialty": len(hard)}
    assert len(sel.order) == 40 and not set(sel.order) & set(sel.removed)
    labels = {s for s in sel.columns["specialty"] if s}
    assert labels <= set(s1.load_specialties()) and len(labels) > 10
    assert [sel.columns["s1_phase"][i] for i in sel.order] == ["uniform"] * 28 + ["weighted"] * 12


def test_s1_asks_the_llm_in_chunks_of_gemini_batch_size(df, cache_dir, tiny_entry):
    ctx = ctx_for(cache_dir, tiny_entry, gemini_batch_size=7)
    sizes = []
    ctx.stand_in.run_many = lambda reqs, desc="": sizes.append(len(reqs)) or [LLMResult(text="x")] * len(reqs)
    ctx.ask("base_judge", [LLMRequest(task="judge", prompt=str(i)) for i in range(20)])
    assert sizes == [7, 7, 6]


def test_s1_same_seed_same_selection_other_seed_other(df, cache_dir, tiny_entry, s1_run, monkeypatch):
    frame, _, sel = s1_run
    monkeypatch.setattr(base_model, "answer_questions", knows_every(frame, 3))
    monkeypatch.setattr(base_model, "token_lengths", lambda texts, entry: [len(t.split()) for t in texts])
    again = run_method("s1", frame, {"n_samples": 40}, ctx_for(cache_dir, tiny_entry))
    other = run_method("s1", frame, {"n_samples": 40}, ctx_for(cache_dir, tiny_entry, seed=7))
    assert again.order != other.order and len(again.order) == 40
    weighted = run_method("s1", frame, {"n_samples": 40, "specialty_weights": {"Cardiovascular Disease": 50.0}},
                          ctx_for(cache_dir, tiny_entry))

    def heart(s):
        return sum(s.columns["specialty"][i] == "Cardiovascular Disease" for i in s.order)
    assert heart(weighted) >= heart(again) + 3


def test_specialty_is_asked_again_when_the_reply_names_no_number(df, cache_dir, tiny_entry):
    ctx = ctx_for(cache_dir, tiny_entry)
    replies = iter(["no idea"] * 3 + ["no idea", "SPECIALTY: 30", "still no idea"] + ["SPECIALTY: 1", "nothing"])
    attempts = []

    def answer(requests, desc=""):
        attempts.append([r.params["temperature"] for r in requests])
        return [LLMResult(text=next(replies)) for _ in requests]
    ctx.stand_in.run_many = answer
    labels = s1.label_specialties(df, [0, 1, 2], ctx)
    assert labels == ["Allergy and Immunology", "Cardiovascular Disease", None]
    assert attempts == [[0.0] * 3, [0.7] * 3, [1.0] * 2]  # each retry is a different request (cache key)


# ------------------------------------------------------------------------------------------------ the tiny base model
def test_base_model_answers_are_generated_once_then_cached(df, cache_dir, tiny_entry, monkeypatch):
    questions = df["Question"].tolist()[:12] + df["Question"].tolist()[:2]  # repeats are answered once
    kw = dict(max_new_tokens=4, batch_size=5, cache_dir=cache_dir)
    first = base_model.answer_questions(tiny_entry, questions, **kw)
    assert len(first) == 14 and all(isinstance(a, str) for a in first) and first[12:] == first[:2]
    path = base_model.answers_file(tiny_entry, 4, cache_dir)
    assert path.parent == cache_dir / "base_answers" and len(path.read_text().splitlines()) == 12

    def refuse(entry):
        raise AssertionError("the base model was loaded although every answer was cached")
    monkeypatch.setattr(base_model, "load_generator", refuse)
    assert base_model.answer_questions(tiny_entry, questions, **kw) == first
    assert base_model.answers_file(tiny_entry, 8, cache_dir) != path
    assert base_model.answers_file(tiny_entry, 4, cache_dir, "Q: {question}") != path


def test_prompt_uses_the_chat_template_with_the_system_prompt(tiny_entry):
    tok, _ = base_model.load_generator(tiny_entry)
    prompt = base_model.render_prompt(tok, "Which nerve?", "Be brief.")
    assert prompt == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhich nerve?<|im_end|>\n"
                      "<|im_start|>assistant\n")
    assert tok.padding_side == "left"
    assert base_model.token_lengths(["Which nerve?", ""], tiny_entry) == [len(tok("Which nerve?",
                                                                                  add_special_tokens=False)[
                                                                                  "input_ids"]), 0]


def test_s1_with_the_tiny_base_model_end_to_end(df, cache_dir, tiny_entry):
    small = df.head(24).reset_index(drop=True)
    ctx = ctx_for(cache_dir, tiny_entry)
    sel = run_method("s1", small, {"n_samples": 8}, ctx)
    hard = [i for i, label in enumerate(sel.columns["specialty"]) if label is not None]
    assert len(sel.order) == min(8, len(hard)) and all(isinstance(a, str) for a in sel.columns["base_model_response"])
    assert ctx.stand_in.calls["judge"] == 24
    for i, ok in enumerate(sel.columns["base_model_correct"]):
        assert (sel.removed.get(i) == ("difficulty", "base_model_correct")) == bool(ok)
    assert sel.columns["token_length"] == base_model.token_lengths(small["Complex_CoT"].tolist(), tiny_entry)
    path = base_model.answers_file(tiny_entry, 4, cache_dir, base_model.PROMPT_FILE.read_text().strip())
    assert len(path.read_text().splitlines()) >= 24  # the real tiny model answered and cached every question


# ------------------------------------------------------------------------------------------------------------ novelty
def test_novelty_keeps_the_lowest_answer_similarities(df, cache_dir, tiny_entry, monkeypatch):
    small = df.head(30).reset_index(drop=True)
    responses = dict(zip(small["Question"], small["Response"]))
    rows = {q: i for i, q in enumerate(small["Question"])}
    monkeypatch.setattr(base_model, "answer_questions", lambda entry, qs, **kw: [
        responses[q] if rows[q] % 2 == 0 else "The weather is sunny today." for q in qs])
    sel = run_method("novelty-answer", small, {"n_samples": 10}, ctx_for(cache_dir, tiny_entry))
    sims = sel.columns["answer_similarity"]
    assert all(sims[i] == pytest.approx(1.0, abs=1e-4) for i in range(0, 30, 2))  # answer == reference
    assert len(sel.order) == 10 and all(i % 2 == 1 for i in sel.order)
    assert [sims[i] for i in sel.order] == sorted(sims)[:10]


def test_offline_stand_in_counts_per_task():
    stand_in = OfflineStandIn()
    stand_in.run_many([LLMRequest(task="judge", prompt="", offline=lambda r: "yes")] * 3)
    assert stand_in.calls == {"judge": 3}
