"""``answer`` (the seed's "wrong-answer"): for int(rate x N) of the N rows, the LLM rewrites the last step and the
Response so they argue for a plausible WRONG final answer.

The new Response replaces the old one only when the answer really changed; otherwise the row is rejected: kept
unperturbed, counted, and its ``reason`` recorded. Changed means:

- MCQ rows: the new Response names an option (``meds1.matcher``) and it is not the correct letter;
- free-text rows: the normalised new Response differs from the old one, and the short answers the LLM states
  ("ORIGINAL ANSWER" / "WRONG ANSWER", and the row's known answer text) differ too.

``answer_changed`` is true only then. (The seed system kept the correct Response whenever restore was off; this one
does not.)
"""
from __future__ import annotations

import random
import re

from meds1.matcher import match
from meds1.plugins import PERTURBATIONS
from meds1.text import normalise_words
from meds1.traces.extract import run_texts
from meds1.traces.perturb import Outcome, PerturbContext
from meds1.traces.prompts import build_request, stand_in
from meds1.traces.rows import TraceRow
from meds1.traces.steps import Step, render_steps
from meds1.traces.textrules import key_sentence

ANSWER_PARAMS = {"temperature": 0.0, "max_output_tokens": 800}  # a step and a response back
FIELDS = ("ORIGINAL ANSWER", "WRONG ANSWER", "STEP", "RESPONSE")
MAX_SHORT_ANSWER_WORDS = 12  # a longer "answer" is an explanation: comparing it as a phrase means nothing


def offline_wrong_answer(p: dict):
    """Stand-in: MCQ rows argue for the requested wrong option; free-text rows get a marked generic wrong claim."""
    original = p.get("answer_text") or key_sentence(p["answer"]) or p["answer"].strip()
    wrong, text = p.get("wrong_letter"), p.get("wrong_text")
    if not wrong:
        claim = "an alternative diagnosis that the findings do not support"
        step = "Looking again, the conclusion above does not hold; a different explanation fits these findings better."
        return (f"ORIGINAL ANSWER: {original}\nWRONG ANSWER: {claim}\nSTEP: {step}\nRESPONSE: [offline stand-in] The "
                f"conclusion above is not supported; {claim} is more likely.",
                "no answer options: a generic wrong conclusion (clearly marked stand-in)")
    step = (f"Weighing everything once more, {text} explains this presentation better than the alternatives; "
            f"the findings that seemed to point elsewhere are less specific than they first looked, "
            f"so option {wrong} it is.")
    response = f"Taking the whole presentation into account, the best answer is {text}. The answer is {wrong}."
    return f"ORIGINAL ANSWER: {original}\nWRONG ANSWER: {text}\nSTEP: {step}\nRESPONSE: {response}"


OFFLINE = stand_in(offline_wrong_answer, "templated wrong conclusion naming the requested wrong option")


@PERTURBATIONS.register("answer", needs={"steps", "llm"})
def perturb_answer(ctx: PerturbContext) -> list[Outcome]:
    """int(rate x N) rows get a plausible wrong last step and Response; a reply that keeps the answer is rejected."""
    eligible = [i for i, steps in enumerate(ctx.steps) if steps]
    n_perturb = min(int(ctx.rate * len(ctx.rows)), len(eligible))
    chosen = sorted(random.Random(f"{ctx.seed}:answer-rows").sample(eligible, n_perturb))
    wrong = {i: pick_wrong_option(ctx.rows[i], ctx.rng(i)) for i in chosen}
    requests = [answer_request(ctx.rows[i], ctx.steps[i][-1], wrong[i]) for i in chosen]
    texts = run_texts(ctx.client, requests, [ctx.rows[i] for i in chosen])
    outcomes = [ctx.untouched(i, answer_changed=False) for i in range(len(ctx.rows))]
    for i, text in zip(chosen, texts):
        outcomes[i] = wrong_outcome(ctx, i, text, wrong[i])
    return outcomes


def pick_wrong_option(row: TraceRow, rng: random.Random) -> str | None:
    letters = [letter for letter in sorted(row.options) if letter != row.answer_idx]
    return rng.choice(letters) if letters and row.answer_idx else None


def answer_request(row: TraceRow, last: Step, wrong: str | None):
    options = "\n".join(f"{k}. {v}" for k, v in row.options.items()) or "(none: open question)"
    target = f"{wrong}. {row.options[wrong]}" if wrong else "a specific, plausible but wrong final answer of your choice"
    values = {"question": row.question, "options": options, "last_step": render_steps([last]),
              "answer": row.response, "wrong_option": target}
    payload = {**row.payload(), "last_step": {"title": last.title, "body": last.body}, "wrong_letter": wrong,
               "wrong_text": row.options.get(wrong) if wrong else None}
    return build_request("perturb:answer", "perturb-answer", values, payload, offline=OFFLINE, params=ANSWER_PARAMS)


def parse_reply(text: str) -> dict[str, str]:
    """The reply's labelled fields ("STEP: ...", "RESPONSE: ..."), each up to the next label."""
    labels = "|".join(FIELDS)
    pattern = rf"(?im)^[ \t*#]*({labels})[ \t*]*:[ \t*]*"
    heads = list(re.finditer(pattern, text or ""))
    out = {}
    for k, head in enumerate(heads):
        end = heads[k + 1].start() if k + 1 < len(heads) else len(text)
        out[head.group(1).upper()] = text[head.end():end].strip()
    return out


def wrong_outcome(ctx: PerturbContext, i: int, text: str | None, wrong: str | None) -> Outcome:
    row, steps = ctx.rows[i], ctx.steps[i]
    base = {"answer_changed": False, "correct_letter": row.answer_idx, "wrong_letter": wrong}
    if text is None:
        return ctx.unchanged(i, "rejected: the LLM call failed (see llm_failures)", **base)
    fields = parse_reply(text)
    if not fields.get("STEP") or not fields.get("RESPONSE"):
        return ctx.unchanged(i, "rejected: the reply has no STEP and RESPONSE", **base)
    new_response = fields["RESPONSE"]
    problem, new_letter = why_unchanged(row, new_response, fields)
    if problem:
        return ctx.unchanged(i, f"rejected: {problem}", **base, new_letter=new_letter)
    new_steps = steps[:-1] + [Step(steps[-1].title, fields["STEP"])]
    info = {**base, "answer_changed": True, "new_letter": new_letter, "wrong_answer": fields.get("WRONG ANSWER")}
    return Outcome(new_steps, new_response, info)


def why_unchanged(row: TraceRow, new_response: str, fields: dict) -> tuple[str | None, str | None]:
    """(reason the answer did not change or None, the option letter the new Response names)."""
    if row.options and row.answer_idx:
        letter = match(new_response, row.options).letter
        if letter is None:
            return "the new response names no single answer option", None
        if letter == row.answer_idx:
            return f"the new response keeps the correct answer {letter}", letter
        return None, letter
    if normalise_words(new_response) == normalise_words(row.response):
        return "the new response repeats the original response", None
    wrong = normalise_words(fields.get("WRONG ANSWER"))
    for label, known in (("the original answer", fields.get("ORIGINAL ANSWER")), ("the row's answer", row.answer)):
        if wrong and wrong == normalise_words(known) and len(wrong.split()) <= MAX_SHORT_ANSWER_WORDS:
            return f"the wrong answer it names is {label}", None
    return None, None

