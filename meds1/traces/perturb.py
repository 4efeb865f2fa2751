"""Perturbations of step-format traces (``curation.perturbation`` = {type, rate}): how much does trace quality matter?

Each type is one module of ``meds1/traces/perturbations/`` registered with ``meds1.plugins.PERTURBATIONS``: a
function ``fn(ctx: PerturbContext) -> one Outcome per row``. All randomness comes from ``random.Random`` seeded per
row with ``f"{seed}:{row id}"``, so the same seed gives the same perturbed dataset.

Every row's info says whether the perturbation touched it, whether it changed, and if it was touched but not
changed, why (``reason``): a 2-step trace has no step to skip at rate 0.33; a wrong-answer reply that repeats the
right answer is rejected. Rows whose earlier LLM call failed are not perturbed.

Example::

    traces, responses, info = apply_perturbation(rows, step_traces, {"type": "skip", "rate": 0.33}, client, seed=42)
"""
from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from meds1.errors import MedS1Error
from meds1.plugins import PERTURBATIONS
from meds1.traces.rows import TraceRow
from meds1.traces.steps import Step, parse_steps, render_steps

log = logging.getLogger(__name__)

ACCEPTED_RATES = (0.33, 0.66, 1.0)


@dataclass
class Outcome:
    steps: list[Step]
    response: str
    info: dict = field(default_factory=dict)
    changed: bool = True
    touched: bool = True   # False: the perturbation did not pick this row (answer at rate < 1)


@dataclass
class PerturbContext:
    rows: list[TraceRow]
    steps: list[list[Step]]   # [] for a row that must not be perturbed (no trace, or an earlier call failed)
    rate: float
    client: Any
    seed: int

    def rng(self, i: int) -> random.Random:
        return random.Random(f"{self.seed}:{self.rows[i].id}")

    def unchanged(self, i: int, reason: str, **info) -> Outcome:
        """Row i touched but left as it was, and why."""
        return Outcome(list(self.steps[i]), self.rows[i].response, {"reason": reason, **info}, changed=False)

    def untouched(self, i: int, **info) -> Outcome:
        return Outcome(list(self.steps[i]), self.rows[i].response, info, changed=False, touched=False)


Perturbation = Callable[[PerturbContext], list[Outcome]]


def apply_perturbation(rows: list[dict], cot_steps: list[str], cfg: dict, client, seed: int,
                       failed: list[bool] | None = None) -> tuple[list[str], list[str], list[dict]]:
    """Perturb each row's step-format trace; returns (new traces, new responses, info per row).

    ``rows`` carry id, Question, Response (and options/answer_idx for ``answer``); ``cot_steps[i]`` is row i's trace in
    "## Step N:" format (a trace without step headings counts as a single step). Unchanged rows keep their trace as
    is; rows marked in ``failed`` (an earlier LLM call failed) are not perturbed.
    """
    ptype, rate = validate_perturbation(cfg)
    if len(cot_steps) != len(rows):
        raise MedS1Error(f"{len(rows)} rows but {len(cot_steps)} traces", key="curation.perturbation")
    state = [TraceRow.from_row(row, i) for i, row in enumerate(rows)]
    failed = failed or [False] * len(rows)
    steps = [[] if bad else parse_steps(t) or ([Step("Reasoning", t.strip())] if (t or "").strip() else [])
             for t, bad in zip(cot_steps, failed)]
    outcomes = PERTURBATIONS.get(ptype).impl(PerturbContext(state, steps, rate, client, seed))
    traces, responses, infos = [], [], []
    for i, (original, before, outcome) in enumerate(zip(cot_steps, steps, outcomes)):
        traces.append(render_steps(outcome.steps) if outcome.changed else original)
        responses.append(outcome.response if outcome.changed else state[i].response)
        info = {"type": ptype, "rate": rate, "touched": outcome.touched, "changed": outcome.changed,
                "steps_before": len(before), "steps_after": len(outcome.steps), **outcome.info}
        if failed[i]:
            info.update(touched=False, reason="not perturbed: an earlier LLM call for this row failed")
        if state[i].failures:
            info["llm_failures"] = list(state[i].failures)
        infos.append(info)
    _report_unchanged(ptype, infos)
    return traces, responses, infos


def _report_unchanged(ptype: str, infos: list[dict]) -> None:
    left = Counter(x.get("reason", "") for x in infos if x["touched"] and not x["changed"])
    if left:
        log.warning("perturbation %s left %d of %d touched rows unchanged: %s", ptype, sum(left.values()),
                    sum(x["touched"] for x in infos), "; ".join(f"{n} x {r}" for r, n in left.most_common()))


def validate_perturbation(cfg: dict) -> tuple[str, float]:
    if not isinstance(cfg, dict) or "type" not in cfg or "rate" not in cfg:
        raise MedS1Error(f"needs {{'type': ..., 'rate': ...}}, got {cfg!r}", key="curation.perturbation")
    ptype, rate = cfg["type"], cfg["rate"]
    PERTURBATIONS.get(ptype, key="curation.perturbation.type")
    if isinstance(rate, bool) or rate not in ACCEPTED_RATES:
        raise MedS1Error(f"rate {rate!r} is not one of {list(ACCEPTED_RATES)}", key="curation.perturbation.rate")
    return ptype, float(rate)
