"""The eval stage: generate and score answers -> eval/{exp}/ (experiments with an eval dataset)."""
from __future__ import annotations

from meds1.errors import MedS1Error
from meds1.plugins import EVAL_BACKENDS
from meds1.registry.entries import dataset_entry, model_entry, trace_format
from meds1.stages import Stage, define


def build_spec(reg, exp) -> dict:
    model = model_entry(reg.config, exp.config["model_key"])
    cfg, ev = exp.config, exp.eval_settings
    check_backends(reg, exp, model)
    return {
        "experiment": exp.name, "seed": reg.wf["seed"], "model": model, "trained": exp.trained,
        "dataset": dataset_entry(reg, "eval_datasets", exp.datasets.get("eval")),
        "format": trace_format(exp, model) if exp.trained or cfg.get("format") else None,
        "prompting": cfg.get("prompting"), "eval_sample": cfg.get("eval_sample"), "limit": ev.limit,
        "eval": {"repetitions": dict(ev.repetitions), "repetition_multiplier": ev.repetition_multiplier},
        "test_time_scaling": bool(cfg.get("test_time_scaling")),
        "reasoning_approaches": cfg.get("reasoning_approaches") or [],
        "backend": ev.backend, "backend_options": dict(ev.backend_options),
        "sampling": {"max_new_tokens": ev.max_new_tokens, "temperature": ev.temperature,
                     "repeat_temperature": ev.repeat_temperature, "top_p": ev.top_p, "batch_size": ev.batch_size,
                     "answer_max_tokens": ev.answer_max_tokens},
        "primary_approach": ev.primary_approach,
        "matcher": {"similarity": ev.similarity_fallback},
        "bootstrap": {"resamples": ev.bootstrap_resamples, "seed": reg.wf["seed"]},
        "exclude_probe_questions": ev.exclude_probe_questions and probes_used(exp),
        "config_hash": exp.config_hash, "config": exp.config, "plugins": reg.wf["plugins"],
    }


def probes_used(exp) -> bool:
    """Did this experiment's curation choose its rows with probe questions (which the eval must leave out)?"""
    return exp.trained and "probes" in exp.curation_settings.needs()


def check_backends(reg, exp, model: dict) -> None:
    """What can be refused before any job runs: a primary approach the experiment does not run, and the backends'
    own checks (e.g. vLLM's tensor_parallel_size against the model's attention heads) for the chosen backend and
    every backend given options."""
    ev, where = exp.eval_settings, {"file": reg.results_file, "experiment": exp.name}
    approaches = exp.config.get("reasoning_approaches") or []
    if exp.config.get("test_time_scaling") and approaches and ev.primary_approach not in approaches:
        raise MedS1Error(f"primary approach '{ev.primary_approach}' is not among reasoning_approaches "
                         f"({', '.join(approaches)})", key="config.eval.primary_approach", **where)
    for name in sorted({ev.backend, *ev.backend_options} - {"auto"}):
        plugin = EVAL_BACKENDS.get(name, key="config.eval.backend", **where)
        check = getattr(plugin.impl, "check_model", None)
        if check is not None:
            options = plugin.make_options(ev.backend_options.get(name), prefix=f"config.eval.backend_options.{name}",
                                          **where)
            check(options, model, base_dir=reg.base_dir, **where)


def inputs(reg, exp) -> dict:
    """Named inputs of the eval rule: the data, the model (checkpoint or prepared base), and the curation outputs
    that name the probe questions to leave out (stats.json "probes"; rows.parquet "probe_id" for older runs)."""
    files = {"data": reg.dataset_files(exp.name, "eval")}
    check_backends(reg, exp, model_entry(reg.config, exp.config["model_key"]))
    if exp.eval_settings.exclude_probe_questions and probes_used(exp):
        files["probe_stats"] = f"curated/{exp.checkpoint_owner}/stats.json"
        files["probe_rows"] = f"curated/{exp.checkpoint_owner}/rows.parquet"
    if exp.trained:
        return files | {"model": f"ckpts/{exp.checkpoint_owner}/final"}
    path = reg.model_inputs(exp.name, "eval")
    return files | ({"model": path[0]} if path else {})


EVAL = define(Stage("eval", "eval", applies=lambda exp: bool(exp.datasets.get("eval")), build_spec=build_spec,
                    loads_model=lambda reg, exp: not exp.trained, doc="eval/{exp}/: generations.jsonl, metrics.json"))
