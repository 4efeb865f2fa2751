# Evaluation: generate answers on the eval dataset and score them -> eval/{exp}/.


rule eval:
    input:
        unpack(eval_inputs),
    output:
        generations="eval/{exp}/generations.jsonl",
        metrics="eval/{exp}/metrics.json",
    params:
        spec=spec("eval"),
        work_dir="eval/{exp}/work",
    log:
        "logs/eval/{exp}.log",
    benchmark:
        "benchmarks/eval/{exp}.tsv"
    threads: 4
    resources:  # planned per experiment (python -m meds1.plan); site settings come from the profile
        gpu=lambda wc: REG.resources(wc.exp, "eval")["gpu"],
        mem_mb=lambda wc: REG.resources(wc.exp, "eval")["mem_mb"],
        runtime=lambda wc: REG.resources(wc.exp, "eval")["runtime"],
    conda:
        "../envs/eval-vllm.yaml"
    script:
        "../scripts/eval.py"


rule eval_all:
    input:
        expand("eval/{exp}/metrics.json", exp=REG.stage_experiments("eval", SELECTED)),
