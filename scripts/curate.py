"""Curate: select training rows and rewrite their traces (meds1.curation.pipeline)."""

from meds1.cli import run_rule
from meds1.curation.pipeline import curate

run_rule(snakemake, lambda spec: curate(spec, **snakemake.output))
