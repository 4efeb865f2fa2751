# Registry access for the rules: experiments, target lists, input and params functions.
# Rules ask the registry; no plug-in or stage name is spelled here beyond the rule's own.
import json
import os
import sys

from meds1.errors import MedS1Error
from meds1.plots import output_paths
from meds1.plots.outputs import REPORT_CATEGORIES
from meds1.registry import load_registry
from meds1.stages.eval import inputs as eval_stage_inputs

try:
    REG = load_registry(config)
    REG.check_targets(sys.argv[1:])
except MedS1Error as err:  # one line, no traceback, nothing runs
    sys.exit(f"error: {err}")

# envs/*.post-deploy.sh install this checkout into each conda env (--sdm conda) from here.
os.environ["MEDS1_SOURCE"] = workflow.basedir

EXPERIMENTS = list(REG.experiments)
SELECTED = REG.selected()


wildcard_constraints:
    exp=REG.wildcard_regex(),


def guarded(fn):
    """Input/params functions run inside Snakemake: a bad input is our one line, never Snakemake's traceback."""
    def call(*args):
        try:
            return fn(*args)
        except MedS1Error as err:
            sys.exit(f"error: {err}")
    return call


def final_targets():
    evaluated = REG.stage_experiments("eval", SELECTED)
    trained_only = [e for e in REG.stage_experiments("train", SELECTED) if e not in evaluated]  # owners only
    targets = [f"ckpts/{e}/final" for e in trained_only]
    return targets + (["results/plots/comparison.png"] if evaluated else [])


def spec(stage):
    """Params function: the experiment's resolved slice for ``stage`` as JSON (edits rerun only that experiment)."""
    return guarded(lambda wc: REG.spec_json(wc.exp, stage))


def model_inputs(stage):
    return guarded(lambda wc: REG.model_inputs(wc.exp, stage))


def dataset_files(role):
    return guarded(lambda wc: REG.dataset_files(wc.exp, role))


@guarded
def eval_inputs(wc):
    return eval_stage_inputs(REG, REG.experiment(wc.exp))


def plot_outputs():
    """Every file build_results writes, under its own name; captioned ones go into the Snakemake report."""
    return {name: report(path, caption=f"../report/{name}.rst", category=REPORT_CATEGORIES[name])
            if name in REPORT_CATEGORIES else path for name, path in output_paths("results").items()}


def plot_inputs(wc=None):
    """{"metrics": {experiment: path}, "stats": {experiment: curation stats path}} for the selected experiments."""
    evaluated = REG.stage_experiments("eval", SELECTED)
    trained = [e for e in evaluated if REG.experiments[e].trained]
    return {"metrics": {e: f"eval/{e}/metrics.json" for e in evaluated},
            "stats": {e: f"curated/{REG.experiments[e].checkpoint_owner}/stats.json" for e in trained}}
