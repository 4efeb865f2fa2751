"""``shuffle``: move int(rate x n) of a row's steps among their own positions (at least 2; no LLM)."""
from __future__ import annotations

from meds1.plugins import PERTURBATIONS
from meds1.traces.perturb import Outcome, PerturbContext


def shuffle_count(rate: float, n: int) -> int:
    """int(rate * n) positions, raised to 2 when it is 1 (a single position cannot move), at most n."""
    k = min(int(rate * n), n)
    return 2 if k == 1 and n >= 2 else k


@PERTURBATIONS.register("shuffle", needs={"steps"})
def perturb_shuffle(ctx: PerturbContext) -> list[Outcome]:
    """Permute int(rate x steps) chosen step positions among themselves (every chosen step moves)."""
    outcomes = []
    for i, steps in enumerate(ctx.steps):
        k = shuffle_count(ctx.rate, len(steps))
        if k < 2:
            outcomes.append(ctx.unchanged(i, f"{len(steps)} step(s): nothing to move", moved=[]))
            continue
        # A random k-cycle over k random positions: every chosen position receives another position's step.
        positions = ctx.rng(i).sample(range(len(steps)), k)
        new = list(steps)
        for j, pos in enumerate(positions):
            new[positions[(j + 1) % k]] = steps[pos]
        outcomes.append(Outcome(new, ctx.rows[i].response, {"moved": sorted(positions)}))
    return outcomes
