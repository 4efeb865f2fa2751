"""embedding-similarity picks training rows near probe questions of the eval set; curated/{exp}/stats.json records
every probe id, and the eval leaves exactly those questions out (metrics.json says which)."""
from __future__ import annotations

import json

from curation_helpers import DEMO_EVAL, DEMO_SFT
from meds1.data.eval_items import load_eval_items
from workflow import make_workdir, snakemake, tiny_config


def test_probe_questions_are_recorded_and_excluded_from_eval(tmp_path, tiny_model_dir):
    cfg = tiny_config(tiny_model_dir, sft_file=DEMO_SFT, eval_file=DEMO_EVAL)
    results = {"experiments": {"sim": {"config": {
        "model_key": "tiny", "curation": {"method": "embedding-similarity", "n_samples": 40, "format": "huatuo"},
        "training_params": {"num_epochs": 1, "batch_size": 4, "max_length": 384},
        "datasets": {"curate": "sft", "eval": "evalset"}}}}}
    wd = make_workdir(tmp_path / "w", results=results, config=cfg, workflow={
        "experiments": ["sim"], "wandb_mode": "disabled",
        "eval": {"max_new_tokens": 4, "bootstrap_resamples": 100}})  # exclusion is the default
    out = snakemake(wd, "eval/sim/metrics.json", timeout=900, env={"MEDS1_ALLOW_CPU": "1"})  # GPU rules on CPU
    assert out.returncode == 0, out.stderr[-3000:]
    everything = {item["id"] for item in load_eval_items({"key": "evalset", "file_path": str(DEMO_EVAL)})}
    probes = json.loads((wd / "curated/sim/stats.json").read_text())["probes"]
    assert probes["dataset"] == "evalset" and len(probes["ids"]) == len(everything) // 2  # the 100, capped at half
    assert set(probes["ids"]) <= everything
    metrics = json.loads((wd / "eval/sim/metrics.json").read_text())
    assert sorted(metrics["excluded"]["ids"]) == sorted(probes["ids"]) and metrics["excluded"]["count"] == 33
    assert metrics["excluded"]["reason"] == "probe questions used by curation"
    assert metrics["overall"]["n"] == len(everything) - 33
    scored = {json.loads(line)["id"] for line in (wd / "eval/sim/generations.jsonl").read_text().splitlines()}
    assert scored == everything - set(probes["ids"])
