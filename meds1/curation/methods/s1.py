"""``s1``: the seed system's s1-style pipeline (its §3.2), stage by stage, every removed row with its reason.

1. Quality: a row with an empty Question, Complex_CoT or Response goes (``missing_<columns>``); a trace exactly
   ``trace_token_limit`` (1024) tokens long under the base model's tokenizer was cut at the generation limit
   (``exact_1024_tokens``).
2. Difficulty: the base model (config.json ``model_choices.base``) answers each question; the ``base_judge`` LLM says
   whether that answer is medically equivalent to the reference Response (the last word of its reply, Yes/No). Rows
   the base model gets right go (``base_model_correct``).
3. Specialty: the ``specialty_labeler`` LLM labels each hard question with one of the seed's 147 labels
   (``resources/curation/seed_specialty_labels.txt``, numbered from 1; the reply ends "SPECIALTY: NNN"; up to three
   attempts, then no label).
4. Difficulty-weighted diversity sampling: every trace of at least ``long_trace_tokens`` (1000) tokens first; then,
   while fewer than 70 % of n are chosen, a specialty drawn uniformly from those with rows left; after that a
   specialty drawn from a list holding each specialty int(10 x weight) times (``specialty_weights``, default 1).
   Inside the specialty one row is drawn with probability proportional to 2^-rank (rank 0: the longest trace of
   those left). Unpicked hard rows: ``not_selected_in_sampling``.

Where the seed's rule is a bug, its behaviour stays the default and the fix is a key: with ``long_traces: all`` (the
seed) every long trace is taken even when there are more than n of them; ``long_traces: within-n`` takes at most n.
Deliberate differences: the base model decodes greedily and does not stop at the first blank line (the seed's
``\\n\\n`` stop cut answers short, §8); a label reply that names no list number on any attempt leaves the row
unlabelled (it can still be taken as a long trace).
"""
from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from meds1.curation import offline_tasks
from meds1.curation.selection import Selection
from meds1.errors import MedS1Error
from meds1.llm.base import LLMRequest
from meds1.options import opt
from meds1.plugins import SELECTION_METHODS
from meds1.text import normalise_words

log = logging.getLogger(__name__)

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "curation"
REQUIRED = ("Question", "Complex_CoT", "Response")
UNIFORM_SHARE = 0.70            # the first 70 % of the target: specialties drawn uniformly
WEIGHT_COPIES = 10              # the weighted list holds each specialty int(10 x weight) times
JUDGE_PARAMS = {"temperature": 0.0, "max_output_tokens": 256}
# three attempts; a different temperature makes each a different request (and a different cache entry)
SPECIALTY_ATTEMPTS = ({"temperature": 0.0, "max_output_tokens": 256}, {"temperature": 0.7, "max_output_tokens": 256},
                      {"temperature": 1.0, "max_output_tokens": 256})
SPECIALTY_REPLY = re.compile(r"SPECIALTY:\s*\**\s*(\d{1,3})\D*$", re.IGNORECASE)


@functools.lru_cache(maxsize=1)
def load_specialties() -> tuple[str, ...]:
    """The seed's 147 labels in its order (label k of the prompt is entry k - 1)."""
    lines = (RESOURCES / "seed_specialty_labels.txt").read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip())


def read_prompt(name: str) -> str:
    return (RESOURCES / name).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------- quality
def quality_filter(df, lengths: list[int], limit: int) -> dict[int, str]:
    """Row -> the seed's reason: ``missing_<columns>`` or ``exact_<limit>_tokens``."""
    problems = {}
    for i in range(len(df)):
        empty = [c for c in REQUIRED if not str(df[c].iloc[i]).strip()]
        if empty:
            problems[i] = "missing_" + "_".join(empty)
        elif lengths[i] == limit:
            problems[i] = f"exact_{limit}_tokens"
    return problems


# ------------------------------------------------------------------------------------------------------- difficulty
def offline_reference(row) -> tuple[str, dict | None, str | None]:
    """For the offline judge only: the MCQ answer (text, options, letter) when the data has one, else the Response."""
    options = row.get("options")
    options = {k: str(v) for k, v in options.items() if v is not None} if isinstance(options, dict) else None
    letter = row.get("answer_idx") if isinstance(row.get("answer_idx"), str) else None
    answer = row.get("answer")
    return (answer if isinstance(answer, str) and answer.strip() else row["Response"]), options or None, letter


def judge_requests(df, rows: list[int], answers: list[str]) -> list[LLMRequest]:
    template = read_prompt("judge_prompt.txt")
    requests = []
    for i, answer in zip(rows, answers):
        row = df.iloc[i]
        reference, options, letter = offline_reference(row)
        prompt = template.format(question=row["Question"], reference=row["Response"], answer=answer)
        payload = {"answer": answer, "reference": reference, "options": options, "answer_idx": letter}
        requests.append(LLMRequest(task="judge", prompt=prompt, params=dict(JUDGE_PARAMS), payload=payload,
                                   offline=offline_tasks.judge_answer))
    return requests


def judge_verdict(text: str) -> bool | None:
    """The seed's rule: the reply's last word is Yes (equivalent) or No; anything else is no verdict."""
    words = normalise_words(text).split()
    last = words[-1] if words else ""
    return True if last == "yes" else False if last == "no" else None


def base_model_difficulty(df, rows: list[int], ctx) -> tuple[list[str], list[bool | None], list[str]]:
    """The base model's answers to ``rows``, the judge's verdicts (True: right) and the judge's replies."""
    answers = ctx.base_answers([df["Question"].iloc[i] for i in rows])
    replies = [r.text for r in ctx.ask("base_judge", judge_requests(df, rows, answers), desc="s1 judge")]
    return answers, [judge_verdict(t) for t in replies], replies


# ------------------------------------------------------------------------------------------------------- specialty
def specialty_requests(questions: list[str], attempt: int) -> list[LLMRequest]:
    labels = load_specialties()
    listing = "\n".join(f"{k}. {name}" for k, name in enumerate(labels, start=1))
    template = read_prompt("specialty_prompt.txt")
    return [LLMRequest(task="specialty", prompt=template.format(specialties=listing, question=q),
                       params=dict(SPECIALTY_ATTEMPTS[attempt]), payload={"question": q, "labels": labels},
                       offline=offline_tasks.label_specialty) for q in questions]


def parse_specialty(text: str) -> str | None:
    """The label numbered in a reply ending "SPECIALTY: NNN" (1-based, the seed's numbering), else None."""
    labels = load_specialties()
    match = SPECIALTY_REPLY.search(str(text).strip())
    number = int(match.group(1)) if match else 0
    return labels[number - 1] if 1 <= number <= len(labels) else None


def label_specialties(df, rows: list[int], ctx) -> list[str | None]:
    """One label per row; rows whose reply names no label are asked again, up to three attempts in all."""
    labels: dict[int, str | None] = {i: None for i in rows}
    for attempt in range(len(SPECIALTY_ATTEMPTS)):
        todo = [i for i in rows if labels[i] is None]
        if not todo:
            break
        requests = specialty_requests([df["Question"].iloc[i] for i in todo], attempt)
        for i, result in zip(todo, ctx.ask("specialty_labeler", requests, desc=f"s1 specialty ({attempt + 1})")):
            labels[i] = parse_specialty(result.text)
    return [labels[i] for i in rows]


def check_weights(weights: dict | None) -> dict[str, float]:
    """Every weighted name must be a label (a name the labeller never answers would weigh nothing, silently)."""
    known = load_specialties()
    for name, weight in (weights or {}).items():
        if name not in known:
            raise MedS1Error(f"unknown specialty '{name}' (see meds1/resources/curation/seed_specialty_labels.txt)",
                             key=f"specialty_weights.{name}", choices=known, value=name)
        if weight < 0:
            raise MedS1Error(f"weight must be >= 0, got {weight}", key=f"specialty_weights.{name}")
    return {k: float(v) for k, v in (weights or {}).items()}


# ---------------------------------------------------------------------------------------------------------- sampling
def draw_specialty(pools: dict[str, list[int]], weights: dict[str, float], uniform: bool, rng) -> str:
    """Uniform over the specialties with rows left, or from the weighted list (int(10 x weight) copies each); when
    every specialty left has zero copies the draw is uniform."""
    import numpy as np

    names = sorted(pools)
    if not uniform:
        copies = np.array([int(WEIGHT_COPIES * weights.get(s, 1.0)) for s in names], dtype=float)
        if copies.sum() > 0:
            return names[int(rng.choice(len(names), p=copies / copies.sum()))]
    return names[int(rng.integers(len(names)))]


def draw_rank(size: int, rng) -> int:
    """A rank in 0..size-1 with probability proportional to 2^-rank (rank 0: the longest trace left)."""
    import numpy as np

    weights = 0.5 ** np.arange(size, dtype=float)
    return int(rng.choice(size, p=weights / weights.sum()))


def diversity_sample(rows: list[int], lengths: list[int], labels: dict[int, str | None], n: int,
                     weights: dict[str, float], seed: int, *, long_tokens: int = 1000,
                     long_traces: str = "all") -> list[tuple[int, str, int | None]]:
    """(row, phase, rank) picks in order: phase "long", then "uniform" (< 70 % of n chosen), then "weighted"."""
    import numpy as np

    rng = np.random.default_rng(seed)
    by_length = sorted(rows, key=lambda i: -lengths[i])  # stable: equal lengths keep row order
    long = [i for i in by_length if lengths[i] >= long_tokens]
    picks: list[tuple[int, str, int | None]] = [(i, "long", None) for i in (long[:n] if long_traces == "within-n"
                                                                            else long)]
    taken = {i for i, _, _ in picks}
    pools: dict[str, list[int]] = {}
    for i in by_length:
        if i not in taken and labels.get(i) is not None:
            pools.setdefault(labels[i], []).append(i)
    while len(picks) < n and pools:
        uniform = len(picks) < UNIFORM_SHARE * n
        specialty = draw_specialty(pools, weights, uniform, rng)
        rank = draw_rank(len(pools[specialty]), rng)
        picks.append((pools[specialty].pop(rank), "uniform" if uniform else "weighted", rank))
        if not pools[specialty]:
            del pools[specialty]
    return picks


# ------------------------------------------------------------------------------------------------------------ method
@dataclass(frozen=True)
class S1Options:
    specialty_weights: dict[str, float] | None = opt(None, "weight per specialty label in the last 30 % of the picks "
                                                           "(int(10 x weight) copies in the draw; unnamed: 1)")
    long_trace_tokens: int = opt(1000, "traces at least this many tokens long are taken first", minimum=1)
    long_traces: Literal["all", "within-n"] = opt("all", "all: every long trace, even past n (the seed); within-n: "
                                                         "at most n of them, the longest first")

    def check(self) -> None:
        check_weights(self.specialty_weights)


def s1_columns(n_rows: int, lengths, probed, answers, verdicts, replies, labels, picks) -> dict[str, list]:
    def per_row(mapping: dict) -> list:
        return [mapping.get(i) for i in range(n_rows)]
    return {"token_length": list(lengths), "base_model_response": per_row(dict(zip(probed, answers))),
            "base_model_correct": per_row(dict(zip(probed, verdicts))),
            "base_model_judgment": per_row(dict(zip(probed, replies))), "specialty": per_row(labels),
            "s1_phase": per_row({i: phase for i, phase, _ in picks}),
            "s1_rank": per_row({i: rank for i, _, rank in picks})}


@SELECTION_METHODS.register("s1", options=S1Options, needs={"n_samples", "base_model", "llm"},
                            llm_roles=("base_judge", "specialty_labeler"))
def select_s1(df, cur, ctx) -> Selection:
    """Quality -> base-model difficulty -> specialty labels -> long-first, specialty-balanced sampling (the seed's)."""
    opts = cur.options
    weights = check_weights(opts.specialty_weights)
    lengths = ctx.token_lengths(df["Complex_CoT"].tolist())
    removed = {i: ("quality", why) for i, why in quality_filter(df, lengths, ctx.settings.trace_token_limit).items()}
    probed = [i for i in range(len(df)) if i not in removed]
    answers, verdicts, replies = base_model_difficulty(df, probed, ctx)
    removed |= {i: ("difficulty", "base_model_correct") for i, ok in zip(probed, verdicts) if ok}
    hard = [i for i in probed if i not in removed]
    labels = dict(zip(hard, label_specialties(df, hard, ctx)))
    picks = diversity_sample(hard, lengths, labels, cur.n_samples or len(hard), weights, ctx.seed,
                             long_tokens=opts.long_trace_tokens, long_traces=opts.long_traces)
    chosen = {i for i, _, _ in picks}
    removed |= {i: ("diversity", "not_selected_in_sampling") for i in hard if i not in chosen}
    log.info("s1: %d rows, %d pass quality, %d hard (%d without a judge verdict, %d unlabelled), %d selected",
             len(df), len(probed), len(hard), sum(v is None for v in verdicts),
             sum(v is None for v in labels.values()), len(picks))
    return Selection(order=[i for i, _, _ in picks], removed=removed,
                     columns=s1_columns(len(df), lengths, probed, answers, verdicts, replies, labels, picks))
