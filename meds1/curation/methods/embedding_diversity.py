"""``embedding-diversity``: outliers (farthest from their k-means centroid) first, then an even spread over clusters,
any shortfall at random. Embeddings come from ``meds1.curation.embeddings`` (cached per content).
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Literal

from meds1.curation.selection import Selection
from meds1.errors import MedS1Error
from meds1.options import opt
from meds1.plugins import SELECTION_METHODS

log = logging.getLogger(__name__)

KMEANS_N_INIT = 3          # k-means restarts: enough for a stable partition, cheap on 25k rows


@dataclass(frozen=True)
class DiversityOptions:
    column: str = opt("Complex_CoT", "the column whose text is embedded", minLength=1)
    cluster_percentage: float = opt(10, "k-means clusters k = this % of n_samples", exclusiveMinimum=0, maximum=100)
    outlier_percentage: float = opt(5, "this % of n_samples is taken from the farthest-from-centroid rows",
                                    minimum=0, maximum=100)
    intra_group_ranking: Literal["random", "cot-length"] = opt("random", "pick order inside a cluster")


def embed_column(df, column: str, ctx):
    if column not in df.columns:
        raise MedS1Error(f"no column '{column}' in the training data", experiment=ctx.spec.get("experiment"),
                         key="curation.column", choices=list(df.columns), value=column)
    from meds1.curation.embeddings import cached_embeddings

    return cached_embeddings(df[column].fillna("").astype(str).tolist(),
                             dataset_key=(ctx.spec.get("dataset") or {}).get("key", "dataset"), column=column,
                             embedder=ctx.spec.get("embedder"), cache_dir=ctx.cache_dir)


def trace_words(df) -> list[int]:
    return [len(str(t).split()) for t in df["Complex_CoT"]]


def cluster_rows(vectors, k: int, seed: int):
    """k-means labels and each row's distance to its own centroid."""
    import numpy as np
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=KMEANS_N_INIT, random_state=seed).fit(vectors)
    return km.labels_, np.linalg.norm(vectors - km.cluster_centers_[km.labels_], axis=1)


def cluster_queues(labels, outliers: set[int], ranking: str, lengths: list[int], seed: int) -> list[list[int]]:
    """Per cluster, its non-outlier rows in pick order: seeded shuffle, or longest trace first (ties: row order)."""
    import numpy as np

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


@SELECTION_METHODS.register("embedding-diversity", options=DiversityOptions, needs={"n_samples", "embedder"})
def select_embedding_diversity(df, cur, ctx) -> Selection:
    """Outliers (farthest from their k-means centroid) first, then an even spread over clusters, shortfall at random."""
    opts = cur.options
    n = min(cur.n_samples or len(df), len(df))
    k = min(len(df), max(1, round(float(opts.cluster_percentage) / 100 * n)))
    n_out = min(n, round(float(opts.outlier_percentage) / 100 * n))
    labels, dist = cluster_rows(embed_column(df, opts.column, ctx), k, ctx.seed)
    outliers = sorted(range(len(df)), key=lambda i: -dist[i])[:n_out]  # stable: equal distances keep row order
    queues = cluster_queues(labels, set(outliers), opts.intra_group_ranking, trace_words(df), ctx.seed)
    order = outliers + spread_over_clusters(queues, n - n_out, ctx.seed)
    if len(order) < n:  # clusters smaller than their quota
        rest = sorted(set(range(len(df))) - set(order))
        order += random.Random(ctx.seed).sample(rest, n - len(order))
    log.info("embedding-diversity: k=%d clusters, %d outliers, %d rows", k, n_out, len(order))
    flagged = set(outliers)
    return Selection(order=order, columns={"cluster": labels.tolist(), "cluster_distance": dist.astype(float).tolist(),
                                           "outlier": [i in flagged for i in range(len(df))]})
