"""The experiment registry: load + validate results.json, config.json and workflow_config.yaml, resolve every
experiment, and hand each Snakemake job its experiment's resolved slice (``spec``).

    reg = load_registry(config)            # ``config`` = the parsed workflow_config.yaml (Snakemake's ``config``)
    reg.selected()                         # experiments built by ``rule all``
    reg.spec("demo-random", "train")       # what the train script of that experiment receives
"""
from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from meds1.errors import MedS1Error
from meds1.registry.resolve import Resolver
from meds1.registry.validate import check, check_experiment_raw, check_experiment_resolved, load_json
from meds1.registry import specs

WORKFLOW_DEFAULTS: dict[str, Any] = {
    "registry": "results.json", "model_config": "config.json", "experiments": ["*"], "baseline": None,
    "cache_dir": "cache", "seed": 42, "validation_fraction": 0.1, "curation_llm": None, "max_cost_usd": None,
    "wandb_mode": "offline", "wandb_project": "med-s1", "training_defaults": {}, "figures": {},
    "eval": {"backend": "auto", "max_new_tokens": 1024, "temperature": 0.0, "repeat_temperature": 0.6, "top_p": 0.95,
             "batch_size": 16, "limit": None, "bootstrap_resamples": 1000, "similarity_fallback": False,
             "exclude_probe_questions": False},
}
NEEDS_BASE_MODEL = {"novelty-answer", "s1"}  # curation methods that run the base model
WORKFLOW_FILE = "workflow_config.yaml"


@dataclass
class Experiment:
    name: str
    description: str
    config: dict

    @property
    def curation(self) -> dict | None:
        return self.config.get("curation")

    @property
    def trained(self) -> bool:
        return self.curation is not None

    @property
    def datasets(self) -> dict:
        return self.config.get("datasets") or {}

    @cached_property
    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:16]


class Registry:
    def __init__(self, workflow: dict, base_dir: Path):
        self.base_dir = base_dir
        check(workflow, "workflow_config", file=WORKFLOW_FILE)
        self.wf = {**copy.deepcopy(WORKFLOW_DEFAULTS), **copy.deepcopy(workflow)}
        self.wf["eval"] = {**WORKFLOW_DEFAULTS["eval"], **workflow.get("eval", {})}
        self.results_file = self.wf["registry"]
        self.config_file = self.wf["model_config"]
        self.config = self._load_config()
        self.experiments = self._load_experiments()
        self._check_workflow_names()

    # ---- loading ---------------------------------------------------------------------------------------------
    def _load_config(self) -> dict:
        cfg = load_json(self.base_dir / self.config_file, self.config_file)
        check(cfg, "config", file=self.config_file)
        for role, key in cfg.get("model_choices", {}).items():
            pool = cfg.get("embedders", {}) if role == "embedder" else cfg["models"]
            if key not in pool:
                raise MedS1Error(f"unknown model '{key}'", file=self.config_file, key=f"model_choices.{role}",
                                 choices=pool, value=key)
        return cfg

    def _load_experiments(self) -> dict[str, Experiment]:
        raw = load_json(self.base_dir / self.results_file, self.results_file)
        check(raw, "results", file=self.results_file)
        if "results" in raw:
            print(f"note: {self.results_file}: the legacy 'results' section is ignored (results live in eval/*/metrics.json)",
                  file=sys.stderr)
        entries = raw["experiments"]
        legacy = [n for n, e in entries.items() if isinstance(e, dict) and "results" in e]
        if legacy:
            print(f"note: {self.results_file}: legacy 'results' blocks of {len(legacy)} experiment(s) are ignored",
                  file=sys.stderr)
        for name, entry in entries.items():
            check_experiment_raw(name, entry, self.results_file)
        resolved = Resolver(entries, self.results_file).resolve_all()
        exps = {n: Experiment(n, entries[n].get("description", ""), resolved[n]) for n in entries}
        for name, exp in exps.items():
            if _borrows(entries[name]["config"]):
                check_experiment_resolved(name, exp.config, self.results_file)
            specs.check_semantics(exp, self.config, self.results_file)
        return exps

    def _check_workflow_names(self) -> None:
        base = self.wf.get("baseline")
        if base is not None and base not in self.experiments:
            raise MedS1Error(f"unknown experiment '{base}'", file=WORKFLOW_FILE, key="baseline",
                             choices=self.experiments, value=base)
        for fig, names in self.wf["figures"].items():
            for n in names:
                if n not in self.experiments:
                    raise MedS1Error(f"unknown experiment '{n}'", file=WORKFLOW_FILE, key=f"figures.{fig}",
                                     choices=self.experiments, value=n)
        self.selected()

    # ---- queries used by the rules ---------------------------------------------------------------------------
    def selected(self) -> list[str]:
        """Experiment names picked by ``experiments`` (names or glob patterns), in registry order."""
        out: list[str] = []
        for pattern in self.wf["experiments"]:
            hits = [n for n in self.experiments if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise MedS1Error(f"'{pattern}' matches no experiment in {self.results_file}", file=WORKFLOW_FILE,
                                 key="experiments", choices=self.experiments, value=pattern)
            out += [h for h in hits if h not in out]
        return out

    def trained(self) -> list[str]:
        return [n for n, e in self.experiments.items() if e.trained]

    def evaluated(self, names=None) -> list[str]:
        return [n for n in (names or self.experiments) if self.experiments[n].datasets.get("eval")]

    def wildcard_regex(self) -> str:
        """Path-safe names only (no '/', no '..'); a 2,000-way alternation of names would cost ~7 s per dry-run."""
        return r"[A-Za-z0-9][A-Za-z0-9_.:+=-]*"

    def check_targets(self, args: list[str]) -> None:
        """Targets on the command line that name an experiment must name a known one (checked before the DAG)."""
        for arg in args:
            m = re.match(r"^(?:\./)?(?:curated|ckpts|eval)/([^/]+)(?:/|$)", arg)
            if m:
                self.experiment(m.group(1))

    def experiment(self, name: str) -> Experiment:
        """The experiment behind a target's ``{exp}``; an unknown name is a one-line error with a suggestion."""
        if name not in self.experiments:
            raise MedS1Error("no such experiment", file=self.results_file, experiment=name, choices=self.experiments,
                             value=name)
        return self.experiments[name]

    def prepared_models(self) -> dict[str, str]:
        """local_path -> model key, for models that a rule materialises (``prepare`` recipe)."""
        return {m["local_path"]: k for k, m in self.config["models"].items() if m.get("prepare") and m.get("local_path")}

    def model_inputs(self, name: str, stage: str) -> list[str]:
        """Model folders that a rule must build before ``stage`` of experiment ``name`` can run."""
        exp = self.experiment(name)
        needs = stage == "train" or (stage == "eval" and not exp.trained) or (
            stage == "curate" and exp.curation and exp.curation["method"] in NEEDS_BASE_MODEL)
        path = self.config["models"][exp.config["model_key"]].get("local_path")
        return [path] if needs and path in self.prepared_models() else []

    def dataset_files(self, name: str, role: str) -> list[str]:
        """The local file behind an experiment's ``curate``/``eval`` dataset, as a rule input (hub datasets: none)."""
        group = "train_datasets" if role == "curate" else "eval_datasets"
        entry = specs._dataset(self, group, self.experiment(name).datasets.get(role))
        return [entry["file_path"]] if entry and "file_path" in entry else []

    def spec(self, name: str, stage: str) -> dict:
        return specs.build(self, self.experiment(name), stage)

    def spec_json(self, name: str, stage: str) -> str:
        return json.dumps(self.spec(name, stage), sort_keys=True)

    def plot_spec(self) -> dict:
        return specs.plot_spec(self)


def _borrows(config: dict) -> bool:
    return "extends" in config or any(isinstance(v, str) and v.lower().startswith("same as") for v in config.values())


def load_registry(workflow: dict, base_dir: str | os.PathLike = ".") -> Registry:
    return Registry(workflow or {}, Path(base_dir))
