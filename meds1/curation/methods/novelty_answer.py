"""``novelty-answer``: keep the rows whose reference answer the base model would least have given on its own.

The base model answers every question (``ctx.base_answers``: ``meds1.curation.base_model``, cached); its answer and
the reference ``Response`` are embedded (``meds1.curation.embeddings``, cached); the n rows with the lowest cosine
similarity win.
"""
from __future__ import annotations

import logging

from meds1.curation.selection import Selection
from meds1.plugins import SELECTION_METHODS

log = logging.getLogger(__name__)


def answer_similarity(answers: list[str], references: list[str], ctx) :
    """Row-wise cosine similarity of the base answers and the references (both embedded unit-length)."""
    import numpy as np

    from meds1.curation.embeddings import cached_embeddings

    dataset = (ctx.spec.get("dataset") or {}).get("key", "dataset")
    model = ctx.base_model.get("key") or ctx.base_model.get("path")
    embed = dict(embedder=ctx.spec.get("embedder"), cache_dir=ctx.cache_dir)
    a = cached_embeddings(answers, dataset_key=f"base-answers:{model}", column=dataset, **embed)
    b = cached_embeddings(references, dataset_key=dataset, column="Response", **embed)
    return np.sum(a * b, axis=1)


@SELECTION_METHODS.register("novelty-answer", needs={"n_samples", "base_model", "embedder"})
def select_novelty_answer(df, cur, ctx) -> Selection:
    """The n rows whose reference Response is least similar to the base model's own answer (ties: row order)."""
    answers = ctx.base_answers(df["Question"].tolist())
    sims = answer_similarity(answers, df["Response"].tolist(), ctx)
    n = min(cur.n_samples or len(df), len(df))
    order = sorted(range(len(df)), key=lambda i: sims[i])[:n]  # stable: ties keep row order
    log.info("novelty-answer: kept %d of %d rows", len(order), len(df))
    return Selection(order=order, columns={"base_answer": answers, "answer_similarity": sims.astype(float).tolist()})
