# med-s1: curate -> train -> eval -> plot for medical-reasoning LLMs.
# Experiments live in results.json, models and datasets in config.json, run settings in workflow_config.yaml.
#   snakemake --cores 2                                 # the default selection (workflow_config.yaml: experiments)
#   snakemake eval/<exp>/metrics.json --cores 2         # one experiment's chain
#   snakemake --profile slurm results/plots/comparison.png
from snakemake.utils import min_version

min_version("9.0")

from meds1.cli import check_settings_file

check_settings_file("workflow_config.yaml")  # a YAML mistake: one line with file, line and column


configfile: "workflow_config.yaml"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/curate.smk"
include: "rules/train.smk"
include: "rules/eval.smk"
include: "rules/plot.smk"


rule all:
    default_target: True
    input:
        final_targets(),
