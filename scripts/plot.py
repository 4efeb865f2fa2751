"""Plot: summary table and figures over the selected experiments (meds1.plots).

Files are paired with experiments by name (``params.files``: {"metrics": {exp: path}, "stats": {exp: path}}, the
same mapping the rule's inputs come from), never by their position in a list.
"""
import json

from meds1.cli import run_rule
from meds1.plots import build_results
from meds1.plots.summary import with_train_sizes

files = json.loads(snakemake.params.files)
run_rule(snakemake, lambda spec: build_results(with_train_sizes(spec, files["stats"]), files["metrics"],
                                               out_dir="results"))
