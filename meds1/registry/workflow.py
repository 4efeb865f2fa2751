"""workflow_config.yaml: which experiments run and the run-wide science settings, typed, with defaults in one place.

Threads, partitions, GPUs and walltime are not here: they belong to profiles (and the plan, ``python -m meds1.plan``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from meds1.options import opt


@dataclass(frozen=True)
class WorkflowSettings:
    registry: str = opt("results.json", "the experiment registry (read-only to the workflow)")
    model_config: str = opt("config.json", "models, datasets, LLM providers")
    experiments: list[str] = opt(["*"], "names or glob patterns built by `rule all`", minItems=1)
    baseline: str | None = opt(None, "deltas and paired significance are computed against this experiment")
    cache_dir: str = opt("cache", "content-addressed cache: LLM answers, embeddings, base-model answers")
    seed: int = opt(42, "one seed for sampling, splits, training and bootstrap")
    validation_fraction: float = opt(0.1, "share of selected rows held out for validation",
                                     exclusiveMinimum=0, exclusiveMaximum=1)
    curation_llm: str | None = opt(None, "model key of the curation LLM; null: config.json model_choices.curation")
    max_cost_usd: float | None = opt(None, "stop curation before LLM spending would exceed this", minimum=0)
    wandb_mode: Literal["offline", "online", "disabled"] = opt("offline", "wandb logging of training")
    wandb_project: str = opt("med-s1", "wandb project")
    training_defaults: dict = opt({}, "training_params every experiment starts from (its own block wins)")
    eval: dict = opt({}, "run-wide eval settings (meds1.evaluate.settings.EvalSettings)")
    figures: dict[str, list[str]] = opt({}, "which experiments feed which extra figure")
    plugins: list[str] = opt([], "extra plug-in modules: importable names or .py files (see docs/extending.md)")
