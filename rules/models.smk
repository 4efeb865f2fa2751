# Models that a rule materialises offline (config.json: a model entry with "prepare" and "local_path").

PREPARED = REG.prepared_models()


rule prepare_model:
    output:
        model=directory("{model_dir}"),
    params:
        spec=lambda wc: json.dumps(REG.config["models"][PREPARED[wc.model_dir]] | {"key": PREPARED[wc.model_dir], "cache_dir": REG.wf["cache_dir"]}, sort_keys=True),
    log:
        "logs/models/{model_dir}.log",
    benchmark:
        "benchmarks/models/{model_dir}.tsv"
    wildcard_constraints:
        model_dir="|".join(map(re.escape, PREPARED)) or "(?!)",
    resources:
        mem_mb=4000,
    conda:
        "../envs/curate.yaml"
    script:
        "../scripts/prepare_model.py"
