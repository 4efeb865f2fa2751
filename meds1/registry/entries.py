"""Cross-file checks on resolved experiments, and the config.json entries (model, dataset, LLM, embedder) that
the stages put into their specs."""
from __future__ import annotations

import copy
import os
import re
import sys
from pathlib import Path

from meds1.curation.settings import DEFAULT_EMBEDDER
from meds1.errors import MedS1Error
from meds1.llm.settings import ENTRY_KEYS  # what the LLM client takes from a config.json model entry
from meds1.plugins import TRACE_FORMATS
from meds1.traces.formats import format_name
from meds1.tokenizers import read_chat_template



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
    if cfg.get("format") is not None:
        TRACE_FORMATS.get(cfg["format"], **where, key="config.format")
    if exp.curation is None:
        if cfg.get("training_params"):
            raise MedS1Error("training_params given but curation is null: nothing to train on", **where,
                             key="config.training_params")
    elif not exp.datasets.get("curate"):
        raise MedS1Error("curation needs a training dataset", **where, key="config.datasets.curate")


def model_entry(config: dict, key: str) -> dict:
    """A model's config.json entry plus ``key`` and ``path``: local_path when it exists (or a rule builds it), else hf_path."""
    entry = {"system_prompt": None, "chat_template": None, "max_length": None, "format": None,
             "trust_remote_code": False, "local_path": None, **copy.deepcopy(config["models"][key]), "key": key}
    entry.pop("description", None)  # prose: editing it must not rerun anything
    if isinstance(entry["chat_template"], dict):  # the seed's sketch of a layout: documentation, not a template
        entry["chat_template"] = read_chat_template(entry["chat_template"], key=f"models.{key}.chat_template")
    local = entry.get("local_path")
    use_local = local and (Path(local).exists() or entry.get("prepare") or not entry.get("hf_path"))
    entry["path"] = local if use_local else entry.get("hf_path")
    return entry


_NOTICES: set[str] = set()


def _notice_once(text: str) -> None:
    if text not in _NOTICES:
        _NOTICES.add(text)
        print(text, file=sys.stderr)


def trace_format(exp, model: dict) -> str:
    """The experiment's trace format (one rule for every stage: ``meds1.traces.formats.format_name``)."""
    return format_name(exp.curation, model, exp.config.get("format"))


def llm_entry(reg, role: str = "curation") -> dict:
    """The LLM block for a curation role: workflow ``curation_llm`` (every role), else config.json
    ``model_choices.<role>``, else ``model_choices.curation``. The seed keeps ``rpm`` inside ``pricing``: read there too."""
    choices = reg.config.get("model_choices", {})
    key = reg.wf.get("curation_llm") or choices.get(role) or choices.get("curation")
    if key is None:
        return {"provider": "offline", "model": "offline-rules"}
    if key not in reg.config["models"]:
        raise MedS1Error(f"unknown model '{key}'", file="workflow_config.yaml", key="curation_llm",
                         choices=reg.config["models"], value=key)
    entry = reg.config["models"][key]
    out = {k: copy.deepcopy(entry[k]) for k in ENTRY_KEYS if entry.get(k) is not None}
    if isinstance(out.get("pricing"), dict) and "rpm" in out["pricing"]:
        out.setdefault("rpm", out["pricing"]["rpm"])
        out["pricing"] = {k: v for k, v in out["pricing"].items() if k != "rpm"}
    if entry.get("provider", "gemini") == "gemini" and str(out.get("base_url", "")).rstrip("/").endswith("/openai"):
        _notice_once(f"note: config.json models.{key}.base_url is OpenAI-compatible (the seed's, unused there too): "
                     "the Gemini client uses its own endpoint")
        out.pop("base_url")
    return out | {"provider": entry.get("provider", "gemini"), "model": entry.get("hf_path", key),
                  "max_cost_usd": reg.wf.get("max_cost_usd")}


def embedder_entry(reg) -> dict:
    key = reg.config.get("model_choices", {}).get("embedder")
    if not key:
        return dict(DEFAULT_EMBEDDER)
    entry = {k: v for k, v in reg.config["embedders"][key].items() if k != "description"}
    return {**entry, "key": key}


def expand_vars(value: str, where: str) -> str:
    """``${VAR}`` expansion for dataset paths; an unset variable is an error naming it and the dataset."""
    def sub(m):
        if not os.environ.get(m.group(1)):
            raise MedS1Error(f"environment variable ${{{m.group(1)}}} is not set (or empty)", file="config.json",
                             key=where)
        return os.environ[m.group(1)]
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, value)


def dataset_entry(reg, group: str, name: str | None) -> dict | None:
    if name is None:
        return None
    entry = {**copy.deepcopy(reg.config[group][name]), "key": name}
    entry.pop("description", None)
    if "file_path" in entry:
        entry["file_path"] = expand_vars(entry["file_path"], f"{group}.{name}.file_path")
    return entry


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
