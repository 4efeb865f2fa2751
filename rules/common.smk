# Registry access for the rules: experiments, target lists, input and params functions.
import json
import re
import sys

from meds1.errors import MedS1Error
from meds1.registry import load_registry

try:
    REG = load_registry(config)
    REG.check_targets(sys.argv[1:])
except MedS1Error as err:  # one line, no traceback, nothing runs
    sys.exit(f"error: {err}")

EXPERIMENTS = list(REG.experiments)
SELECTED = REG.selected()


wildcard_constraints:
    exp=REG.wildcard_regex(),


def final_targets():
    evaluated = REG.evaluated(SELECTED)
    trained_only = [e for e in SELECTED if e not in evaluated and REG.experiments[e].trained]
    targets = [f"ckpts/{e}/final" for e in trained_only]
    return targets + (["results/plots/comparison.png"] if evaluated else [])


def spec(stage):
    """Params function: the experiment's resolved slice for ``stage`` as JSON (edits rerun only that experiment)."""
    return lambda wc: REG.spec_json(wc.exp, stage)


def model_inputs(stage):
    return lambda wc: REG.model_inputs(wc.exp, stage)


def dataset_files(role):
    return lambda wc: REG.dataset_files(wc.exp, role)


def eval_inputs(wc):
    files = {"data": REG.dataset_files(wc.exp, "eval")}
    exp = REG.experiment(wc.exp)
    if exp.trained and exp.curation["method"] == "embedding-similarity" and REG.wf["eval"]["exclude_probe_questions"]:
        files["probe_rows"] = f"curated/{wc.exp}/rows.parquet"  # its probe questions are left out of the eval
    if exp.trained:
        return files | {"model": f"ckpts/{wc.exp}/final"}
    return files | ({"model": path[0]} if (path := REG.model_inputs(wc.exp, "eval")) else {})


def metrics_of_selected(wc=None):
    return [f"eval/{e}/metrics.json" for e in REG.evaluated(SELECTED)]


def curation_stats_of_selected(wc=None):
    return [f"curated/{e}/stats.json" for e in REG.evaluated(SELECTED) if REG.experiments[e].trained]
