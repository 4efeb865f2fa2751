"""embedding-similarity curation picks training rows near eval questions; eval can leave those probes out."""
from __future__ import annotations

import json

import pandas as pd

from workflow import make_workdir, snakemake, tiny_config


def test_probe_questions_are_excluded_from_eval(tmp_path, tiny_model_dir, shared_data):
    cfg = tiny_config(tiny_model_dir, sft_file=shared_data / "huatuogpt-o1_demo_data.json",
                      eval_file=shared_data / "med-s1_eval_data_samples.json")
    results = {"experiments": {"sim": {"config": {
        "model_key": "tiny", "curation": {"method": "embedding-similarity", "n_samples": 8, "format": "huatuo"},
        "training_params": {"num_epochs": 1, "batch_size": 4, "max_length": 384},
        "datasets": {"curate": "sft", "eval": "evalset"}}}}}
    wd = make_workdir(tmp_path / "w", results=results, config=cfg, workflow={
        "experiments": ["sim"], "wandb_mode": "disabled",
        "eval": {"max_new_tokens": 4, "exclude_probe_questions": True, "bootstrap_resamples": 100}})
    out = snakemake(wd, "eval/sim/generations.jsonl", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    probes = set(pd.read_parquet(wd / "curated/sim/rows.parquet")["probe_id"].dropna())
    ids = {json.loads(line)["id"] for line in (wd / "eval/sim/generations.jsonl").read_text().splitlines()}
    assert probes and not probes & ids and len(ids) == 60 - len(probes)
