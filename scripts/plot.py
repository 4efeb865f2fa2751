"""Plot: summary table and figures over the selected experiments (meds1.plots)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # conda envs (--sdm conda) lack meds1

from meds1.cli import run_rule
from meds1.plots import build_results
from meds1.plots.summary import with_train_sizes

trained = [e["name"] for e in json.loads(snakemake.params.spec)["experiments"] if e["method"]]
run_rule(snakemake, lambda spec: build_results(
    with_train_sizes(spec, dict(zip(trained, snakemake.input.stats))),
    {e["name"]: m for e, m in zip(spec["experiments"], snakemake.input.metrics)}, out_dir="results"))
