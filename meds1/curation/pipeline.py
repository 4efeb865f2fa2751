"""The curate stage: load -> select -> rewrite traces -> chat-format -> split, keeping every row's status.

    curate(spec, dataset="curated/x/dataset", rows="curated/x/rows.parquet", stats="curated/x/stats.json",
           cost="curated/x/llm_cost.json")
"""
from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from functools import cached_property

import pandas as pd

from meds1.curation.selection import Selection
from meds1.curation.settings import CurationConfig, CurationSettings
from meds1.data.train import load_train_dataset
from meds1.errors import MedS1Error
from meds1.io import atomic_path, write_json
from meds1.plugins import SELECTION_METHODS

log = logging.getLogger(__name__)
EMPTY_LEDGER = {"calls": 0, "cached": 0, "retries": 0, "failures": 0, "input_tokens": 0, "output_tokens": 0,
                "cost_usd": 0.0}


class Context:
    """What a selection method or trace transform may use. LLM clients are built when first asked for, one per role
    (``curation`` for trace rewrites; a method may declare others, e.g. ``base_judge``): roles naming the same LLM
    share one client."""

    def __init__(self, spec: dict):
        self.spec, self.seed = spec, spec["seed"]
        self.cache_dir = spec.get("cache_dir", "cache")
        self.settings = CurationConfig.from_spec(spec.get("curation_settings"))
        self._clients: dict[str, object] = {}      # LLM entry (JSON) -> client
        self.roles_used: dict[str, str] = {}        # role -> LLM entry (JSON)

    @property
    def base_model(self) -> dict:
        """The model that answers training questions and whose tokenizer measures traces (model_choices.base)."""
        return self.spec.get("base_model") or self.spec["model"]

    def base_answers(self, questions: list[str]) -> list[str]:
        """The base model's answers (generated once, cached; ``meds1.curation.base_model``)."""
        from meds1.curation import base_model

        return base_model.answer_for_curation(questions, self)

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Token counts under the base model's tokenizer."""
        from meds1.curation import base_model

        return base_model.token_lengths(texts, self.base_model)

    def llm_entry(self, role: str) -> dict:
        return (self.spec.get("llm_roles") or {}).get(role) or self.spec.get("llm") or {}

    def client_for(self, role: str = "curation"):
        entry = json.dumps(self.llm_entry(role), sort_keys=True)
        if entry not in self._clients:
            self._clients[entry] = self.make_client(json.loads(entry))
        self.roles_used[role] = entry
        return self._clients[entry]

    def make_client(self, entry: dict):
        from meds1.llm.client import build_client

        return build_client({**self.spec, "llm": entry}, self.spec["experiment"])

    @property
    def client(self):
        """The trace rewriter's client (role ``curation``), built on its first request: a transform that calls no
        LLM (``extract: none``) needs no LLM settings."""
        return RoleClient(self, "curation")

    def ask(self, role: str, requests: list, desc: str = "") -> list:
        """``run_many`` in chunks of config.json ``curation.gemini_batch_size`` (each finished chunk is cached)."""
        size, results = self.settings.gemini_batch_size, []
        for start in range(0, len(requests), size):
            results += self.client_for(role).run_many(requests[start:start + size], desc=desc)
        return results

    def ledger(self) -> dict:
        """The LLM ledgers of every client used, summed (``by_role``: each role's provider and model)."""
        total = dict(EMPTY_LEDGER)
        for client in self._clients.values():
            for key, value in client.ledger.items():
                if key in total and isinstance(value, (int, float)):
                    total[key] += value
        total["cost_usd"] = round(total["cost_usd"], 6)
        # each client's whole ledger too (this_run, runs, failure reasons): the sums above keep numbers only
        ledgers = {role: self._clients[entry].ledger for role, entry in sorted(self.roles_used.items())
                   if entry in self._clients}
        return total | {"by_role": self.provenance(), "ledgers": ledgers}

    def provenance(self) -> dict:
        """role -> {provider, model, stand_in}: who wrote what (``stand_in``: the offline rules, not a model)."""
        out = {}
        for role, entry in sorted(self.roles_used.items()):
            llm = json.loads(entry)
            provider = llm.get("provider", "offline")
            out[role] = {"provider": provider, "model": llm.get("model"), "stand_in": provider == "offline"}
        return out

    @cached_property
    def probes(self) -> list[dict]:
        """Probe questions ({id, source, question, ...}) for methods that need them: every item of the curation
        block's ``probe_dataset``, or a seeded sample of the eval set (spec ``probe_dataset.sample``, the seed's 100;
        at most half the set, so a small eval set keeps questions to evaluate)."""
        from meds1.data.eval_items import load_eval_items

        entry = dict(self.spec["probe_dataset"])
        sample = entry.pop("sample", None)
        items = load_eval_items(entry, base_dir=".", seed=self.seed)
        if sample is not None:
            keep = sorted(random.Random(self.seed).sample(range(len(items)), min(sample, len(items) // 2)))
            items = [items[i] for i in keep]
        return items


class RoleClient:
    """A role's client, looked up when a request is first sent."""

    def __init__(self, ctx: Context, role: str):
        self.ctx, self.role = ctx, role

    def run_many(self, requests, *args, **kwargs):
        requests = list(requests)
        return self.ctx.client_for(self.role).run_many(requests, *args, **kwargs) if requests else []

    def __getattr__(self, name):
        if not self.ctx.llm_entry(self.role):  # no LLM configured: callers asking with a default get it
            raise AttributeError(name)
        return getattr(self.ctx.client_for(self.role), name)


def initial_sample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """config.json curation.initial_sample: a seeded subset taken before any method (bounds the cost of LLM methods);
    the rows keep their content order."""
    if not n or n >= len(df):
        return df
    return df.sample(n=n, random_state=seed).sort_index().reset_index(drop=True)


def split_rows(order: list[int], fraction: float, seed: int) -> dict[int, str]:
    """Seeded train/validation split of the selected rows."""
    n = len(order)
    n_val = 0 if n < 2 else max(1, round(n * fraction))
    shuffled = list(order)
    random.Random(seed).shuffle(shuffled)
    return {r: ("validation" if i < n_val else "train") for i, r in enumerate(shuffled)}


def rewrite_traces(df: pd.DataFrame, order: list[int], cur: dict, ctx: Context):
    """Extract transforms, then perturbation and restore, on the selected rows (meds1.traces.apply)."""
    rows = [df.iloc[i].to_dict() for i in order]
    if not cur["extract"] and not cur.get("perturbation"):
        return [r["Question"] for r in rows], [r["Complex_CoT"] for r in rows], [r["Response"] for r in rows], {}
    from meds1.traces.apply import transform_traces

    out = transform_traces(rows, cur, ctx.client, ctx.seed)
    return out.questions, out.traces, out.responses, out.columns


def build_dataset(df, order, questions, traces, responses, split, spec):
    from datasets import Dataset, DatasetDict

    from meds1.traces.examples import build_example

    fmt, system = spec["curation"]["format"], spec["model"].get("system_prompt")
    records = {"train": [], "validation": []}
    for i, question, cot, resp in zip(order, questions, traces, responses):
        ex = build_example(question, cot, resp, fmt=fmt, system_prompt=system)
        records[split[i]].append({"id": df["id"].iloc[i], **ex, "Question": question, "Complex_CoT": cot,
                                  "Response": resp})
    # an empty split cannot be reloaded by datasets 5 (zero shards): leave it out; training then selects "last"
    return DatasetDict({k: Dataset.from_list(v) for k, v in records.items() if v})


def row_table(df, sel: Selection, order, split, columns) -> pd.DataFrame:
    table = pd.DataFrame({"id": df["id"], "Complex_CoT_original": df["Complex_CoT"],
                          "Response_original": df["Response"]})
    table["status"], table["stage"], table["reason"], table["split"] = "removed", "selection", "not selected", None
    for i, (stage, reason) in sel.removed.items():
        table.loc[i, ["stage", "reason"]] = [stage, reason]
    table.loc[order, ["status", "stage", "reason"]] = ["kept", "final", ""]
    table.loc[order, "split"] = [split[i] for i in order]
    for name, values in sel.columns.items():
        table[name] = values
    for name, values in columns.items():
        if name in table.columns:  # the originals are already there for every row
            continue
        table[name] = None
        table.loc[order, name] = pd.Series(values, index=order, dtype=object)
    return table


def stats_of(table: pd.DataFrame, spec: dict, ctx: Context, df: pd.DataFrame, sel: Selection, seconds: float) -> dict:
    removed, ledger = table[table["status"] == "removed"], ctx.ledger()
    load = df.attrs.get("load_report") or {}
    out = {"experiment": spec["experiment"], "curation": spec["curation"], "rows_read": load.get("rows_read", len(df)),
           "dropped_at_load": load.get("dropped", {}), "rows_in": len(table),
           "requested": spec["curation"].get("n_samples"), "selected": len(sel.order),
           "rows_kept": int((table["status"] == "kept").sum()), "train": int((table["split"] == "train").sum()),
           "validation": int((table["split"] == "validation").sum()),
           "removed_by_reason": dict(Counter(f"{s}: {r}" for s, r in zip(removed["stage"], removed["reason"]))),
           "llm": {k: ledger.get(k, 0) for k in ("calls", "cached", "cost_usd")} | {"by_role": ledger["by_role"]},
           "trace_writer": ledger["by_role"].get("curation"),
           "offline_stand_in": any(r["stand_in"] for r in ledger["by_role"].values()), "seconds": round(seconds, 2)}
    if "specialty" in table.columns:
        out["specialties"] = dict(Counter(table.loc[table["status"] == "kept", "specialty"].dropna()))
    if "llm_failed" in table.columns:  # the trace pipeline ran: failed rows, what the perturbation left unchanged
        from meds1.traces.apply import counts_from_columns

        out["traces"] = counts_from_columns({c: table.loc[table["status"] == "kept", c].tolist() for c in table})
    if spec.get("probe_dataset"):  # every probe question, used or not: the eval leaves them all out
        out["probes"] = {"dataset": spec["probe_dataset"]["key"], "ids": sorted(p["id"] for p in ctx.probes)}
    return out


def load_rows(spec: dict, ctx: Context) -> pd.DataFrame:
    df = load_train_dataset(spec["dataset"], tokenizer_path=ctx.base_model.get("path"))
    report = df.attrs["load_report"]
    if report["dropped"]:
        log.warning("%s: %d of %d rows dropped at load (%s)", spec["experiment"], report["rows_read"] - report["rows"],
                    report["rows_read"], ", ".join(f"{k}: {v}" for k, v in report["dropped"].items()))
    df = initial_sample(df, ctx.settings.initial_sample, spec["seed"])
    df.attrs["load_report"] = report
    return df


def select_and_rewrite(spec: dict, ctx: Context):
    """Everything but the writing: the loaded rows, the selection, and the rewritten question/trace/response."""
    cur = spec["curation"]
    df = load_rows(spec, ctx)
    method = SELECTION_METHODS.get(cur["method"], experiment=spec["experiment"], key="curation.method")
    if cur.get("n_samples") and cur["n_samples"] > len(df):
        log.warning("%s: n_samples %d is more than the %d rows available: at most %d can be selected",
                    spec["experiment"], cur["n_samples"], len(df), len(df))
    sel = method.impl(df, CurationSettings.from_spec(cur), ctx)
    log.info("%s: %d of %d rows selected by %s", spec["experiment"], len(sel.order), len(df), cur["method"])
    return df, sel, *rewrite_traces(df, sel.order, cur, ctx)


def curate(spec: dict, *, dataset: str, rows: str, stats: str, cost: str) -> dict:
    """Run the curate stage; any user error raised on the way names the experiment."""
    try:
        return write_outputs(spec, dataset=dataset, rows=rows, stats=stats, cost=cost)
    except MedS1Error as err:
        if not err.experiment:
            err.experiment = spec["experiment"]
            err.args = (str(err),)
        raise


def write_outputs(spec: dict, *, dataset: str, rows: str, stats: str, cost: str) -> dict:
    t0, ctx = time.time(), Context(spec)
    df, sel, questions, traces, responses, columns = select_and_rewrite(spec, ctx)
    split = split_rows(sel.order, spec["validation_fraction"], spec["seed"])
    table = row_table(df, sel, sel.order, split, columns)
    with atomic_path(dataset) as tmp:
        build_dataset(df, sel.order, questions, traces, responses, split, spec).save_to_disk(str(tmp))
    with atomic_path(rows) as tmp:
        table.to_parquet(tmp, index=False)
    write_json(cost, ctx.ledger())
    summary = stats_of(table, spec, ctx, df, sel, time.time() - t0)
    if summary["offline_stand_in"]:  # fine for the demo and tests; a study must not mistake it for a model's work
        roles = [r for r, who in summary["llm"]["by_role"].items() if who["stand_in"]]
        log.warning("%s: %s answered by the offline stand-in rules, not a model (recorded in stats.json)",
                    spec["experiment"], ", ".join(roles))
    write_json(stats, summary)
    return summary
