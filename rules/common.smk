# Registry access for the rules: experiments, target lists, input and params functions.
# Rules ask the registry; no plug-in or stage name is spelled here beyond the rule's own.
import json
import sys

from meds1.errors import MedS1Error
from meds1.registry import load_registry
from meds1.stages.eval import inputs as eval_stage_inputs

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
    evaluated = REG.stage_experiments("eval", SELECTED)
    trained_only = [e for e in REG.stage_experiments("train", SELECTED) if e not in evaluated]
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
    return eval_stage_inputs(REG, REG.experiment(wc.exp))


def metrics_of_selected(wc=None):
    return [f"eval/{e}/metrics.json" for e in REG.stage_experiments("eval", SELECTED)]


def curation_stats_of_selected(wc=None):
    evaluated = REG.stage_experiments("eval", SELECTED)
    return [f"curated/{e}/stats.json" for e in REG.stage_experiments("curate", evaluated)]
