"""Eval: generate on the eval dataset (hf or vLLM backend) and score (meds1.evaluate.run). A job that planned GPUs
and finds none stops with one line unless CPU was asked for (meds1.devices)."""

from meds1.cli import run_rule
from meds1.data.eval_items import probe_ids
from meds1.devices import cpu_allowed, require_gpus
from meds1.evaluate.run import evaluate
from meds1.models import check_model_path


def main(spec):
    require_gpus(int(snakemake.resources.get("gpu", 0)), allow_cpu=cpu_allowed(snakemake.resources.get("allow_cpu")),
                 experiment=spec.get("experiment"), job="eval")
    probes = probe_ids(stats=snakemake.input.get("probe_stats"), rows=snakemake.input.get("probe_rows"),
                       dataset=(spec.get("dataset") or {}).get("key"))  # probe questions a curation used
    evaluate(spec | {"exclude_ids": probes},
             model_path=check_model_path(spec["model"], snakemake.input.get("model", spec["model"]["path"])),
             generations_path=snakemake.output.generations, metrics_path=snakemake.output.metrics,
             work_dir=snakemake.params.work_dir)


run_rule(snakemake, main)
