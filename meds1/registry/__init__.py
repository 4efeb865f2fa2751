"""The experiment registry: load + validate results.json, config.json and workflow_config.yaml, resolve every
experiment, and hand each Snakemake job its experiment's resolved slice (``spec``).

    reg = load_registry(config)            # ``config`` = the parsed workflow_config.yaml (Snakemake's ``config``)
    reg.selected()                         # experiments built by ``rule all``
    reg.spec("demo-random", "train")       # what the train script of that experiment receives
"""
from __future__ import annotations

import copy
import dataclasses
import fnmatch
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from meds1 import plan
from meds1.curation.settings import CurationSettings
from meds1.errors import MedS1Error
from meds1.evaluate.settings import EvalSettings
from meds1.options import build
from meds1.plots.outputs import FIGURE_NAMES
from meds1.plugins import STAGES, TRACE_FORMATS, load_extra
from meds1.registry import entries
from meds1.registry.resolve import Resolver
from meds1.registry.validate import check, check_experiment_raw, load_json
from meds1.registry.workflow import WorkflowSettings
from meds1.sft.config import TrainSettings

WORKFLOW_FILE = "workflow_config.yaml (or --config)"  # how errors name the run settings


@dataclass
class Experiment:
    name: str
    description: str
    config: dict
    curation_settings: CurationSettings | None = None   # built and validated at load time
    train_settings: TrainSettings | None = None
    eval_settings: EvalSettings | None = None
    trained_as: str | None = None  # an earlier experiment with the same curation and training: its checkpoint is ours
    plans: dict = field(default_factory=dict)  # stage -> meds1.plan.JobPlan: what its jobs need (resources)

    @property
    def owns_training(self) -> bool:
        """Trained, and not sharing an identical earlier experiment's curated data and checkpoint."""
        return self.trained and self.trained_as is None

    @property
    def checkpoint_owner(self) -> str:
        return self.trained_as or self.name

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
    def __init__(self, workflow: dict, base_dir: Path, *, refuse_unfit: bool = True):
        self.base_dir = base_dir
        self.refuse_unfit = refuse_unfit  # a train job that cannot fit its GPUs stops the parse (the plan lists it)
        shown = WORKFLOW_FILE
        self.wf = dataclasses.asdict(build(WorkflowSettings, copy.deepcopy(workflow), file=shown, from_text=True))
        self.wf["eval"] = dataclasses.asdict(build(EvalSettings, self.wf["eval"], file=shown, prefix="eval",
                                                   from_text=True))
        load_extra(self.wf["plugins"], base_dir)
        self.results_file = self.wf["registry"]
        self.config_file = self.wf["model_config"]
        self.config = self._load_config()
        self.experiments = self._load_experiments()
        self._check_workflow_names()

    # ---- loading ---------------------------------------------------------------------------------------------
    def _load_config(self) -> dict:
        cfg = load_json(self.base_dir / self.config_file, self.config_file)
        check(cfg, "config", file=self.config_file)
        for key, model in cfg["models"].items():  # format names come from the plug-ins, not a schema enum
            if model.get("format") is not None:
                TRACE_FORMATS.get(model["format"], file=self.config_file, key=f"models.{key}.format")
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
        for exp in exps.values():
            self._settle(exp)
        self.experiments = exps
        self._share_identical_training()
        return exps

    def _share_identical_training(self) -> None:
        """Experiments whose curate and train specs differ only in their name (e.g. test-time-scaling arms of one
        model) share the first one's curated data and checkpoint instead of training the same model again."""
        first: dict[str, str] = {}
        for name, exp in self.experiments.items():
            if not exp.trained:
                continue
            model = self.config["models"][exp.config["model_key"]]
            what = [exp.config["model_key"], exp.datasets, exp.curation_settings.to_spec(),
                    exp.train_settings.to_spec(), entries.trace_format(exp, model)]
            key = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()
            owner = first.setdefault(key, name)
            exp.trained_as = owner if owner != name else None
    def _settle(self, exp: Experiment) -> None:
        """Validate one resolved experiment and build its stage settings (one-line errors naming the key)."""
        where = {"file": self.results_file, "experiment": exp.name}
        check(exp.config, "results", ref="config", prefix="config", **where)
        if isinstance(exp.config.get("eval_sample"), float):  # 5.0 means 5 (JSON Schema calls it an integer)
            exp.config["eval_sample"] = int(exp.config["eval_sample"])
        entries.check_semantics(exp, self.config, self.results_file)
        model = self.config["models"][exp.config["model_key"]]
        if exp.trained:
            exp.curation_settings = CurationSettings.from_block(exp.curation, prefix="config.curation", **where)
            exp.train_settings = TrainSettings.from_block(exp.config.get("training_params"),
                                                          defaults=self.wf["training_defaults"], model=model,
                                                          seed=self.wf["seed"], prefix="config.training_params",
                                                          **where)
        if exp.datasets.get("eval"):
            own = exp.config.get("eval") or {}
            exp.eval_settings = build(EvalSettings, {**self.wf["eval"], **own}, prefix="config.eval", **where)
        plan.settle(self, exp)  # GPUs, memory, runtime per job; a train job that cannot fit stops the parse here

    def _check_workflow_names(self) -> None:
        base = self.wf.get("baseline")
        if base is not None and base not in self.experiments:
            raise MedS1Error(f"unknown experiment '{base}'", file=WORKFLOW_FILE, key="baseline",
                             choices=self.experiments, value=base)
        selected = self.selected()
        if base is not None and base not in selected:
            raise MedS1Error(f"baseline '{base}' is not among the selected experiments (key 'experiments'): the "
                             "plot would fail after every eval", file=WORKFLOW_FILE, key="baseline")
        for name in selected:
            self.check_runnable(name)
        llm = self.wf.get("curation_llm")
        if llm is not None and llm not in self.config["models"]:
            raise MedS1Error(f"unknown model '{llm}' (not a model in {self.config_file})", file=WORKFLOW_FILE,
                             key="curation_llm", choices=self.config["models"], value=llm)
        check_writable(self.wf["cache_dir"], self.base_dir)
        for fig, names in self.wf["figures"].items():
            if fig not in FIGURE_NAMES[1:]:  # comparison is always drawn from every selected experiment
                raise MedS1Error(f"unknown figure '{fig}' (figures with chosen arms: {', '.join(FIGURE_NAMES[1:])})",
                                 file=WORKFLOW_FILE, key=f"figures.{fig}", choices=FIGURE_NAMES[1:], value=fig)
            for n in names:
                if n not in self.experiments:
                    raise MedS1Error(f"unknown experiment '{n}'", file=WORKFLOW_FILE, key=f"figures.{fig}",
                                     choices=self.experiments, value=n)
        self.selected()

    # ---- queries used by the rules ---------------------------------------------------------------------------
    def selected(self) -> list[str]:
        """Experiment names picked by ``experiments`` (names or glob patterns), in registry order."""
        return self.match(self.wf["experiments"], file=WORKFLOW_FILE, key="experiments")

    def match(self, patterns: list[str], *, file=None, key=None) -> list[str]:
        """Names matching any of ``patterns`` (names or globs), in pattern order; one that matches nothing is an
        error with a "did you mean" (the workflow's selection, and the command-line tools' arguments)."""
        out: list[str] = []
        for pattern in patterns:
            hits = [n for n in self.experiments if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise MedS1Error(f"'{pattern}' matches no experiment in {self.results_file}", file=file, key=key,
                                 choices=self.experiments, value=pattern)
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
        """Targets on the command line that name an experiment must name a known one that has that stage."""
        folders = {st.impl.folder: st.impl for st in STAGES}
        for arg in args:
            m = re.match(r"^(?:\./)?([^/]+)/([^/]+)(?:/|$)", arg)
            if m and m.group(1) in folders:
                stage, exp = folders[m.group(1)], self.experiment(m.group(2))
                self.check_runnable(exp.name)
                if exp.trained_as and stage.folder != "eval":
                    raise MedS1Error(f"has the same curation and training as '{exp.trained_as}' and shares its "
                                     f"outputs: use {stage.folder}/{exp.trained_as}/", file=self.results_file,
                                     experiment=exp.name)
                if not stage.applies(exp):
                    raise MedS1Error(f"has no {stage.name} stage, so there is no target '{arg}' "
                                     f"({'curation is null' if stage.folder != 'eval' else 'no eval dataset'})",
                                     file=self.results_file, experiment=exp.name)

    def stage_experiments(self, stage: str, names=None) -> list[str]:
        """The experiments (of ``names``, default all) that have ``stage``."""
        applies = STAGES.get(stage).impl.applies
        return [n for n in (names or self.experiments) if applies(self.experiments[n])]

    def check_runnable(self, name: str) -> None:
        """What a job of ``name`` will need and can be checked now: dataset paths (``${VAR}`` set), a model path."""
        exp = self.experiment(name)
        for role in ("curate", "eval"):
            self.dataset_files(name, role)
        model = entries.model_entry(self.config, exp.config["model_key"])
        if not model.get("path"):
            raise MedS1Error("model has neither hf_path nor local_path", file=self.config_file,
                             key=f"models.{exp.config['model_key']}")

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
        loads = STAGES.get(stage).impl.loads_model(self, exp)  # True: the experiment's model; a key: that model
        key = loads if isinstance(loads, str) else exp.config["model_key"]
        path = self.config["models"][key].get("local_path")
        return [path] if loads and path in self.prepared_models() else []

    def dataset_files(self, name: str, role: str) -> list[str]:
        """The local file behind an experiment's ``curate``/``eval`` dataset, as a rule input (hub datasets: none)."""
        group = "train_datasets" if role == "curate" else "eval_datasets"
        entry = entries.dataset_entry(self, group, self.experiment(name).datasets.get(role))
        return [entry["file_path"]] if entry and "file_path" in entry else []

    def resources(self, name: str, stage: str) -> dict:
        """What ``stage``'s job of experiment ``name`` asks for: gpu, mem_mb, runtime (minutes), from the plan."""
        return plan.job_resources(self.experiment(name).plans, stage)

    def spec(self, name: str, stage: str) -> dict:
        return STAGES.get(stage).impl.build_spec(self, self.experiment(name))

    def spec_json(self, name: str, stage: str) -> str:
        return json.dumps(self.spec(name, stage), sort_keys=True)

    def plot_spec(self) -> dict:
        return entries.plot_spec(self)


def check_writable(folder: str, base_dir: Path) -> None:
    """The cache must be writable before any paid LLM call: its answers are what a rerun gets for free."""
    path = (base_dir / folder).resolve()
    probe = next((p for p in [path, *path.parents] if p.exists()), None)
    if probe is None or not os.access(probe, os.W_OK) or not probe.is_dir():
        raise MedS1Error(f"cache folder '{folder}' cannot be created or written ({probe})", file=WORKFLOW_FILE,
                         key="cache_dir")


def load_registry(workflow: dict, base_dir: str | os.PathLike = ".", *, refuse_unfit: bool = True) -> Registry:
    return Registry(workflow or {}, Path(base_dir), refuse_unfit=refuse_unfit)
