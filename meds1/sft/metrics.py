"""``train_metrics.json``: curves, selection, throughput and data accounting of one training run."""
from __future__ import annotations

import resource
import sys

import torch


def loss_curve(log_history: list[dict]) -> list[dict]:
    return [{"step": e["step"], "loss": e["loss"], "lr": e.get("learning_rate"),
             "mean_token_accuracy": e.get("mean_token_accuracy"), "epoch": e.get("epoch")}
            for e in log_history if "loss" in e]


def eval_curve(log_history: list[dict]) -> list[dict]:
    return [{"step": e["step"], "epoch": e.get("epoch"), "eval_loss": e["eval_loss"],
             "eval_mean_token_accuracy": e.get("eval_mean_token_accuracy")}
            for e in log_history if "eval_loss" in e]


def selected_model(state, rule: str) -> dict:
    """Which step's weights became the final model: the best eval loss (``best``) or the last step (``last``)."""
    evals = eval_curve(state.log_history)
    step = state.global_step
    if rule == "best" and evals and state.best_global_step:
        step = state.best_global_step
    at_step = [e for e in evals if e["step"] == step]
    return {"rule": rule if evals else "last", "step": step,
            "epoch": at_step[-1]["epoch"] if at_step else state.epoch,
            "eval_loss": at_step[-1]["eval_loss"] if at_step else None}


def peak_memory_mb() -> dict:
    """Peak host RSS of this process and, on GPU, peak allocated device memory (MiB)."""
    # ru_maxrss is KiB on Linux, bytes on macOS
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"peak_memory_mb": round(gpu if gpu is not None else rss, 1), "peak_rss_mb": round(rss, 1),
            "peak_gpu_memory_mb": None if gpu is None else round(gpu, 1)}


def tokens_per_second(trainer, train_output) -> float | None:
    """Input tokens (non-padding, all processes) per second of this session's training time."""
    seen = trainer.state.num_input_tokens_seen - getattr(trainer, "_initial_num_input_tokens_seen", 0)
    runtime = (train_output.metrics or {}).get("train_runtime")
    return round(seen / runtime, 1) if runtime and seen else None
