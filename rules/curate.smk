# Curation: choose training rows and rewrite their reasoning traces -> curated/{exp}/.


rule curate:
    input:
        data=dataset_files("curate"),
        models=model_inputs("curate"),
    output:
        dataset=directory("curated/{exp}/dataset"),
        rows="curated/{exp}/rows.parquet",
        stats="curated/{exp}/stats.json",
        cost="curated/{exp}/llm_cost.json",
    params:
        spec=spec("curate"),
    log:
        "logs/curate/{exp}.log",
    benchmark:
        "benchmarks/curate/{exp}.tsv"
    threads: 2
    resources:  # planned per experiment (python -m meds1.plan); site settings come from the profile
        gpu=lambda wc: REG.resources(wc.exp, "curate")["gpu"],
        mem_mb=lambda wc: REG.resources(wc.exp, "curate")["mem_mb"],
        runtime=lambda wc: REG.resources(wc.exp, "curate")["runtime"],
    conda:
        "../envs/curate.yaml"
    script:
        "../scripts/curate.py"


rule curate_all:
    input:
        expand("curated/{exp}/stats.json", exp=REG.stage_experiments("curate", SELECTED)),
