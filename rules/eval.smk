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
    resources:
        gpu=1,
        mem_mb=32000,
        runtime="4h",
    conda:
        "../envs/eval-vllm.yaml"
    script:
        "../scripts/eval.py"


rule eval_all:
    input:
        expand("eval/{exp}/metrics.json", exp=REG.stage_experiments("eval", SELECTED)),
