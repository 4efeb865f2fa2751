# Results: summary table and figures over every selected experiment's metrics.
# Outputs and inputs come from one list each, by name (meds1.plots.outputs; plot_inputs below): nothing to keep in
# sync by hand, and the script pairs files with experiments by name, never by position.
from meds1.plots import output_paths
from meds1.plots.outputs import REPORT_CATEGORIES


localrules:
    plot,
    all,
    curate_all,
    train_all,
    eval_all,


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


rule plot:
    input:
        metrics=lambda wc: sorted(plot_inputs()["metrics"].values()),
        stats=lambda wc: sorted(set(plot_inputs()["stats"].values())),
    output:
        **plot_outputs(),
    params:
        spec=lambda wc: json.dumps(REG.plot_spec(), sort_keys=True),
        files=lambda wc: json.dumps(plot_inputs(), sort_keys=True),
    log:
        "logs/plot/plot.log",
    benchmark:
        "benchmarks/plot/plot.tsv"
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/plot.py"
