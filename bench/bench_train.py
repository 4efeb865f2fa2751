"""CPU SFT throughput through ``meds1.sft.train.train``: plain vs group_by_length vs packing, SmolLM2-135M and the
tiny test model.

    .venv/bin/python bench/bench_train.py                  # 12 demo examples = 6 steps of batch 2 x max_length 512
    .venv/bin/python bench/bench_train.py --quick          # 6 examples (3 steps); tiny: 24
    .venv/bin/python bench/bench_train.py --threads 1      # torch threads (a busy shared machine: 1 is faster)
    .venv/bin/python bench/bench_train.py --models tiny --runs 3
    .venv/bin/python bench/bench_train.py --gradient-checkpointing   # the registry default (the demo turns it off)

Each (model, variant, run) trains in its own process, so that peak RSS is that variant's own. The data are the first
N rows of ``meds1/resources/data/demo_sft.json`` made into chat examples with ``meds1.sft.chat.build_example``
(huatuo format, the model entry's system prompt), no validation split, one epoch, batch 2, max_length 512. The tiny
model gets more rows (``--tiny-examples``, 48) since its steps take milliseconds; its 1k-token BPE makes every demo
example longer than 512 tokens, so its rows are cut to 512 (no padding to save there).

Figures per variant (the first step, which pays for lazy initialisation, is left out of the steady state):
- tokens/s: non-padding tokens (prompt + completion) fed per second of step time, median over steps 2..N;
- loss tokens/s: completion tokens (labels != -100) per second, the tokens that actually train;
- padding %: padded positions / all positions in the batches the collator built;
- end-to-end tokens/s: ``train_metrics.json``'s ``tokens_per_second`` (all steps, warm-up and final save included);
- peak RSS of the training process.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (REPO, ensure_smollm, import_tests_helpers, load_banner, median, print_table, spread,
                    use_offline_env)

DEMO_SFT = REPO / "meds1" / "resources" / "data" / "demo_sft.json"
# variant -> (training_params overrides, environment of the training process). "plain" is what the workflow runs on
# this machine (bf16 autocast where the CPU has AMX); fp32 / bf16 force the precision (meds1.devices.CPU_BF16_ENV).
VARIANTS = {"plain": ({}, {}), "fp32": ({}, {"MEDS1_CPU_BF16": "0"}), "bf16": ({}, {"MEDS1_CPU_BF16": "1"}),
            "group_by_length": ({"group_by_length": True}, {}), "packing": ({"packing": True}, {})}
DEFAULT_VARIANTS = "fp32,bf16"


# ------------------------------------------------------------------------------------------------------------ child
def curated_dataset(out: Path, n_examples: int, system_prompt: str | None) -> Path:
    """The first ``n_examples`` demo rows as a curated DatasetDict (train only, an empty validation split)."""
    from datasets import Dataset, DatasetDict

    from meds1.sft.chat import build_example

    rows = []
    for row in json.loads(DEMO_SFT.read_text())[:n_examples]:
        example = build_example(row["Question"], row["Complex_CoT"], row["Response"], fmt="huatuo",
                                system_prompt=system_prompt)
        rows.append({"id": row["id"], **example, "Question": row["Question"], "Complex_CoT": row["Complex_CoT"],
                     "Response": row["Response"]})
    train = Dataset.from_list(rows)
    # one shard each: datasets 5.2 cannot reload an empty split saved with its default of zero shards
    DatasetDict({"train": train, "validation": train.select([])}).save_to_disk(
        str(out), num_shards={"train": 1, "validation": 1})
    return out


def make_spec(model_path: Path, system_prompt: str | None, variant: str, gradient_checkpointing: bool) -> dict:
    params = {"learning_rate": 1e-5, "batch_size": 2, "gradient_accumulation_steps": 1, "total_batch_size": None,
              "num_epochs": 1, "weight_decay": 1e-4, "warmup_ratio": 0.0, "max_length": 512, "select": "last",
              "evals_per_epoch": 1, "gradient_checkpointing": gradient_checkpointing,
              "optimizer": {"adam_beta1": 0.9, "adam_beta2": 0.95, "adam_epsilon": 1e-8}, **VARIANTS[variant][0]}
    return {"experiment": f"bench-{variant}", "seed": 0, "training_params": params, "wandb": {"mode": "disabled"},
            "model": {"key": model_path.name, "hf_path": str(model_path), "path": str(model_path), "max_length": 512,
                      "system_prompt": system_prompt, "chat_template": None, "format": "huatuo"}}


class BatchCounter:
    """Counts what trl's collator hands to each step: positions, real tokens, loss tokens (measurement only)."""

    def __init__(self):
        self.batches: list[dict] = []

    def install(self) -> None:
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        original, counter = DataCollatorForLanguageModeling.torch_call, self

        def counting_call(collator, examples):
            out = original(collator, examples)
            counter.batches.append({"positions": int(out["input_ids"].numel()),
                                    "tokens": sum(len(e["input_ids"]) for e in examples),
                                    "loss_tokens": int((out["labels"] != -100).sum())})
            return out

        DataCollatorForLanguageModeling.torch_call = counting_call


def step_timer():
    """A TrainerCallback recording each optimizer step's wall time."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self._start)

    return StepTimer()


def child(args: argparse.Namespace) -> None:
    """One training run; writes its figures as JSON to ``args.out``."""
    import torch

    import meds1.sft.train as sft

    if args.threads:
        torch.set_num_threads(args.threads)
    counter, timer = BatchCounter(), step_timer()
    counter.install()
    build = sft.build_trainer

    def build_with_timer(*a, **kw):  # train() looks build_trainer up at call time: add the timer, change nothing else
        run = build(*a, **kw)
        run.trainer.add_callback(timer)
        return run

    sft.build_trainer = build_with_timer
    model_path, work = Path(args.model_path), Path(args.work)
    dataset = curated_dataset(work / "dataset", args.examples, args.system_prompt or None)
    spec = make_spec(model_path, args.system_prompt or None, args.variant, args.gradient_checkpointing)
    metrics = sft.train(spec, dataset, model_path, work / "final", work / "train_metrics.json", work / "work")
    steps = [{**b, "seconds": s} for b, s in zip(counter.batches, timer.seconds)]
    Path(args.out).write_text(json.dumps({"steps": steps, "metrics": {
        k: metrics.get(k) for k in ("tokens_per_second", "train_tokens", "wall_seconds", "peak_rss_mb", "global_step",
                                    "truncated", "dropped_too_long", "compute_dtype", "loss_curve")}}))


# ----------------------------------------------------------------------------------------------------------- parent
def run_child(model_path: Path, system_prompt: str | None, variant: str, examples: int,
              args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, __file__, "--child", "--variant", variant, "--model-path", str(model_path),
                   "--system-prompt", system_prompt or "", "--examples", str(examples), "--work", tmp,
                   "--out", str(out)] + (["--gradient-checkpointing"] if args.gradient_checkpointing else []) \
            + (["--threads", str(args.threads)] if args.threads else [])
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **VARIANTS[variant][1]})
        if done.returncode != 0:
            raise SystemExit(f"{model_path.name} {variant} failed:\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())


def summarise(results: list[dict]) -> dict:
    """Steady-state rates from steps 2..N of every run (step 1 pays for lazy initialisation)."""
    steady = [s for r in results for s in (r["steps"][1:] or r["steps"])]
    every = [s for r in results for s in r["steps"]]
    return {
        "steps": len(results[0]["steps"]),
        "step_s": median(s["seconds"] for s in steady),
        "tokens_per_s": median(s["tokens"] / s["seconds"] for s in steady),
        "loss_tokens_per_s": median(s["loss_tokens"] / s["seconds"] for s in steady),
        "padding": 1 - sum(s["tokens"] for s in every) / sum(s["positions"] for s in every),
        "end_to_end": median(r["metrics"]["tokens_per_second"] or 0.0 for r in results),
        "peak_rss_mb": max(r["metrics"]["peak_rss_mb"] for r in results),
        "compute_dtype": results[0]["metrics"].get("compute_dtype"),
        "runs_tokens_per_s": [sum(s["tokens"] for s in r["steps"][1:]) / max(1e-9, sum(s["seconds"] for s in
                              r["steps"][1:])) for r in results],
    }


def bench_model(name: str, model_path: Path, system_prompt: str | None, examples: int,
                args: argparse.Namespace) -> dict:
    results: dict[str, list[dict]] = {variant: [] for variant in args.variants}
    for _ in range(args.runs):  # variants interleaved: a load change on a shared machine hits all of them alike
        for variant in args.variants:
            results[variant].append(run_child(model_path, system_prompt, variant, examples, args))
            steps = results[variant][-1]["steps"][1:] or results[variant][-1]["steps"]
            print(f"  {name} {variant}: {sum(s['tokens'] for s in steps) / sum(s['seconds'] for s in steps):.0f} "
                  "tokens/s", flush=True)
    summaries = {variant: summarise(runs) for variant, runs in results.items()}
    import torch

    print(f"\n{name}: {examples} examples, batch 2, max_length 512, gradient checkpointing "
          f"{args.gradient_checkpointing}, torch threads {args.threads or torch.get_num_threads()}, "
          f"{args.runs} run(s) per variant")
    print_table(["variant", "steps", "median step s", "tokens/s", "loss tokens/s", "padding %", "end-to-end tok/s",
                 "peak RSS MB", "runs tok/s"],
                [(v, s["steps"], s["step_s"], s["tokens_per_s"], s["loss_tokens_per_s"], 100 * s["padding"],
                  s["end_to_end"], s["peak_rss_mb"], spread(s["runs_tokens_per_s"], 0))
                 for v, s in summaries.items()], digits=2)
    best, first = max(summaries, key=lambda v: summaries[v]["tokens_per_s"]), next(iter(summaries))
    gain = summaries[best]["tokens_per_s"] / summaries[first]["tokens_per_s"] - 1
    print(f"fastest: {best} ({gain:+.0%} tokens/s vs {first}); precision and kernels: "
          + "; ".join(f"{v}: {s['compute_dtype']}" for v, s in summaries.items()))
    return summaries


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm,tiny", help="comma-separated: smollm, tiny")
    ap.add_argument("--examples", type=int, default=12, help="demo rows trained on (steps = examples / 2)")
    ap.add_argument("--runs", type=int, default=1, help="runs per variant (each its own process)")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, of: {', '.join(VARIANTS)}")
    ap.add_argument("--tiny-examples", type=int, default=48, help="rows for the tiny model (its steps take ms)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads in the training process")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--quick", action="store_true", help="6 examples (3 steps)")
    for hidden in ("--variant", "--model-path", "--system-prompt", "--work", "--out"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.examples, args.tiny_examples = 6, 24
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        ap.error(f"unknown variant(s) {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    return args


def main() -> None:
    use_offline_env()
    args = parse_args()
    if args.child:
        return child(args)
    print(load_banner("start"), flush=True)
    smollm_entry = json.loads((REPO / "config.json").read_text())["models"]["smollm2-135m"]
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        if "smollm" in args.models:
            models["smollm2-135m"] = (ensure_smollm(), smollm_entry.get("system_prompt"), args.examples)
        if "tiny" in args.models:
            import_tests_helpers()
            from tiny_model import build_tiny_model

            models["tiny"] = (build_tiny_model(Path(tmp) / "tiny"), smollm_entry.get("system_prompt"),
                              args.tiny_examples)
        for name, (path, system_prompt, examples) in models.items():
            bench_model(name, path, system_prompt, examples, args)
    print(load_banner("end"))


if __name__ == "__main__":
    main()
