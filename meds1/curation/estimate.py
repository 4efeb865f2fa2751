"""How many LLM calls, and what cost, each experiment's curation will need — before any call is made.

    python -m meds1.curation.estimate                      # the experiments workflow_config.yaml selects
    python -m meds1.curation.estimate medqa-1k-s1 "medqa-1k-perturb-*"

The curation runs for real with an estimating client: every request is priced against the real provider's cache
and pricing (``LLMClient.estimate``: cached requests cost nothing) and then answered by the offline rules, so later
transforms see plausible input and are counted too. Base-model probing (s1, novelty-answer) is not run: each row of
the dataset is counted as one judge and one specialty call instead.
"""
from __future__ import annotations

import argparse
import fnmatch
import logging
import sys
from dataclasses import dataclass, field

import yaml

from meds1.cli import guarded
from meds1.curation.pipeline import Context, select_and_rewrite
from meds1.llm.base import LLMResult
from meds1.registry import load_registry


@dataclass
class EstimatingClient:
    real: object
    calls: int = 0
    cached: int = 0
    cost_usd: float = 0.0
    by_task: dict = field(default_factory=dict)

    def run_many(self, requests, desc: str = "") -> list[LLMResult]:
        est = self.real.estimate(requests)
        self.calls, self.cached = self.calls + est["calls"], self.cached + est["cached"]
        self.cost_usd += est["est_cost_usd"]
        for r in requests:
            self.by_task[r.task] = self.by_task.get(r.task, 0) + 1
        return [self.real.cached(r) or self._offline(r) for r in requests]

    @staticmethod
    def _offline(request) -> LLMResult:
        """Stand-in answer so the next transform has input (a cached answer is used instead when there is one)."""
        import asyncio

        from meds1.llm.offline import OfflineProvider

        answer = asyncio.run(OfflineProvider({"provider": "offline"}).generate(request))
        return LLMResult(text=answer.text, provider="estimate")

    @property
    def ledger(self) -> dict:
        return {"calls": self.calls, "cached": self.cached, "cost_usd": round(self.cost_usd, 4)}


class EstimateContext(Context):
    def __init__(self, spec: dict):
        super().__init__(spec)
        from meds1.llm.client import build_client

        self.__dict__["client"] = EstimatingClient(build_client(spec, spec["experiment"]))


def estimate_experiment(spec: dict) -> dict:
    """{rows_in, rows_selected, calls, cached, est_cost_usd} for one curate spec."""
    spec = dict(spec, curation=dict(spec["curation"]))
    probing = "base_model" in spec["curation"].get("needs", ())
    if probing:  # count the judge + specialty calls, select the trace rows at random
        spec["curation"] |= {"method": "random", "options": {}}
    ctx = EstimateContext(spec)
    df, sel, *_ = select_and_rewrite(spec, ctx)
    client = ctx.client
    if probing:
        per_row = client.cost_usd / max(1, client.calls) if client.calls else 0.0
        client.calls += 2 * len(df)
        client.cost_usd += 2 * len(df) * per_row
    return {"rows_in": len(df), "rows_selected": len(sel.order), **client.ledger, "by_task": client.by_task}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiments", nargs="*", help="names or glob patterns (default: the workflow's selection)")
    ap.add_argument("--workflow", default="workflow_config.yaml")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    def run():
        reg = load_registry(yaml.safe_load(open(args.workflow)) or {})
        names = [n for n in reg.experiments if any(fnmatch.fnmatchcase(n, p) for p in args.experiments)] \
            if args.experiments else reg.selected()
        print(f"{'experiment':<40} {'method':<22} {'rows in':>8} {'selected':>8} {'LLM calls':>9} {'cached':>7} {'est. USD':>9}")
        for name in names:
            if not reg.experiments[name].trained:
                continue
            spec = reg.spec(name, "curate")
            e = estimate_experiment(spec)
            print(f"{name:<40} {spec['curation']['method']:<22} {e['rows_in']:>8} {e['rows_selected']:>8} "
                  f"{e['calls']:>9} {e['cached']:>7} {e['cost_usd']:>9.4f}")
    guarded(run)


if __name__ == "__main__":
    main(sys.argv[1:])
