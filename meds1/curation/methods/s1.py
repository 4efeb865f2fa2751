"""``s1``: quality filter -> difficulty filter (the base model must get it wrong) -> specialty labels ->
difficulty-weighted diversity sampling (long traces first, then even over specialties, then ``specialty_weights``).

LLM work goes through ``ctx.client``: task ``judge`` (does the base answer equal the reference? "yes"/"no") and task
``specialty`` (one name from ``resources/curation/specialties.txt``); offline answers live in
``meds1.curation.offline_tasks``. Every removed row gets a (stage, reason); the chosen rows carry how they were picked.
"""
from __future__ import annotations

import collections
import functools
import logging
import math
import random
from pathlib import Path

from dataclasses import dataclass

from meds1.curation import base_model
from meds1.curation import offline_tasks
from meds1.curation.selection import Selection
from meds1.plugins import SELECTION_METHODS
from meds1.errors import MedS1Error
from meds1.llm.base import LLMRequest
from meds1.options import opt

log = logging.getLogger(__name__)

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "curation"
LONG_TRACE_FRACTION = 0.10   # the longest 10 % of the hard rows are taken first
WEIGHTED_FRACTION = 0.30     # specialty_weights steer the last 30 % of the budget
REQUIRED = ("Question", "Complex_CoT", "Response")
TERMINAL = ('.', '!', '?', ')', ']', '"', "'", '”', '’', '*', '`')  # a complete trace ends with one of these
LLM_PARAMS = {"temperature": 0.0, "max_output_tokens": 32}
OTHER = "Other"


@functools.lru_cache(maxsize=1)
def load_specialties() -> tuple[str, ...]:
    lines = (RESOURCES / "specialties.txt").read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def read_prompt(name: str) -> str:
    return (RESOURCES / name).read_text(encoding="utf-8")


def trace_words(df) -> list[int]:
    return [len(str(t).split()) for t in df["Complex_CoT"]]


# ---------------------------------------------------------------------------------------------------------- quality
def quality_problems(df, words: list[int], limit: int | None) -> dict[int, str]:
    """Row -> reason: a required field is empty, or the trace stops mid-sentence at the generation limit
    (``limit`` words, or else the longest trace's word count: a generator that hit its limit leaves many of those)."""
    limit = limit or max(words, default=0)
    problems = {}
    for i in range(len(df)):
        empty = [c for c in REQUIRED if not str(df[c].iloc[i]).strip()]
        if empty:
            problems[i] = f"missing {empty[0]}"
        elif words[i] >= limit and not str(df["Complex_CoT"].iloc[i]).rstrip().endswith(TERMINAL):
            problems[i] = "trace truncated at the generation limit"
    return problems


# ------------------------------------------------------------------------------------------------------- difficulty
def reference_of(row: pd.Series) -> tuple[str, dict | None, str | None]:
    """(reference answer text, options, answer letter): the MCQ answer when the data has one, else the Response."""
    options = row.get("options")
    options = {k: str(v) for k, v in options.items() if v is not None} if isinstance(options, dict) else None
    letter = row.get("answer_idx") if isinstance(row.get("answer_idx"), str) else None
    answer = row.get("answer")
    text = answer if isinstance(answer, str) and answer.strip() else row["Response"]
    return text, options or None, letter


def judge_requests(df, rows: list[int], answers: list[str]) -> list[LLMRequest]:
    template = read_prompt("judge_prompt.txt")
    requests = []
    for i, answer in zip(rows, answers):
        reference, options, letter = reference_of(df.iloc[i])
        prompt = template.format(question=df["Question"].iloc[i], reference=reference, answer=answer)
        payload = {"answer": answer, "reference": reference, "options": options, "answer_idx": letter}
        requests.append(LLMRequest(task="judge", prompt=prompt, params=dict(LLM_PARAMS), payload=payload,
                                   offline=offline_tasks.judge_answer))
    return requests


def said_yes(text: str) -> bool:
    words = offline_tasks.normalise(text).split()
    return bool(words) and words[0] == "yes"


def base_model_correct(df, rows: list[int], ctx) -> tuple[list[str], list[bool]]:
    """The base model's answers to ``rows`` and whether the judge found each equal to the reference."""
    answers = base_model.answer_for_curation([df["Question"].iloc[i] for i in rows], ctx)
    verdicts = ctx.client.run_many(judge_requests(df, rows, answers), desc="s1 judge") if rows else []
    return answers, [said_yes(v.text) for v in verdicts]


# ------------------------------------------------------------------------------------------------------- specialty
def clean_label(text: str, specialties: tuple[str, ...]) -> str:
    """The list's own spelling of the answer (case and stray quotes/markdown ignored); anything else is "Other"."""
    known = {s.lower(): s for s in specialties}
    first = (str(text).strip().splitlines() or [""])[0]
    return known.get(first.strip(" \t\"'*`.:").lower(), OTHER)


def label_specialties(df, rows: list[int], ctx) -> list[str]:
    specialties = load_specialties()
    template = read_prompt("specialty_prompt.txt")
    listing = "\n".join(specialties)
    questions = [df["Question"].iloc[i] for i in rows]
    requests = [LLMRequest(task="specialty", prompt=template.format(specialties=listing, question=q),
                           params=dict(LLM_PARAMS), payload={"question": q},
                           offline=offline_tasks.label_specialty) for q in questions]
    results = ctx.client.run_many(requests, desc="s1 specialty") if rows else []
    return [clean_label(r.text, specialties) for r in results]


def check_weights(weights: dict | None, ctx) -> dict[str, float]:
    known = set(load_specialties()) | {OTHER}
    for name in weights or {}:
        if name not in known:
            raise MedS1Error(f"unknown specialty '{name}' (see meds1/resources/curation/specialties.txt)",
                             experiment=ctx.spec.get("experiment"), key="curation.specialty_weights",
                             choices=sorted(known), value=name)
    return {k: float(v) for k, v in (weights or {}).items()}


# ---------------------------------------------------------------------------------------------------------- sampling
def length_weighted_order(rows: list[int], words: list[int], rng: random.Random) -> collections.deque:
    """A random permutation where longer traces tend to come first (Efraimidis-Spirakis keys, weight = words + 1)."""
    keys = {i: math.log(1.0 - rng.random()) / (words[i] + 1) for i in rows}
    return collections.deque(sorted(rows, key=lambda i: -keys[i]))


def take_round_robin(pools: dict[str, collections.deque], names: list[str], count: int) -> list[int]:
    picks: list[int] = []
    while len(picks) < count and any(pools[s] for s in names):
        for s in names:
            if len(picks) < count and pools[s]:
                picks.append(pools[s].popleft())
    return picks


def take_weighted(pools: dict[str, collections.deque], names: list[str], weights: dict[str, float], count: int,
                  rng: random.Random) -> list[int]:
    """Draw a specialty by weight (unnamed ones weigh 1) for each pick, then its next row."""
    picks: list[int] = []
    while len(picks) < count:
        live = [s for s in names if pools[s] and weights.get(s, 1.0) > 0]
        if not live:
            break
        chosen = rng.choices(live, weights=[weights.get(s, 1.0) for s in live])[0]
        picks.append(pools[chosen].popleft())
    return picks


def diversity_sample(rows: list[int], words: list[int], labels: dict[int, str], n: int, weights: dict[str, float],
                     seed: int) -> list[tuple[int, str]]:
    """(row, phase) picks: long traces, then round-robin over specialties, then weighted specialties."""
    rng = random.Random(seed)
    n = min(n, len(rows))
    by_length = sorted(rows, key=lambda i: -words[i])  # stable: equal lengths keep row order
    long = by_length[:min(n, math.ceil(LONG_TRACE_FRACTION * len(rows)))]
    names = sorted({labels[i] for i in rows})
    rng.shuffle(names)
    pools = {s: length_weighted_order([i for i in by_length[len(long):] if labels[i] == s], words, rng) for s in names}
    n_weighted = min(n - len(long), round(WEIGHTED_FRACTION * n)) if weights else 0
    picks = [(i, "long") for i in long]
    picks += [(i, "uniform") for i in take_round_robin(pools, names, n - len(long) - n_weighted)]
    picks += [(i, "weighted") for i in take_weighted(pools, names, weights, n - len(picks), rng)]
    picks += [(i, "uniform") for i in take_round_robin(pools, names, n - len(picks))]  # weights exhausted
    return picks


# ------------------------------------------------------------------------------------------------------------ method
@dataclass(frozen=True)
class S1Options:
    specialty_weights: dict[str, float] | None = opt(None, "weights of specialties in the last 30 % of the picks "
                                                      "(unnamed specialties weigh 1)")


@SELECTION_METHODS.register("s1", options=S1Options, needs={"n_samples", "base_model", "llm"})
def select_s1(df, cur, ctx) -> Selection:
    """Quality -> base-model difficulty -> specialty labels -> long-first, specialty-balanced sampling."""
    weights = check_weights(cur.options.specialty_weights, ctx)
    words = trace_words(df)
    limit = (ctx.spec.get("curation_settings") or {}).get("trace_token_limit")
    removed = {i: ("quality", why) for i, why in quality_problems(df, words, limit).items()}
    probed = [i for i in range(len(df)) if i not in removed]
    answers, correct = base_model_correct(df, probed, ctx)
    removed |= {i: ("difficulty", "base model answered correctly") for i, ok in zip(probed, correct) if ok}
    hard = [i for i in probed if i not in removed]
    labels = dict(zip(hard, label_specialties(df, hard, ctx)))
    picks = diversity_sample(hard, words, labels, cur.n_samples or len(hard), weights, ctx.seed)
    log.info("s1: %d rows in, %d pass quality, %d hard, %d selected", len(df), len(probed), len(hard), len(picks))
    phase = dict(picks)
    removed |= {i: ("diversity", "not picked by specialty sampling") for i in hard if i not in phase}
    answer_of, correct_of = dict(zip(probed, answers)), dict(zip(probed, correct))
    return Selection(order=[i for i, _ in picks], removed=removed, columns={
        "trace_words": words, "base_answer": [answer_of.get(i) for i in range(len(df))],
        "base_correct": [correct_of.get(i) for i in range(len(df))],
        "specialty": [labels.get(i) for i in range(len(df))], "s1_pick": [phase.get(i) for i in range(len(df))]})
