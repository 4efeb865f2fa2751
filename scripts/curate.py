"""Curate: select training rows and rewrite their traces (meds1.curation.pipeline)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # conda envs (--sdm conda) lack meds1

from meds1.cli import run_rule
from meds1.curation.pipeline import curate

run_rule(snakemake, lambda spec: curate(spec, **snakemake.output))
