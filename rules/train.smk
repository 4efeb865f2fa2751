# Training: SFT on curated/{exp}/dataset -> ckpts/{exp}/final (resumable from ckpts/{exp}/work).


rule train:
    input:
        dataset="curated/{exp}/dataset",
        models=model_inputs("train"),
    output:
        model=directory("ckpts/{exp}/final"),
        metrics="ckpts/{exp}/train_metrics.json",
    params:
        spec=spec("train"),
        work_dir="ckpts/{exp}/work",
    log:
        "logs/train/{exp}.log",
    benchmark:
        "benchmarks/train/{exp}.tsv"
    threads: 8
    resources:  # planned per experiment (python -m meds1.plan); site settings come from the profile
        gpu=lambda wc: REG.resources(wc.exp, "train")["gpu"],
        mem_mb=lambda wc: REG.resources(wc.exp, "train")["mem_mb"],
        runtime=lambda wc: REG.resources(wc.exp, "train")["runtime"],
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train.py"


rule train_all:
    input:
        expand("ckpts/{exp}/final", exp=REG.stage_experiments("train", SELECTED)),
