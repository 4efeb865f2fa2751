"""Eval: generate on the eval dataset (hf or vLLM backend) and score (meds1.evaluate.run)."""
from meds1.cli import run_rule
from meds1.evaluate.run import evaluate

run_rule(snakemake, lambda spec: evaluate(
    spec, model_path=snakemake.input.get("model", spec["model"]["path"]),
    generations_path=snakemake.output.generations, metrics_path=snakemake.output.metrics,
    work_dir=snakemake.params.work_dir))
