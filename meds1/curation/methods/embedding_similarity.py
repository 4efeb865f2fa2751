"""``embedding-similarity``: round-robin over probe questions; each takes its most similar not-yet-selected training
row. The probes come to the method through ``ctx.probes`` (the curate stage loads them); the eval leaves them out.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from meds1.curation.methods.embedding_diversity import embed_column
from meds1.curation.selection import Selection
from meds1.options import opt
from meds1.plugins import SELECTION_METHODS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimilarityOptions:
    column: str = opt("Question", "the training column compared with the probe questions", minLength=1)


def probe_turns(n_probes: int, n: int, seed: int) -> list[int]:
    """Which probe picks next: a seeded shuffle of the probes (at most n of them), repeated round-robin."""
    probes = random.Random(seed).sample(range(n_probes), min(n_probes, n))
    return [probes[t % len(probes)] for t in range(n)]


@SELECTION_METHODS.register("embedding-similarity", options=SimilarityOptions,
                            needs={"n_samples", "embedder", "probes"})
def select_embedding_similarity(df, cur, ctx) -> Selection:
    """Round-robin over probe questions; each takes its most similar not-yet-selected training row."""
    import numpy as np

    from meds1.curation.embeddings import cached_embeddings

    probes = ctx.probes
    probe_vecs = cached_embeddings([p["question"] for p in probes], embedder=ctx.spec.get("embedder"),
                                   dataset_key=str((ctx.spec.get("probe_dataset") or {}).get("key", "probes")),
                                   column="question", cache_dir=ctx.cache_dir)
    rows = embed_column(df, cur.options.column, ctx)
    n = min(cur.n_samples or len(df), len(df))
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
