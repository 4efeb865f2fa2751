"""LLM calls by kind, their cost, and the base-model work each experiment's curation needs — before any call is made.

    python -m meds1.curation.estimate                            # the experiments workflow_config.yaml selects
    python -m meds1.curation.estimate "medqa-1k-*" --llm gemini-2.0-flash \\
        --stand-in huatuo-sft=data/sample.json --rows huatuo-sft=25371

The curation runs for real with estimating clients: every request is priced against the real provider's cache and
pricing (cached requests cost nothing; each reply is priced at its whole output budget, the request's own
``max_output_tokens``, so the figure is an upper bound: "USD <=") and then answered
by its offline stand-in, so later steps see plausible input and are counted too. Kinds of LLM call: ``rewrite``
(trace transforms and perturbations), ``restore``, ``judge`` (s1's base_judge) and ``specialty`` (s1's labeller; an
upper bound: the stand-in base model answers nothing, so every judged row counts as hard). Base-model answers are
GPU work, not LLM calls, and are listed apart (questions not yet in the answer cache). A selection method that calls
no LLM but needs an embedder or the base model (embedding-*, novelty-answer) is replaced by a seeded random choice of
the same n: which rows are rewritten changes, how many does not.

``--stand-in KEY=PATH`` replaces a dataset that is not on this machine (a hub dataset, offline) by a local sample of
it, and ``--rows KEY=N`` scales the counts to the real size: selection-side work (judge, specialty, base-model
answers) by N / sample rows, trace-side work (rewrite, restore) by the rows the real run would select / the rows
selected in the sample. Such rows are marked "~".
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from meds1.cli import guarded
from meds1.curation.pipeline import Context, select_and_rewrite
from meds1.errors import MedS1Error
from meds1.llm.base import LLMResult
from meds1.plugins import SELECTION_METHODS

KINDS = ("rewrite", "restore", "judge", "specialty")
ROLE_KIND = {"base_judge": "judge", "specialty_labeler": "specialty"}
SELECTION_KINDS = ("judge", "specialty")           # scale with the rows read
EXPENSIVE_WITHOUT_LLM = {"embedder", "base_model", "probes", "gpu"}


@dataclass
class Tally:
    calls: int = 0
    cached: int = 0
    cost_usd: float = 0.0


def stand_in_text(request) -> str:
    """The request's offline stand-in answer (providers that still look stand-ins up by task: through them)."""
    if request.offline is not None:
        answer = request.offline(request)
        return str(answer[0] if isinstance(answer, tuple) else answer)
    import asyncio

    from meds1.llm.offline import OfflineProvider

    return asyncio.run(OfflineProvider({"provider": "offline"}).generate(request)).text


@dataclass
class EstimatingClient:
    """Prices requests with the real client (cache + pricing), answers them with their stand-ins."""
    real: object
    role: str
    tallies: dict = field(default_factory=dict)

    def kind(self, request) -> str:
        return ROLE_KIND.get(self.role) or ("restore" if request.task.startswith("restore") else "rewrite")

    def run_many(self, requests, desc: str = "", **kwargs) -> list[LLMResult]:
        requests = list(requests)
        for kind in KINDS:
            group = [r for r in requests if self.kind(r) == kind]
            if group:
                est, tally = self.real.estimate(group), self.tallies[kind]
                tally.calls, tally.cached = tally.calls + est["calls"], tally.cached + est["cached"]
                tally.cost_usd += est["est_cost_usd"]
        return [self.real.cached(r) or LLMResult(text=stand_in_text(r), provider="estimate") for r in requests]


class EstimateContext(Context):
    """The curate context with estimating LLM clients and a base model that only counts its work."""

    def __init__(self, spec: dict):
        super().__init__(spec)
        self.tallies = {kind: Tally() for kind in KINDS}
        self.base_model_answers = 0

    def client_for(self, role: str = "curation"):
        return EstimatingClient(super().client_for(role), role, self.tallies)

    def base_answers(self, questions: list[str]) -> list[str]:
        from meds1.curation.base_model import uncached_for_curation

        self.base_model_answers += uncached_for_curation(questions, self)
        return [""] * len(questions)

    def token_lengths(self, texts: list[str]) -> list[int]:
        """The base tokenizer's counts when it is on this machine; else word counts (only s1's exact-limit quality
        rule reads them: a handful of rows)."""
        if Path(str(self.base_model.get("path"))).is_dir():
            return super().token_lengths(texts)
        return [len(str(t).split()) for t in texts]


def substitute_selection(spec: dict) -> tuple[dict, bool]:
    """Swap a selection that calls no LLM but needs a GPU/embedder for random (same n); True when the base model
    would answer every row (its answers are counted as GPU work)."""
    method = SELECTION_METHODS.get(spec["curation"]["method"])
    if "llm" in method.needs or not method.needs & EXPENSIVE_WITHOUT_LLM:
        return spec, False
    curation = dict(spec["curation"], method="random", options={})
    return dict(spec, curation=curation), "base_model" in method.needs


def estimate_experiment(spec: dict, rows_full: int | None = None) -> dict:
    """{rows_in, rows_selected, by_kind: {kind: {calls, cached, cost_usd}}, calls, cached, cost_usd,
    base_model_answers, extrapolated} for one curate spec (``rows_full``: scale a stand-in sample to this size)."""
    spec, answers_every_row = substitute_selection(spec)
    ctx = EstimateContext(spec)
    df, sel, *_ = select_and_rewrite(spec, ctx)
    if answers_every_row:
        ctx.base_answers(df["Question"].tolist())
    rows_in, selected, gpu = len(df), len(sel.order), ctx.base_model_answers
    tallies = {k: Tally(t.calls, t.cached, t.cost_usd) for k, t in ctx.tallies.items()}
    if rows_full:
        n = spec["curation"].get("n_samples")
        full_selected = min(n or rows_full, rows_full)
        for kind, t in tallies.items():
            f = rows_full / max(1, rows_in) if kind in SELECTION_KINDS else full_selected / max(1, selected)
            tallies[kind] = Tally(round(t.calls * f), round(t.cached * f), t.cost_usd * f)
        gpu, rows_in, selected = round(gpu * rows_full / max(1, len(df))), rows_full, full_selected
    return {"rows_in": rows_in, "rows_selected": selected, "base_model_answers": gpu, "extrapolated": bool(rows_full),
            "by_kind": {k: vars(t) for k, t in tallies.items()},
            "calls": sum(t.calls for t in tallies.values()), "cached": sum(t.cached for t in tallies.values()),
            "cost_usd": round(sum(t.cost_usd for t in tallies.values()), 4)}


HEADER = (f"{'experiment':<52} {'method':<20} {'rows in':>8} {'selected':>8} {'rewrite':>8} {'restore':>7} "
          f"{'judge':>6} {'specialty':>9} {'cached':>7} {'USD <=':>9} {'base-model answers (GPU)':>24}")


def table_row(name: str, method: str, e: dict) -> str:
    k = e["by_kind"]
    rows = ("~" if e["extrapolated"] else "") + str(e["rows_in"])
    return (f"{name:<52} {method:<20} {rows:>8} {e['rows_selected']:>8} {k['rewrite']['calls']:>8} "
            f"{k['restore']['calls']:>7} {k['judge']['calls']:>6} {k['specialty']['calls']:>9} {e['cached']:>7} "
            f"{e['cost_usd']:>9.4f} {e['base_model_answers']:>24}")


def pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise MedS1Error(f"expected KEY=VALUE, got '{item}'", key=flag)
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiments", nargs="*", help="names or glob patterns (default: the workflow's selection)")
    ap.add_argument("--workflow", default="workflow_config.yaml")
    ap.add_argument("--llm", help="price with this config.json model for every curation role (default: the "
                                  "workflow's curation_llm, else model_choices)")
    ap.add_argument("--stand-in", action="append", default=[], metavar="KEY=PATH", help="a local sample for a dataset")
    ap.add_argument("--rows", action="append", default=[], metavar="KEY=N", help="the real size of a stood-in dataset")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    guarded(lambda: print_table(args))


def print_table(args) -> None:
    from meds1.registry import load_registry
    from meds1.registry.workflow import load_yaml_file

    workflow = load_yaml_file(args.workflow) or {}
    if args.llm:
        workflow["curation_llm"] = args.llm
    reg = load_registry(workflow)
    stand_ins, sizes = pairs(args.stand_in, "--stand-in"), {k: int(v) for k, v in pairs(args.rows, "--rows").items()}
    names = reg.match(args.experiments, key="experiments") if args.experiments else reg.selected()
    print(HEADER)
    for name in reg.stage_experiments("curate", names):
        spec = reg.spec(name, "curate")
        key = spec["dataset"]["key"]
        if key in stand_ins:
            entry = {k: v for k, v in spec["dataset"].items() if not k.startswith("hf_")}
            spec["dataset"] = entry | {"file_path": stand_ins[key]}
        print(table_row(name, spec["curation"]["method"], estimate_experiment(spec, sizes.get(key))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
