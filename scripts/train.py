"""Train: SFT on the curated dataset; accelerate launch (FSDP) over the planned GPUs, one process when CPU was asked for
(meds1.sft.launch). meds1 is installed in every environment the rule runs in (.venv, envs/*.yaml)."""
from meds1.cli import run_rule
from meds1.devices import cpu_allowed
from meds1.models import check_model_path
from meds1.sft.launch import run_training

run_rule(snakemake, lambda spec: run_training(
    spec, dataset_dir=snakemake.input.dataset, final_dir=snakemake.output.model,
    metrics_path=snakemake.output.metrics, work_dir=snakemake.params.work_dir,
    gpus=int(snakemake.resources.get("gpu", 0)), allow_cpu=cpu_allowed(snakemake.resources.get("allow_cpu")),
    model_path=check_model_path(spec["model"], spec["model"]["path"])))
