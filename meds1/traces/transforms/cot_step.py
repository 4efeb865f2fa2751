"""``cot-step``: synthesise a first-person CoT from question + answer (the ``cot`` row), then rewrite it as steps."""
from __future__ import annotations

from meds1.plugins import TRACE_TRANSFORMS
from meds1.traces.extract import with_cot
from meds1.traces.transforms.table import COT, STEP


@TRACE_TRANSFORMS.register("cot-step", needs={"llm", "makes_steps"})
def extract_cot_step(rows, client):
    """Two calls: cot, then step on its result."""
    return STEP(with_cot(rows, COT(rows, client)), client)
