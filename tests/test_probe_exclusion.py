"""embedding-similarity curation picks training rows near probe questions; the eval leaves every probe out and
says so in metrics.json (the count, the ids, n reduced by exactly that count)."""
from __future__ import annotations

import json

from workflow import OWN_EVAL, make_workdir, snakemake, tiny_config


def test_probe_questions_are_excluded_from_eval_and_counted(tmp_path, tiny_model_dir):
    cfg = tiny_config(tiny_model_dir)  # the project's own demo data: 66 eval questions in 3 sources
    results = {"experiments": {"sim": {"config": {
        "model_key": "tiny", "curation": {"method": "embedding-similarity", "n_samples": 8, "format": "huatuo"},
        "training_params": {"num_epochs": 1, "batch_size": 4, "max_length": 384},
        "datasets": {"curate": "sft", "eval": "evalset"}}}}}
    wd = make_workdir(tmp_path / "w", results=results, config=cfg, workflow={
        "experiments": ["sim"], "wandb_mode": "disabled",
        "eval": {"max_new_tokens": 4, "exclude_probe_questions": True, "bootstrap_resamples": 100}})
    out = snakemake(wd, "eval/sim/metrics.json", timeout=900, env={"MEDS1_ALLOW_CPU": "1"})  # GPU rules on CPU
    assert out.returncode == 0, out.stderr[-3000:]
    probes = json.loads((wd / "curated/sim/stats.json").read_text())["probes"]
    assert probes["dataset"] == "evalset" and probes["ids"]
    ids = {json.loads(line)["id"] for line in (wd / "eval/sim/generations.jsonl").read_text().splitlines()}
    n_eval = sum(len(v) for v in json.loads(OWN_EVAL.read_text()).values())
    assert not set(probes["ids"]) & ids and len(ids) == n_eval - len(probes["ids"])
    metrics = json.loads((wd / "eval/sim/metrics.json").read_text())
    assert metrics["excluded"] == {"count": len(probes["ids"]), "ids": sorted(probes["ids"]),
                                   "reason": "probe questions used by curation"}
    assert metrics["overall"]["n"] == n_eval - metrics["excluded"]["count"]
