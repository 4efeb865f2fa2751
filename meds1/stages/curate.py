"""The curate stage: select rows and rewrite their traces -> curated/{exp}/ (trained experiments only)."""
from __future__ import annotations

from meds1.registry.entries import dataset_entry, embedder_entry, llm_entry, model_entry, trace_format
from meds1.stages import Stage, define


def build_spec(reg, exp) -> dict:
    model = model_entry(reg.config, exp.config["model_key"])
    cur = exp.curation_settings
    needs = cur.needs()
    spec = {"experiment": exp.name, "seed": reg.wf["seed"], "model": model,
            "curation": {**cur.to_spec(), "format": trace_format(exp, model), "needs": sorted(needs)},
            "dataset": dataset_entry(reg, "train_datasets", exp.datasets.get("curate")),
            "cache_dir": reg.wf["cache_dir"], "validation_fraction": reg.wf["validation_fraction"],
            "curation_settings": reg.config.get("curation", {}), "plugins": reg.wf["plugins"]}
    if "llm" in needs:  # an experiment that calls no LLM is not rerun when the LLM changes
        spec["llm"] = llm_entry(reg)
    if "embedder" in needs:
        spec["embedder"] = embedder_entry(reg)
    if "probes" in needs:
        spec["probe_dataset"] = dataset_entry(reg, "eval_datasets", exp.datasets.get("eval"))
    return spec


def loads_model(reg, exp) -> bool:
    return "base_model" in exp.curation_settings.needs()


CURATE = define(Stage("curate", "curated", applies=lambda exp: exp.owns_training, build_spec=build_spec,
                      loads_model=loads_model, doc="curated/{exp}/: dataset/, rows.parquet, stats.json"))
