"""Train: SFT on the curated dataset; accelerate launch (FSDP) on GPUs, one process on CPU (meds1.sft.launch)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # conda envs (--sdm conda) lack meds1

from meds1.cli import run_rule
from meds1.models import check_model_path
from meds1.sft.launch import run_training

run_rule(snakemake, lambda spec: run_training(
    spec, dataset_dir=snakemake.input.dataset, final_dir=snakemake.output.model,
    metrics_path=snakemake.output.metrics, work_dir=snakemake.params.work_dir,
    gpus=int(snakemake.resources.get("gpu", 0)), model_path=check_model_path(spec["model"], spec["model"]["path"])))
