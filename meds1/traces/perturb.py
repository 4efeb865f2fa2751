"""Perturbations of step-format traces (``curation.perturbation`` = {type, rate}): how much does trace quality matter?

Each type is a plug-in in ``PERTURBATIONS``; all randomness comes from ``random.Random`` seeded per row with
``f"{seed}:{row id}"``, so the same seed gives the same perturbed dataset. Counts follow the rate r and the row's
step count n:

- collapse_consecutive: int((r + 0.01) * (n - 1)) adjacent merges (the LLM writes each merged step)
- skip:                 drop int(r * n) steps, never the last one standing
- shuffle:              move int(r * n) steps among their own positions (at least 2: one step cannot move alone)
- add_irrelevant:       insert int(r * n) steps taken from other rows' traces
- answer:               for int(r * N) of the N rows, the LLM rewrites the last step and the response to argue for a
                        different option (the response's "The answer is X" names a wrong letter)

Example::

    traces, responses, info = apply_perturbation(rows, step_traces, {"type": "skip", "rate": 0.33}, client, seed=42)
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from meds1.errors import MedS1Error
from meds1.plugins import PERTURBATIONS as _KIND
from meds1.traces.extract import TraceRow, build_request, run_texts
from meds1.traces.steps import ANSWER_SENTENCE, Step, parse_steps, render_steps, strip_preamble

ACCEPTED_RATES = (0.33, 0.66, 1.0)
MERGE_PARAMS = {"temperature": 0.0, "max_output_tokens": 600}
ANSWER_PARAMS = {"temperature": 0.0, "max_output_tokens": 800}


@dataclass
class Outcome:
    steps: list[Step]
    response: str
    info: dict = field(default_factory=dict)
    changed: bool = True


@dataclass
class PerturbContext:
    rows: list[TraceRow]
    steps: list[list[Step]]
    rate: float
    client: Any
    seed: int

    def rng(self, i: int) -> random.Random:
        return random.Random(f"{self.seed}:{self.rows[i].id}")


Perturbation = Callable[[PerturbContext], list[Outcome]]
PERTURBATIONS = _KIND


def apply_perturbation(rows: list[dict], cot_steps: list[str], cfg: dict, client, seed: int
                       ) -> tuple[list[str], list[str], list[dict]]:
    """Perturb each row's step-format trace; returns (new traces, new responses, info per row).

    ``rows`` carry id, Question, Response (and options/answer_idx for ``answer``); ``cot_steps[i]`` is row i's trace in
    "## Step N:" format (a trace without step headings counts as a single step). Unchanged rows keep their trace as is.
    """
    ptype, rate = validate_perturbation(cfg)
    if len(cot_steps) != len(rows):
        raise MedS1Error(f"{len(rows)} rows but {len(cot_steps)} traces", key="curation.perturbation")
    state = [TraceRow.from_row(row, i) for i, row in enumerate(rows)]
    steps = [parse_steps(t) or ([Step("Reasoning", t.strip())] if (t or "").strip() else []) for t in cot_steps]
    outcomes = PERTURBATIONS.get(ptype).impl(PerturbContext(state, steps, rate, client, seed))
    traces, responses, infos = [], [], []
    for original, before, outcome in zip(cot_steps, steps, outcomes):
        traces.append(render_steps(outcome.steps) if outcome.changed else original)
        responses.append(outcome.response)
        infos.append({"type": ptype, "rate": rate, "changed": outcome.changed, "steps_before": len(before),
                      "steps_after": len(outcome.steps), **outcome.info})
    return traces, responses, infos


def validate_perturbation(cfg: dict) -> tuple[str, float]:
    if not isinstance(cfg, dict) or "type" not in cfg or "rate" not in cfg:
        raise MedS1Error(f"needs {{'type': ..., 'rate': ...}}, got {cfg!r}", key="curation.perturbation")
    ptype, rate = cfg["type"], cfg["rate"]
    PERTURBATIONS.get(ptype, key="curation.perturbation.type")
    if isinstance(rate, bool) or rate not in ACCEPTED_RATES:
        raise MedS1Error(f"rate {rate!r} is not one of {list(ACCEPTED_RATES)}", key="curation.perturbation.rate")
    return ptype, float(rate)


def _unchanged(ctx: PerturbContext, i: int, **info) -> Outcome:
    return Outcome(list(ctx.steps[i]), ctx.rows[i].response, info, changed=False)


# ---------------------------------------------------------------------------------------------- rule-only types

@PERTURBATIONS.register("skip", needs={"steps"})
def perturb_skip(ctx: PerturbContext) -> list[Outcome]:
    outcomes = []
    for i, steps in enumerate(ctx.steps):
        n = len(steps)
        n_skip = min(int(ctx.rate * n), n - 1)
        if n_skip <= 0:
            outcomes.append(_unchanged(ctx, i, dropped=[]))
            continue
        keep = sorted(ctx.rng(i).sample(range(n), n - n_skip))
        dropped = sorted(set(range(n)) - set(keep))
        outcomes.append(Outcome([steps[k] for k in keep], ctx.rows[i].response, {"dropped": dropped}))
    return outcomes


def shuffle_count(rate: float, n: int) -> int:
    """int(rate * n) positions, raised to 2 when it is 1 (a single position cannot move), at most n."""
    k = min(int(rate * n), n)
    return 2 if k == 1 and n >= 2 else k


@PERTURBATIONS.register("shuffle", needs={"steps"})
def perturb_shuffle(ctx: PerturbContext) -> list[Outcome]:
    outcomes = []
    for i, steps in enumerate(ctx.steps):
        k = shuffle_count(ctx.rate, len(steps))
        if k < 2:
            outcomes.append(_unchanged(ctx, i, moved=[]))
            continue
        # A random k-cycle over k random positions: every chosen position receives another position's step.
        positions = ctx.rng(i).sample(range(len(steps)), k)
        new = list(steps)
        for j, pos in enumerate(positions):
            new[positions[(j + 1) % k]] = steps[pos]
        outcomes.append(Outcome(new, ctx.rows[i].response, {"moved": sorted(positions)}))
    return outcomes


@PERTURBATIONS.register("add_irrelevant", needs={"steps"})
def perturb_add_irrelevant(ctx: PerturbContext) -> list[Outcome]:
    outcomes = []
    for i, steps in enumerate(ctx.steps):
        own = set(steps)
        pool = [(j, s, step) for j, other in enumerate(ctx.steps) if j != i for s, step in enumerate(other)
                if step not in own]
        n_add = min(int(ctx.rate * len(steps)), len(pool))
        if n_add <= 0:
            outcomes.append(_unchanged(ctx, i, inserted=[]))
            continue
        rng = ctx.rng(i)
        tagged: list[tuple[Step, dict | None]] = [(step, None) for step in steps]
        for j, s, step in rng.sample(pool, n_add):
            tagged.insert(rng.randint(0, len(tagged)), (step, {"from_row": ctx.rows[j].id, "from_step": s}))
        inserted = [{"position": p, **origin} for p, (_, origin) in enumerate(tagged) if origin]
        outcomes.append(Outcome([step for step, _ in tagged], ctx.rows[i].response, {"inserted": inserted}))
    return outcomes


# ---------------------------------------------------------------------------------------------- LLM types

def merge_groups(n: int, n_merges: int, rng: random.Random) -> list[list[int]]:
    """Remove ``n_merges`` random boundaries between n steps; the runs of steps left joined are merged."""
    cut = set(rng.sample(range(n - 1), n_merges)) if n > 1 else set()
    groups, current = [], [0] if n else []
    for b in range(n - 1):
        if b in cut:
            current.append(b + 1)
        else:
            groups.append(current)
            current = [b + 1]
    return groups + ([current] if current else [])


@PERTURBATIONS.register("collapse_consecutive", needs={"steps", "llm"})
def perturb_collapse(ctx: PerturbContext) -> list[Outcome]:
    plans = []
    for i, steps in enumerate(ctx.steps):
        n = len(steps)
        n_merges = min(int((ctx.rate + 0.01) * (n - 1)), n - 1) if n > 1 else 0
        plans.append(merge_groups(n, n_merges, ctx.rng(i)))
    jobs = [(i, g) for i, groups in enumerate(plans) for g in groups if len(g) > 1]
    texts = run_texts(ctx.client, [_merge_request(ctx.rows[i], [ctx.steps[i][k] for k in g]) for i, g in jobs])
    merged = {(i, g[0]): _parse_merged(text, [ctx.steps[i][k] for k in g]) for (i, g), text in zip(jobs, texts)}
    outcomes = []
    for i, groups in enumerate(plans):
        if all(len(g) == 1 for g in groups):
            outcomes.append(_unchanged(ctx, i, merged_groups=[]))
            continue
        new = [merged[(i, g[0])] if len(g) > 1 else ctx.steps[i][g[0]] for g in groups]
        info = {"merged_groups": [g for g in groups if len(g) > 1], "merges": len(ctx.steps[i]) - len(new)}
        outcomes.append(Outcome(new, ctx.rows[i].response, info))
    return outcomes


def _merge_request(row: TraceRow, group: list[Step]):
    max_words = max(8, sum(len(f"{s.title} {s.body}".split()) for s in group) // len(group))
    listing = render_steps(group)
    payload = {"id": row.id, "steps": [{"title": s.title, "body": s.body} for s in group], "max_words": max_words}
    return build_request("perturb:collapse_consecutive", "perturb-collapse", {"steps": listing, "max_words": max_words},
                         payload, MERGE_PARAMS)


def _parse_merged(text: str, group: list[Step]) -> Step:
    """The LLM's merged step; if it gave nothing, the group's steps joined (the merge still happens)."""
    text = strip_preamble(text)
    head = re.match(r"^[ \t]*#{0,6}[ \t]*(?:Step[^:\n]*:)[ \t]*(.*)\n?", text, re.IGNORECASE)
    if head and head.group(1).strip():
        return Step(head.group(1).strip(), text[head.end():].strip())
    if text:
        return Step(group[0].title, text)
    return Step(" and ".join(s.title for s in group), "\n\n".join(s.body for s in group))


@PERTURBATIONS.register("answer", needs={"steps", "llm"})
def perturb_answer(ctx: PerturbContext) -> list[Outcome]:
    eligible = [i for i, steps in enumerate(ctx.steps) if steps]
    n_perturb = min(int(ctx.rate * len(ctx.rows)), len(eligible))
    chosen = sorted(random.Random(f"{ctx.seed}:answer-rows").sample(eligible, n_perturb))
    wrong = {i: _pick_wrong_option(ctx.rows[i], ctx.rng(i)) for i in chosen}
    texts = run_texts(ctx.client, [_answer_request(ctx.rows[i], ctx.steps[i][-1], wrong[i]) for i in chosen])
    outcomes = [_unchanged(ctx, i, answer_changed=False) for i in range(len(ctx.rows))]
    for i, text in zip(chosen, texts):
        outcomes[i] = _wrong_outcome(ctx, i, text, wrong[i])
    return outcomes


def _pick_wrong_option(row: TraceRow, rng: random.Random) -> str | None:
    letters = [letter for letter in sorted(row.options) if letter != row.answer_idx]
    return rng.choice(letters) if letters else None


def _answer_request(row: TraceRow, last: Step, wrong: str | None):
    options = "\n".join(f"{k}. {v}" for k, v in row.options.items()) or "(none: open question)"
    target = f"{wrong}. {row.options[wrong]}" if wrong else "any plausible but wrong conclusion"
    values = {"question": row.question, "options": options, "last_step": render_steps([last]),
              "answer": row.response, "wrong_option": target}
    payload = {**row.payload(), "last_step": {"title": last.title, "body": last.body}, "wrong_letter": wrong,
               "wrong_text": row.options.get(wrong) if wrong else None}
    return build_request("perturb:answer", "perturb-answer", values, payload, ANSWER_PARAMS)


def _wrong_outcome(ctx: PerturbContext, i: int, text: str, wrong: str | None) -> Outcome:
    row, steps = ctx.rows[i], ctx.steps[i]
    step_text = re.search(r"STEP\s*:\s*(.*?)(?=\n\s*\**RESPONSE\s*:|$)", text, re.DOTALL | re.IGNORECASE)
    response = re.search(r"RESPONSE\s*:\s*(.*)$", text, re.DOTALL | re.IGNORECASE)
    if not step_text or not step_text.group(1).strip():
        return _unchanged(ctx, i, answer_changed=False, reason="the LLM gave no usable STEP/RESPONSE")
    new_response = name_wrong_letter(response.group(1).strip() if response else row.response, wrong, row)
    new_steps = steps[:-1] + [Step(steps[-1].title, step_text.group(1).strip())]
    letters = ANSWER_SENTENCE.findall(new_response)
    info = {"answer_changed": True, "correct_letter": row.answer_idx, "wrong_letter": wrong,
            "new_letter": letters[-1].upper() if letters else None}
    return Outcome(new_steps, new_response, info)


def name_wrong_letter(response: str, wrong: str | None, row: TraceRow) -> str:
    """Make sure the response's final "The answer is X" names a wrong option (the LLM may not have complied)."""
    if wrong is None:
        return response
    letters = [x.upper() for x in ANSWER_SENTENCE.findall(response)]
    if letters and letters[-1] != row.answer_idx and letters[-1] in row.options:
        return response
    if letters:
        return ANSWER_SENTENCE.sub(lambda m: m.group(0)[:m.start(1) - m.start(0)] + wrong
                                   + m.group(0)[m.end(1) - m.start(0):], response)
    return f"{response.rstrip()} The answer is {wrong}."
