"""``add_irrelevant``: insert int(rate x n) steps taken from other rows' traces at random positions (no LLM)."""
from __future__ import annotations

from meds1.plugins import PERTURBATIONS
from meds1.traces.perturb import Outcome, PerturbContext
from meds1.traces.steps import Step


@PERTURBATIONS.register("add_irrelevant", needs={"steps"})
def perturb_add_irrelevant(ctx: PerturbContext) -> list[Outcome]:
    """Insert int(rate x steps) steps drawn from other selected rows' traces, at random positions."""
    outcomes = []
    for i, steps in enumerate(ctx.steps):
        own = set(steps)
        pool = [(j, s, step) for j, other in enumerate(ctx.steps) if j != i for s, step in enumerate(other)
                if step not in own]
        n_add = min(int(ctx.rate * len(steps)), len(pool))
        if n_add <= 0:
            outcomes.append(ctx.unchanged(i, f"{len(steps)} step(s) at rate {ctx.rate:g}, {len(pool)} foreign "
                                             "step(s) available: nothing to insert", inserted=[]))
            continue
        rng = ctx.rng(i)
        tagged: list[tuple[Step, dict | None]] = [(step, None) for step in steps]
        for j, s, step in rng.sample(pool, n_add):
            tagged.insert(rng.randint(0, len(tagged)), (step, {"from_row": ctx.rows[j].id, "from_step": s}))
        inserted = [{"position": p, **origin} for p, (_, origin) in enumerate(tagged) if origin]
        outcomes.append(Outcome([step for step, _ in tagged], ctx.rows[i].response, {"inserted": inserted}))
    return outcomes
