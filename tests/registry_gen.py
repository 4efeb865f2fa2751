"""Generate large registries in the seed system's vocabulary (tests and bench/)."""
from __future__ import annotations

EXTRACTS = ["step", "1-sentence", "list", "markdown", "step-evidence", "note", "soap", "decision-tree", "qa",
            "socratic", "cot", "cot-step", "nejmcr-reason", ["step", "1-sentence"], "none"]
METHODS = ["all", "random", "difficulty-substring", "difficulty-n-gram", "embedding-diversity",
           "embedding-similarity", "novelty-answer", "s1"]
PERTURB = ["collapse_consecutive", "skip", "shuffle", "add_irrelevant", "answer"]
FORMATS = ["huatuo", "qwen", "nemotron", "llama"]
MODELS = ["llama3.1:8b", "qwq:32B"]


def full_training_params() -> dict:
    return {"learning_rate": 1e-5, "batch_size": 2, "gradient_accumulation_steps": 8, "num_epochs": 3,
            "weight_decay": 1e-4, "warmup_ratio": 0.05, "total_batch_size": 128,
            "optimizer": {"adam_beta1": 0.9, "adam_beta2": 0.95, "adam_epsilon": 1e-8,
                          "no_decay_params": ["bias", "norm.weight"]}}


def experiment(i: int) -> tuple[str, dict]:
    """The i-th experiment; every key of the vocabulary appears across i = 0..74; 'same as' chains of depth >= 2."""
    name = f"e{i:04d}"
    if i == 0:
        return name, {"description": "base", "config": {"model_key": "llama3.1:8b", "curation": None,
                      "training_params": None, "datasets": {"curate": None, "eval": "ev"}, "prompting": "step",
                      "test_time_scaling": True, "reasoning_approaches": ["immediate", "reasoning", "reasoning_2x",
                      "reasoning_3x_random", "budget_256"], "eval_sample": 50,
                      "eval": {"repetition_multiplier": 2, "repetitions": {"MedQA": 3}}}, "results": {"acc": 0.5}}
    if i == 1:
        return name, {"config": {"model_key": "llama3.1:8b", "format": "huatuo",
                      "curation": {"method": "random", "huatuo_format": True, "n_samples": 1000},
                      "training_params": full_training_params(), "datasets": {"curate": "tr", "eval": "ev"}}}
    method = METHODS[i % len(METHODS)]
    cur = {"method": method, "format": FORMATS[i % 4], "n_samples": 100 + i, "extract": EXTRACTS[i % len(EXTRACTS)]}
    if method == "embedding-diversity":
        cur |= {"column": "Question", "cluster_percentage": 10, "outlier_percentage": 5, "intra_group_ranking": "cot-length"}
    if method == "s1":
        cur |= {"specialty_weights": {"Cardiovascular Disease": 2.0}}
    if i % 3 == 0:
        cur |= {"perturbation": {"type": PERTURB[i % 5], "rate": [0.33, 0.66, 1.0][(i // 3) % 3]}, "restore": i % 2 == 0}
    parent = f"e{i - 1:04d}"
    cfg = {"model_key": MODELS[i % 2], "curation": cur, "training_params": f"same as {parent}",
           "datasets": f"same as {parent}"}
    if i % 7 == 0:
        cfg = {"extends": parent, "curation": {"n_samples": 50 + i}}
    if i % 11 == 0:
        cfg["eval"] = "same as e0000"
    return name, {"description": f"generated {i}", "config": cfg}


def registry(n: int) -> dict:
    return {"experiments": dict(experiment(i) for i in range(n)), "results": {"legacy": True}}


def paper_config(sft: str, ev: str) -> dict:
    return {"model_choices": {"base": "llama3.1:8b"},
            "models": {m: {"hf_path": f"org/{m.replace(':', '-')}"} for m in MODELS},
            "train_datasets": {"tr": {"file_path": sft}}, "eval_datasets": {"ev": {"file_path": ev}}}
