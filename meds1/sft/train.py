"""Supervised fine-tuning of one experiment with trl's SFTTrainer (completion-only loss on chat data).

    python -m meds1.sft.launch --spec spec.json --dataset curated/EXP/dataset --model models/smollm2-135m \\
        --final ckpts/EXP/final --metrics ckpts/EXP/train_metrics.json --work ckpts/EXP/work

What happens, top to bottom: settings and the effective batch from the spec; examples fitted to ``max_length`` by
cutting their reasoning; checkpoints saved to ``work_dir`` at every validation (sharded per process under FSDP, the
last ``keep_checkpoints`` kept), the run resumed from the latest one if it exists; the best (or last) weights
gathered once and published to ``final_dir`` atomically in bf16 with the tokenizer; ``train_metrics.json``.

Precision: on GPU, bf16 compute over fp32 master weights that FSDP shards (``weights_dtype: float32``), or bf16
weights throughout as s1 does (``weights_dtype: bfloat16``). On CPU the same bf16 autocast where the CPU multiplies
bf16 natively (AMX, ``meds1.devices.cpu_bf16_is_fast``), else fp32 (emulated bf16 is ~10x slower).
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import DatasetDict, load_from_disk
from trl import SFTConfig, SFTTrainer

from meds1.devices import cpu_bf16_is_fast, keep_freed_memory
from meds1.errors import MedS1Error
from meds1.io import write_json
from meds1.sft import checkpoints, lm_head, metrics
from meds1.sft.chat import load_tokenizer
from meds1.sft.config import EffectiveBatch, TrainSettings, count_processes, effective_batch
from meds1.sft.fit import FitReport, fit_split
from meds1.sft.fsdp import enable_on_cpu, fsdp_arguments
from meds1.sft.optim import build_adamw


class MedS1SFTTrainer(SFTTrainer):
    """SFTTrainer whose AdamW groups come from ``meds1.sft.optim`` (so RMSNorm weights skip decay).

    Overriding ``create_optimizer`` rather than passing ``optimizers=`` keeps FSDP working: the optimizer must be
    built after the model is wrapped.
    """

    def __init__(self, *args, no_decay: list[str], **kwargs):
        self.no_decay = list(no_decay)
        super().__init__(*args, **kwargs)
        self.cpu_loss_head = lm_head.use_on_cpu(self)  # trl's CPU fallback scores every position: see meds1.sft.lm_head

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        enable_on_cpu(self)  # a no-op unless FSDP was asked for and accelerate declined it (no GPU)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        # A sharded FSDP checkpoint writes its files after this call, but transformers checks right after it (behind
        # a barrier) whether the best checkpoint's folder exists: every process makes the folder first, so that
        # check agrees on all ranks (otherwise one rank reloads the best model and the others wait forever).
        if output_dir and self.is_fsdp_enabled:
            os.makedirs(output_dir, exist_ok=True)
        super().save_model(output_dir, _internal_call)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            a = self.args
            self.optimizer = build_adamw(model or self.model, learning_rate=a.learning_rate,
                                         weight_decay=a.weight_decay, betas=(a.adam_beta1, a.adam_beta2),
                                         eps=a.adam_epsilon, no_decay=self.no_decay)
        return self.optimizer


@dataclass
class TrainingRun:
    """Everything ``train`` decided before training starts (``build_trainer``'s result, handy for inspection)."""
    trainer: MedS1SFTTrainer
    settings: TrainSettings
    batch: EffectiveBatch
    fits: dict  # split -> FitReport
    resume_from: Path | None


def build_trainer(spec: dict, dataset_dir, model_path, work_dir) -> TrainingRun:
    """Settings, effective batch, fitted data and a trainer whose checkpoints live in ``work_dir``."""
    experiment = spec.get("experiment")
    if not torch.cuda.is_available():
        keep_freed_memory()  # every step reallocates the same activations: reuse them instead of page-faulting
        # Tiny probabilities of a 49k vocabulary underflow to subnormals, which x86 computes ~20x slower: exp and its
        # products over the logits took 1.3 s of a 6 s step. Flushed to zero they change nothing measurable.
        torch.set_flush_denormal(True)
    settings = TrainSettings.from_spec(spec)
    batch = effective_batch(spec.get("training_params") or {}, count_processes(), experiment=experiment)
    _say(f"{experiment}: effective batch {batch.total} = {batch.per_device} per device x {batch.grad_accum} "
         f"accumulation x {batch.num_gpus} process(es); max_length {settings.max_length}")
    tokenizer = load_tokenizer(spec["model"], model_path)
    splits, fits = load_fitted_splits(dataset_dir, tokenizer, settings.max_length, experiment)
    fingerprint = checkpoints.run_fingerprint(spec, dataset_dir, model_path)
    resume_from = checkpoints.find_resume_checkpoint(work_dir, fingerprint)
    args = sft_config(settings, batch, work_dir, has_validation=len(splits["validation"]) > 0,
                      report_to=configure_wandb(spec, work_dir), run_name=experiment,
                      model_width=model_width(model_path, spec["model"]))
    if args.process_index == 0:
        checkpoints.prepare_work_dir(work_dir, fingerprint, resuming=resume_from is not None)
    model = load_model(model_path, spec["model"], settings.weights_dtype)  # after sft_config: FSDP loading is set
    trainer = MedS1SFTTrainer(model=model, args=args,
                              train_dataset=splits["train"], processing_class=tokenizer,
                              eval_dataset=splits["validation"] if args.eval_strategy != "no" else None,
                              no_decay=settings.no_decay_params)
    return TrainingRun(trainer, settings, batch, fits, resume_from)


def train(spec: dict, dataset_dir, model_path, final_dir, metrics_path, work_dir) -> dict:
    """Train (resuming from ``work_dir`` if possible), publish the selected model to ``final_dir``, write
    ``metrics_path``; returns the metrics dict."""
    started = time.time()
    run = build_trainer(spec, dataset_dir, model_path, work_dir)
    trainer, resume_from = run.trainer, run.resume_from
    if resume_from:
        _say(f"resuming from {resume_from}")
    with contextlib.redirect_stdout(sys.stderr):  # progress and log lines belong in the job's log, not stdout
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    selected = metrics.selected_model(trainer.state, run.settings.select)
    trainer.model.config.use_cache = True  # generation-ready config in the published model
    checkpoints.publish_final(trainer, final_dir, work_dir)  # every process: the weights are gathered collectively
    result = train_metrics(run, output, selected, experiment=spec.get("experiment"),
                           wall_seconds=time.time() - started)
    if trainer.is_world_process_zero():
        write_json(metrics_path, result)
    _say(f"selected step {selected['step']} ({selected['rule']}, eval_loss {selected['eval_loss']}) -> {final_dir}")
    return result


def load_fitted_splits(dataset_dir, tokenizer, max_length: int, experiment) -> tuple[DatasetDict, dict]:
    """The curated train/validation splits with every example fitted to ``max_length`` (see ``meds1.sft.fit``)."""
    path = Path(dataset_dir)
    try:
        curated = load_from_disk(str(path))
    except (FileNotFoundError, ValueError, IndexError) as err:  # IndexError: datasets 5.2, an empty 0-shard split
        raise MedS1Error(f"not a saved curated dataset ({err})", file=path, experiment=experiment) from err
    if "train" not in curated:
        raise MedS1Error("curated dataset has no 'train' split", file=path, experiment=experiment)
    fitted, reports = {}, {}
    for name in ("train", "validation"):
        if name not in curated:
            fitted[name], reports[name] = curated["train"].select([]), FitReport()
            continue
        fitted[name], reports[name] = fit_split(curated[name], tokenizer, max_length)
        report = reports[name]
        if report.truncated or report.dropped_too_long:
            _say(f"{name}: reasoning truncated in {report.truncated}, dropped {report.dropped_too_long} example(s) "
                 f"that do not fit max_length {max_length} even without reasoning")
    if len(fitted["train"]) == 0:
        raise MedS1Error(f"no training example fits max_length {max_length}", file=path, experiment=experiment,
                         key="training_params.max_length")
    return DatasetDict(fitted), reports


def sft_config(settings: TrainSettings, batch: EffectiveBatch, work_dir, *, has_validation: bool,
               report_to: list[str], run_name: str | None, model_width: int | None = None) -> SFTConfig:
    """trl/transformers arguments. Validation and checkpoints share one schedule: ``evals_per_epoch`` per epoch.

    Under a launcher (accelerate/torchrun, one process per GPU) training is FSDP full shard; a plain process on CPU
    trains alone with ordinary checkpoints. ``model_width``: the model's hidden size (CPU bf16 needs it)."""
    on_gpu = torch.cuda.is_available()
    checkpointing = recompute_activations(settings.gradient_checkpointing, on_gpu)
    sharded = "WORLD_SIZE" in os.environ
    mixed_bf16 = mixed_precision_bf16(settings.weights_dtype, on_gpu, model_width)
    # A ratio of all optimizer steps; transformers accepts ratios below 1 only, and just under 1 means "at the end".
    every = min(1.0 / (settings.evals_per_epoch * settings.num_epochs), 0.999999)
    best = has_validation and settings.select == "best"
    return SFTConfig(
        output_dir=str(work_dir), run_name=run_name, report_to=report_to, seed=settings.seed, data_seed=settings.seed,
        per_device_train_batch_size=batch.per_device, per_device_eval_batch_size=batch.per_device,
        gradient_accumulation_steps=batch.grad_accum, num_train_epochs=settings.num_epochs,
        learning_rate=settings.learning_rate, weight_decay=settings.weight_decay, lr_scheduler_type="cosine",
        warmup_steps=settings.warmup_ratio, adam_beta1=settings.adam_beta1, adam_beta2=settings.adam_beta2,
        adam_epsilon=settings.adam_epsilon, max_length=settings.max_length,
        eval_strategy="steps" if has_validation else "no", eval_steps=every if has_validation else None,
        save_strategy="steps", save_steps=every, save_total_limit=settings.keep_checkpoints,
        load_best_model_at_end=best,
        metric_for_best_model="eval_loss", greater_is_better=False,
        logging_steps=1, include_num_input_tokens_seen="non_padding",
        bf16=mixed_bf16, use_cpu=not on_gpu, activation_checkpointing=checkpointing and not sharded,
        **(fsdp_arguments(checkpointing) if sharded else {}),
        ddp_find_unused_parameters=False,  # every parameter of a causal LM is used; the check costs a graph walk
        train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
        packing=settings.packing,  # False: one example per row, padded to the longest in the batch
    )


CPU_BF16_MIN_WIDTH = 256


def mixed_precision_bf16(weights_dtype: str, on_gpu: bool, model_width: int | None = None) -> bool:
    """bf16 autocast over fp32 weights (bf16 weights compute in bf16 as they are, without autocast): on a GPU; on a
    CPU with native bf16 for a model at least ``CPU_BF16_MIN_WIDTH`` wide. Narrower models multiply matrices too
    small to repay autocast's casts (the 64-wide test model: 39 % slower in bf16; SmolLM2, 576 wide: 72 % faster)."""
    wide = (model_width or 0) >= CPU_BF16_MIN_WIDTH
    return weights_dtype == "float32" and (on_gpu or (wide and cpu_bf16_is_fast()))


def model_width(model_path, model_entry: dict) -> int | None:
    """The model's hidden size from its config (None when the config does not say)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(model_path), trust_remote_code=bool(model_entry.get("trust_remote_code")))
    return getattr(config.get_text_config(), "hidden_size", None)


def recompute_activations(setting: bool | str, on_gpu: bool) -> bool:
    """Gradient checkpointing: as set. ``auto`` is normally decided by the plan before the job starts (the registry
    writes true/false into the spec); a spec run by hand with ``auto`` recomputes on GPU, where memory is short."""
    return on_gpu if setting == "auto" else bool(setting)


def load_model(model_path, model_entry: dict, weights_dtype: str = "float32"):
    """Weights in ``weights_dtype``; the cache is useless in training and clashes with checkpointing. No hub kernels:
    transformers 5.25 would fetch layer kernels from the Hub on a GPU (compute nodes are often offline, and the
    trained layers must be the model's own code)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=getattr(torch, weights_dtype),
                                                 trust_remote_code=bool(model_entry.get("trust_remote_code")),
                                                 use_kernels=False)
    model.config.use_cache = False
    return model


def configure_wandb(spec: dict, work_dir) -> list[str]:
    """Report to wandb unless disabled (by the environment or the spec); offline by default, grouped by experiment."""
    wandb = spec.get("wandb") or {}
    mode = "disabled" if os.environ.get("WANDB_MODE") == "disabled" else (wandb.get("mode") or "offline")
    if mode == "disabled":
        return []
    os.environ["WANDB_MODE"] = mode
    os.environ.setdefault("WANDB_PROJECT", wandb.get("project") or "med-s1")
    os.environ["WANDB_RUN_GROUP"] = spec.get("experiment") or "med-s1"
    os.environ.setdefault("WANDB_DIR", str(Path(work_dir)))
    return ["wandb"]


def train_metrics(run: TrainingRun, output, selected: dict, *, experiment, wall_seconds: float) -> dict:
    trainer, fits, history = run.trainer, run.fits, run.trainer.state.log_history
    return {
        "experiment": experiment,
        "effective_batch": run.batch.as_dict(),
        "max_length": run.settings.max_length,
        "num_train_examples": fits["train"].kept,
        "num_validation_examples": fits["validation"].kept,
        "truncated": fits["train"].truncated,
        "dropped_too_long": fits["train"].dropped_too_long,
        "validation_truncated": fits["validation"].truncated,
        "validation_dropped_too_long": fits["validation"].dropped_too_long,
        "dropped_ids": fits["train"].dropped_ids + fits["validation"].dropped_ids,
        "epochs": run.settings.num_epochs,
        "global_step": trainer.state.global_step,
        "loss_curve": metrics.loss_curve(history),
        "eval_curve": metrics.eval_curve(history),
        "selected": selected,
        "tokens_per_second": metrics.tokens_per_second(trainer, output),
        "train_tokens": trainer.state.num_input_tokens_seen,
        "wall_seconds": round(wall_seconds, 2),
        **metrics.peak_memory_mb(),
        "resumed_from_step": checkpoints.step_of(run.resume_from),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "sharding": "fsdp" if trainer.is_fsdp_enabled else "none",
        "weights_dtype": run.settings.weights_dtype,
        "compute_dtype": "bfloat16" if trainer.args.bf16 or run.settings.weights_dtype == "bfloat16" else "float32",
        "torch_threads": torch.get_num_threads(),
        "gradient_checkpointing": recompute_activations(run.settings.gradient_checkpointing,
                                                        torch.cuda.is_available()),
    }


def _say(message: str) -> None:
    if os.environ.get("RANK", "0") == "0":  # one copy in the log, not one per process
        print(f"[meds1.sft] {message}", file=sys.stderr, flush=True)
