"""The train stage: SFT on the curated dataset -> ckpts/{exp}/final (trained experiments only)."""
from __future__ import annotations

from meds1.registry.entries import model_entry, trace_format
from meds1.stages import Stage, define


def build_spec(reg, exp) -> dict:
    model = model_entry(reg.config, exp.config["model_key"])
    return {"experiment": exp.name, "seed": reg.wf["seed"], "model": model,
            "training_params": exp.train_settings.to_spec(), "format": trace_format(exp, model),
            "wandb": {"mode": reg.wf["wandb_mode"], "project": reg.wf["wandb_project"]}, "plugins": reg.wf["plugins"]}


TRAIN = define(Stage("train", "ckpts", applies=lambda exp: exp.owns_training, build_spec=build_spec,
                     loads_model=lambda reg, exp: True, doc="ckpts/{exp}/final and train_metrics.json"))
