"""Selection by sentence embeddings: cover the data's clusters (``embedding-diversity``) or stay close to the eval
questions (``embedding-similarity``). Embeddings come from ``meds1.curation.embeddings`` (cached per content).
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pandas as pd

from meds1.curation.embeddings import cached_embeddings
from meds1.curation.methods import SELECTION_METHODS, Selection
from meds1.errors import MedS1Error

log = logging.getLogger(__name__)

KMEANS_N_INIT = 3          # k-means restarts: enough for a stable partition, cheap on 25k rows
RANKINGS = ("random", "cot-length")


def embed_column(df: pd.DataFrame, column: str, ctx) -> np.ndarray:
    if column not in df.columns:
        raise MedS1Error(f"no column '{column}' in the training data", experiment=ctx.spec.get("experiment"),
                         key="curation.column", choices=list(df.columns), value=column)
    return cached_embeddings(df[column].fillna("").astype(str).tolist(),
                             dataset_key=(ctx.spec.get("dataset") or {}).get("key", "dataset"), column=column,
                             embedder=ctx.spec.get("embedder"), cache_dir=ctx.cache_dir)


def trace_words(df: pd.DataFrame) -> list[int]:
    return [len(str(t).split()) for t in df["Complex_CoT"]]


# ------------------------------------------------------------------------------------------------ embedding-diversity
def cluster_rows(vectors: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means labels and each row's distance to its own centroid."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=KMEANS_N_INIT, random_state=seed).fit(vectors)
    return km.labels_, np.linalg.norm(vectors - km.cluster_centers_[km.labels_], axis=1)


def cluster_queues(labels, outliers: set[int], ranking: str, lengths: list[int], seed: int) -> list[list[int]]:
    """Per cluster, its non-outlier rows in pick order: seeded shuffle, or longest trace first (ties: row order)."""
    rng = random.Random(seed)
    queues = []
    for c in range(int(labels.max()) + 1):
        members = [i for i in np.flatnonzero(labels == c).tolist() if i not in outliers]
        if ranking == "cot-length":
            members.sort(key=lambda i: -lengths[i])
        else:
            rng.shuffle(members)
        queues.append(members)
    return queues


def spread_over_clusters(queues: list[list[int]], budget: int, seed: int) -> list[int]:
    """Round-robin picks with an even quota per cluster (the remainder to a seeded choice of clusters)."""
    k = len(queues)
    quota = [budget // k] * k
    for c in random.Random(seed).sample(range(k), budget % k):
        quota[c] += 1
    picks = []
    for rank in range(max(quota, default=0)):
        picks += [q[rank] for c, q in enumerate(queues) if rank < quota[c] and rank < len(q)]
    return picks


@SELECTION_METHODS.register("embedding-diversity")
def select_embedding_diversity(df: pd.DataFrame, cur: dict, ctx) -> Selection:
    """Outliers (farthest from their k-means centroid) first, then an even spread over clusters, shortfall at random."""
    ranking = cur.get("intra_group_ranking") or "random"
    if ranking not in RANKINGS:
        raise MedS1Error(f"unknown ranking '{ranking}'", experiment=ctx.spec.get("experiment"),
                         key="curation.intra_group_ranking", choices=RANKINGS, value=ranking)
    n = min(cur.get("n_samples") or len(df), len(df))
    k = min(len(df), max(1, round(float(cur.get("cluster_percentage", 10)) / 100 * n)))
    n_out = min(n, round(float(cur.get("outlier_percentage", 5)) / 100 * n))
    labels, dist = cluster_rows(embed_column(df, cur.get("column") or "Complex_CoT", ctx), k, ctx.seed)
    outliers = sorted(range(len(df)), key=lambda i: -dist[i])[:n_out]  # stable: equal distances keep row order
    queues = cluster_queues(labels, set(outliers), ranking, trace_words(df), ctx.seed)
    order = outliers + spread_over_clusters(queues, n - n_out, ctx.seed)
    if len(order) < n:  # clusters smaller than their quota
        rest = sorted(set(range(len(df))) - set(order))
        order += random.Random(ctx.seed).sample(rest, n - len(order))
    log.info("embedding-diversity: k=%d clusters, %d outliers, %d rows", k, n_out, len(order))
    flagged = set(outliers)
    return Selection(order=order, columns={"cluster": labels.tolist(), "cluster_distance": dist.astype(float).tolist(),
                                           "outlier": [i in flagged for i in range(len(df))]})


# ----------------------------------------------------------------------------------------------- embedding-similarity
def read_probe_file(entry: dict) -> list[dict]:
    """Fallback reader for ``{source: [items]}`` or ``[items]`` JSON; ids as meds1.evaluate.data makes them."""
    path = Path(entry["file_path"])
    if not path.exists():
        raise MedS1Error("probe (eval) dataset file not found", file=path, key="datasets.eval")
    data = json.loads(path.read_text(encoding="utf-8"))
    groups = data.items() if isinstance(data, dict) else [(None, data)]
    items, per_source = [], {}
    for source, rows in groups:
        for row in rows:
            src = str(source or row.get("source") or entry.get("source") or entry.get("key"))
            index = per_source[src] = per_source.get(src, -1) + 1
            items.append({"id": str(row.get("id") or f"{src}-{index}"), "source": src, "question": row["question"]})
    return items


def load_probes(entry: dict | None, ctx) -> list[dict]:
    if not entry:
        raise MedS1Error("embedding-similarity needs probe questions (datasets.eval)",
                         experiment=ctx.spec.get("experiment"), key="config.datasets.eval")
    try:
        from meds1.evaluate.data import load_eval_items
    except ImportError:
        return read_probe_file(entry)
    return load_eval_items(entry, base_dir=".")


def probe_turns(n_probes: int, n: int, seed: int) -> list[int]:
    """Which probe picks next: a seeded shuffle of the probes (at most n of them), repeated round-robin."""
    probes = random.Random(seed).sample(range(n_probes), min(n_probes, n))
    return [probes[t % len(probes)] for t in range(n)]


@SELECTION_METHODS.register("embedding-similarity")
def select_embedding_similarity(df: pd.DataFrame, cur: dict, ctx) -> Selection:
    """Round-robin over eval probe questions; each takes its most similar not-yet-selected training question."""
    probes = load_probes(ctx.spec.get("probe_dataset"), ctx)
    probe_vecs = cached_embeddings([p["question"] for p in probes], embedder=ctx.spec.get("embedder"),
                                   dataset_key=str(ctx.spec["probe_dataset"].get("key", "probes")), column="question",
                                   cache_dir=ctx.cache_dir)
    rows = embed_column(df, "Question", ctx)  # question to question: probes are questions
    n = min(cur.get("n_samples") or len(df), len(df))
    turns = probe_turns(len(probes), n, ctx.seed)
    used = sorted(set(turns))
    sims = dict(zip(used, probe_vecs[used] @ rows.T))
    taken = np.zeros(len(df), dtype=bool)
    order, probe_id, similarity = [], [None] * len(df), [None] * len(df)
    for p in turns:
        row = int(np.where(taken, -np.inf, sims[p]).argmax())  # argmax: ties go to the first row
        taken[row] = True
        order.append(row)
        probe_id[row], similarity[row] = probes[p]["id"], float(sims[p][row])
    log.info("embedding-similarity: %d probes picked %d rows", len(used), len(order))
    return Selection(order=order, columns={"probe_id": probe_id, "probe_similarity": similarity})
