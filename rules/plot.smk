# Results: summary table and figures over every selected experiment's metrics.
# Outputs and inputs come from one list each, by name (meds1.plots.outputs; plot_inputs in common.smk): nothing to
# keep in sync by hand, and the script pairs files with experiments by name, never by position.


localrules:
    plot,
    all,
    curate_all,
    train_all,
    eval_all,


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
