"""``collapse_consecutive``: int((rate + 0.01) x (n - 1)) merges of adjacent steps; the LLM writes each merged step
(one call per merged group, a concise step shorter than the group's average)."""
from __future__ import annotations

import random
import re

from meds1.plugins import PERTURBATIONS
from meds1.traces.extract import run_texts
from meds1.traces.perturb import Outcome, PerturbContext
from meds1.traces.prompts import build_request, stand_in
from meds1.traces.rows import TraceRow
from meds1.traces.steps import Step, render_steps, strip_preamble
from meds1.traces.textrules import key_sentence, lower_first

MERGE_PARAMS = {"temperature": 0.0, "max_output_tokens": 600}  # one short step back


def offline_collapse(p: dict) -> str:
    titles = [s["title"] for s in p["steps"] if s["title"]]
    title = " and ".join([titles[0]] + [lower_first(t) for t in titles[1:]]) if titles else "Combined reasoning"
    body = " ".join(key_sentence(s["body"]) for s in p["steps"]).split()
    return f"## Step: {title}\n\n{' '.join(body[:max(8, p['max_words'] - 1)])}"


OFFLINE = stand_in(offline_collapse, "titles joined; the key sentence of each merged step kept")


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
    """Merge random adjacent steps (the LLM writes each merged step); at rate 1 everything becomes one step."""
    plans = []
    for i, steps in enumerate(ctx.steps):
        n = len(steps)
        n_merges = min(int((ctx.rate + 0.01) * (n - 1)), n - 1) if n > 1 else 0
        plans.append(merge_groups(n, n_merges, ctx.rng(i)))
    jobs = [(i, g) for i, groups in enumerate(plans) for g in groups if len(g) > 1]
    requests = [merge_request(ctx.rows[i], [ctx.steps[i][k] for k in g]) for i, g in jobs]
    texts = run_texts(ctx.client, requests, [ctx.rows[i] for i, _ in jobs])
    merged = {(i, g[0]): text for (i, g), text in zip(jobs, texts)}
    outcomes = []
    for i, groups in enumerate(plans):
        if all(len(g) == 1 for g in groups):
            outcomes.append(ctx.unchanged(i, f"{len(ctx.steps[i])} step(s): nothing to merge", merged_groups=[]))
        elif any(merged[(i, g[0])] is None for g in groups if len(g) > 1):
            outcomes.append(ctx.unchanged(i, "a merge call failed (see llm_failures)", merged_groups=[]))
        else:
            new = [parse_merged(merged[(i, g[0])], [ctx.steps[i][k] for k in g]) if len(g) > 1
                   else ctx.steps[i][g[0]] for g in groups]
            info = {"merged_groups": [g for g in groups if len(g) > 1], "merges": len(ctx.steps[i]) - len(new)}
            outcomes.append(Outcome(new, ctx.rows[i].response, info))
    return outcomes


def merge_request(row: TraceRow, group: list[Step]):
    max_words = max(8, sum(len(f"{s.title} {s.body}".split()) for s in group) // len(group))
    payload = {"id": row.id, "steps": [{"title": s.title, "body": s.body} for s in group], "max_words": max_words}
    return build_request("perturb:collapse_consecutive", "perturb-collapse",
                         {"steps": render_steps(group), "max_words": max_words}, payload, offline=OFFLINE,
                         params=MERGE_PARAMS)


def parse_merged(text: str, group: list[Step]) -> Step:
    """The LLM's merged step; if it gave nothing, the group's steps joined (the merge still happens)."""
    text = strip_preamble(text)
    head = re.match(r"^[ \t]*#{0,6}[ \t]*(?:Step[^:\n]*:)[ \t]*(.*)\n?", text, re.IGNORECASE)
    if head and head.group(1).strip():
        return Step(head.group(1).strip(), text[head.end():].strip())
    if text:
        return Step(group[0].title, text)
    return Step(" and ".join(s.title for s in group), "\n\n".join(s.body for s in group))
