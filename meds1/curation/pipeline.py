"""The curate stage: load -> select -> rewrite traces -> chat-format -> split, keeping every row's status.

    curate(spec, dataset="curated/x/dataset", rows="curated/x/rows.parquet", stats=".../stats.json", cost=".../llm_cost.json")
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
from meds1.curation.settings import CurationSettings
from meds1.data.train import load_train_dataset
from meds1.io import atomic_path, write_json
from meds1.plugins import SELECTION_METHODS

log = logging.getLogger(__name__)
EMPTY_LEDGER = {"calls": 0, "cached": 0, "retries": 0, "failures": 0, "input_tokens": 0, "output_tokens": 0,
                "cost_usd": 0.0}


class Context:
    """What a selection method or trace transform may use; the LLM client is built only when first needed."""

    def __init__(self, spec: dict):
        self.spec, self.seed = spec, spec["seed"]
        self.cache_dir = spec.get("cache_dir", "cache")

    @cached_property
    def client(self):
        from meds1.llm.client import build_client

        return build_client(self.spec, self.spec["experiment"])

    @property
    def client_used(self) -> bool:
        return "client" in self.__dict__

    @cached_property
    def probes(self) -> list[dict]:
        """Probe questions ({id, source, question, ...}) for methods that need them (spec ``probe_dataset``)."""
        from meds1.data.eval_items import load_eval_items

        return load_eval_items(self.spec["probe_dataset"], base_dir=".")


def initial_sample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """config.json curation.initial_sample: a seeded subset taken before any method (bounds the cost of LLM methods)."""
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
        records[split[i]].append({"id": df["id"].iloc[i], **ex, "Question": question, "Complex_CoT": cot, "Response": resp})
    # an empty split cannot be reloaded by datasets 5 (zero shards): leave it out; training then selects "last"
    return DatasetDict({k: Dataset.from_list(v) for k, v in records.items() if v})


def row_table(df, sel: Selection, order, split, columns) -> pd.DataFrame:
    table = pd.DataFrame({"id": df["id"], "Complex_CoT_original": df["Complex_CoT"], "Response_original": df["Response"]})
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


def stats_of(table: pd.DataFrame, spec: dict, ledger: dict, seconds: float) -> dict:
    removed = table[table["status"] == "removed"]
    out = {"experiment": spec["experiment"], "curation": spec["curation"], "rows_in": len(table),
           "rows_kept": int((table["status"] == "kept").sum()), "train": int((table["split"] == "train").sum()),
           "validation": int((table["split"] == "validation").sum()),
           "removed_by_reason": dict(Counter(f"{s}: {r}" for s, r in zip(removed["stage"], removed["reason"]))),
           "llm": {k: ledger.get(k, 0) for k in ("calls", "cached", "cost_usd")}, "seconds": round(seconds, 2)}
    if "specialty" in table.columns:
        out["specialties"] = dict(Counter(table.loc[table["status"] == "kept", "specialty"].dropna()))
    return out


def select_and_rewrite(spec: dict, ctx: Context):
    """Everything but the writing: the loaded rows, the selection, and the rewritten question/trace/response."""
    cur = spec["curation"]
    df = load_train_dataset(spec["dataset"])
    df = initial_sample(df, (spec.get("curation_settings") or {}).get("initial_sample"), spec["seed"])
    method = SELECTION_METHODS.get(cur["method"], experiment=spec["experiment"], key="curation.method")
    sel = method.impl(df, CurationSettings.from_spec(cur), ctx)
    log.info("%s: %d of %d rows selected by %s", spec["experiment"], len(sel.order), len(df), cur["method"])
    return df, sel, *rewrite_traces(df, sel.order, cur, ctx)


def curate(spec: dict, *, dataset: str, rows: str, stats: str, cost: str) -> dict:
    t0, ctx = time.time(), Context(spec)
    df, sel, questions, traces, responses, columns = select_and_rewrite(spec, ctx)
    split = split_rows(sel.order, spec["validation_fraction"], spec["seed"])
    ledger = ctx.client.ledger if ctx.client_used else dict(EMPTY_LEDGER)
    table = row_table(df, sel, sel.order, split, columns)
    with atomic_path(dataset) as tmp:
        build_dataset(df, sel.order, questions, traces, responses, split, spec).save_to_disk(str(tmp))
    with atomic_path(rows) as tmp:
        table.to_parquet(tmp, index=False)
    write_json(cost, ledger)
    summary = stats_of(table, spec, ledger, time.time() - t0)
    write_json(stats, summary)
    return summary
