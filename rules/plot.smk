# Results: summary table and figures over every selected experiment's metrics.


localrules:
    plot,
    all,
    curate_all,
    train_all,
    eval_all,


rule plot:
    input:
        metrics=metrics_of_selected,
        stats=curation_stats_of_selected,
    output:
        summary=report("results/summary.csv", caption="../report/summary.rst", category="Summary"),
        summary_md="results/summary.md",
        comparison=report("results/plots/comparison.png", caption="../report/comparison.rst", category="Figures"),
        syntax=report("results/plots/syntax.png", caption="../report/syntax.rst", category="Figures"),
        efficiency=report("results/plots/sample_efficiency.png", caption="../report/sample_efficiency.rst", category="Figures"),
        perturbation=report("results/plots/perturbation.png", caption="../report/perturbation.rst", category="Figures"),
        tts=report("results/plots/tts.png", caption="../report/tts.rst", category="Figures"),
    params:
        spec=lambda wc: json.dumps(REG.plot_spec(), sort_keys=True),
    log:
        "logs/plot/plot.log",
    benchmark:
        "benchmarks/plot/plot.tsv"
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/plot.py"
