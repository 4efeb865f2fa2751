"""``skip``: drop int(rate x n) of a row's n steps at random, never the last one standing (no LLM)."""
from __future__ import annotations

from meds1.plugins import PERTURBATIONS
from meds1.traces.perturb import Outcome, PerturbContext


@PERTURBATIONS.register("skip", needs={"steps"})
def perturb_skip(ctx: PerturbContext) -> list[Outcome]:
    """Delete int(rate x steps) random steps, always keeping at least one."""
    outcomes = []
    for i, steps in enumerate(ctx.steps):
        n = len(steps)
        n_skip = min(int(ctx.rate * n), n - 1)
        if n_skip <= 0:
            outcomes.append(ctx.unchanged(i, f"{n} step(s) at rate {ctx.rate:g}: no step to skip", dropped=[]))
            continue
        keep = sorted(ctx.rng(i).sample(range(n), n - n_skip))
        dropped = sorted(set(range(n)) - set(keep))
        outcomes.append(Outcome([steps[k] for k in keep], ctx.rows[i].response, {"dropped": dropped}))
    return outcomes
