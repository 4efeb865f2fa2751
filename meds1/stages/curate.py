"""The curate stage: select rows and rewrite their traces -> curated/{exp}/ (trained experiments only)."""
from __future__ import annotations

from meds1.curation.settings import PROBE_SAMPLE
from meds1.data.normalise import check_name
from meds1.errors import MedS1Error
from meds1.plugins import SELECTION_METHODS
from meds1.registry.entries import dataset_entry, embedder_entry, llm_entry, model_entry, trace_format
from meds1.stages import Stage, define


def base_model_key(reg, exp) -> str:
    """config.json ``model_choices.base`` (the seed's role: difficulty probing and token counts), else the
    experiment's own model."""
    return reg.config.get("model_choices", {}).get("base") or exp.config["model_key"]


def probe_entry(reg, exp) -> dict:
    """The probe questions: every item of ``curation.probe_dataset``, or a seeded sample of ``datasets.eval``."""
    named = exp.curation_settings.probe_dataset
    where = {"file": reg.results_file, "experiment": exp.name}
    if named is not None:
        if named not in reg.config["eval_datasets"]:
            raise MedS1Error(f"unknown dataset '{named}' (not in config.json eval_datasets)", **where,
                             key="config.curation.probe_dataset", choices=reg.config["eval_datasets"], value=named)
        return {**dataset_entry(reg, "eval_datasets", named), "sample": None}
    if not exp.datasets.get("eval"):
        raise MedS1Error(f"method '{exp.curation_settings.method}' reads probe questions: set "
                         "curation.probe_dataset or datasets.eval", **where, key="config.curation.probe_dataset")
    return {**dataset_entry(reg, "eval_datasets", exp.datasets["eval"]), "sample": PROBE_SAMPLE}


def build_spec(reg, exp) -> dict:
    model = model_entry(reg.config, exp.config["model_key"])
    cur = exp.curation_settings
    needs = cur.needs()
    data = dataset_entry(reg, "train_datasets", exp.datasets.get("curate"))
    check_name(data.get("normalise"), file="config.json", key=f"train_datasets.{data['key']}.normalise")
    spec = {"experiment": exp.name, "seed": reg.wf["seed"], "model": model,
            "curation": {**cur.to_spec(), "format": trace_format(exp, model), "needs": sorted(needs)},
            "dataset": data, "cache_dir": reg.wf["cache_dir"], "validation_fraction": reg.wf["validation_fraction"],
            "curation_settings": reg.config.get("curation", {}), "plugins": reg.wf["plugins"]}
    if "base_model" in needs or data.get("normalise"):  # the base tokenizer measures traces and dataset rows
        spec["base_model"] = model_entry(reg.config, base_model_key(reg, exp))
    if "llm" in needs:  # an experiment that calls no LLM is not rerun when the LLM changes
        spec["llm"] = llm_entry(reg)
        roles = SELECTION_METHODS.get(cur.method).extra.get("llm_roles", ())
        spec["llm_roles"] = {role: llm_entry(reg, role) for role in roles}
    if "embedder" in needs:
        spec["embedder"] = embedder_entry(reg)
    if "probes" in needs:
        spec["probe_dataset"] = probe_entry(reg, exp)
    return spec


def loads_model(reg, exp) -> str | bool:
    """The key of the model the curate job loads (the base model), or False."""
    return base_model_key(reg, exp) if "base_model" in exp.curation_settings.needs() else False


CURATE = define(Stage("curate", "curated", applies=lambda exp: exp.owns_training, build_spec=build_spec,
                      loads_model=loads_model, doc="curated/{exp}/: dataset/, rows.parquet, stats.json"))
