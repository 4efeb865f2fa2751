"""Curate: select training rows and rewrite their traces (meds1.curation.pipeline). A job that planned a GPU (its
method runs the base model) and finds none stops with one line unless CPU was asked for (meds1.devices)."""

from meds1.cli import run_rule
from meds1.curation.pipeline import curate
from meds1.devices import cpu_allowed, require_gpus


def main(spec):
    require_gpus(int(snakemake.resources.get("gpu", 0)), allow_cpu=cpu_allowed(snakemake.resources.get("allow_cpu")),
                 experiment=spec.get("experiment"), job="curate")
    curate(spec, **snakemake.output)


run_rule(snakemake, main)
