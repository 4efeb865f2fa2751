"""Plot: summary table and figures over the selected experiments (meds1.plots)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # conda envs (--sdm conda) lack meds1

from meds1.cli import run_rule
from meds1.plots import build_results

run_rule(snakemake, lambda spec: build_results(
    spec, {e["name"]: m for e, m in zip(spec["experiments"], snakemake.input.metrics)},
    out_dir="results"))
