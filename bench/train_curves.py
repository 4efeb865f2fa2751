"""The demo's training loss, bf16 autocast against float32, next to float32's own seed-to-seed spread.

    .venv/bin/python bench/train_curves.py                      # demo-random: float32 seeds 42, 43; bf16 seed 42
    .venv/bin/python bench/train_curves.py --experiment demo-random-step

Trains the experiment's own spec (results.json, as the workflow resolves it) on its curated dataset (run the demo,
or at least ``snakemake curated/<exp>/stats.json``, first), each run in its own process, and prints the per-step
training loss and the validation loss of each run. "Within noise" means: bf16's distance from float32 (same seed) is
no larger than float32's distance from itself under another seed (another data order).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, load_banner, print_table, use_offline_env

RUNS = tuple(tuple(r) for r in __import__("json").loads(os.environ.get("CURVE_RUNS", "[[\"float32\", \"0\", 42], [\"float32\", \"0\", 43], [\"bfloat16\", \"1\", 42]]")))


def child(experiment: str, seed: int, out: Path) -> None:
    import yaml

    from meds1.registry import load_registry
    from meds1.sft.train import train

    os.chdir(REPO)
    registry = load_registry(yaml.safe_load((REPO / "workflow_config.yaml").read_text()), ".")
    spec = registry.spec(experiment, "train")
    spec["seed"] = spec["training_params"]["seed"] = seed
    with tempfile.TemporaryDirectory() as tmp:
        metrics = train(spec, f"curated/{experiment}/dataset", spec["model"]["path"], Path(tmp) / "final",
                        Path(tmp) / "metrics.json", Path(tmp) / "work")
    out.write_text(json.dumps({k: metrics[k] for k in ("loss_curve", "eval_curve", "compute_dtype",
                                                        "tokens_per_second", "wall_seconds")}))


def distance(a: list[float], b: list[float]) -> float:
    """Mean absolute difference, step by step."""
    return sum(abs(x - y) for x, y in zip(a, b)) / max(1, min(len(a), len(b)))


def main() -> None:
    use_offline_env()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="demo-random")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # seed, out
    args = ap.parse_args()
    if args.child:
        return child(args.experiment, int(args.child[0]), Path(args.child[1]))
    print(load_banner("start"), flush=True)
    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype, flag, seed in RUNS:
            out = Path(tmp) / f"{dtype}-{seed}.json"
            env = {**os.environ, "MEDS1_CPU_BF16": flag}
            done = subprocess.run([sys.executable, __file__, "--experiment", args.experiment, "--child", str(seed),
                                   str(out)], env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(done.stderr[-3000:])
            curves[(dtype, seed)] = json.loads(out.read_text())
            print(f"  {dtype} seed {seed}: {curves[(dtype, seed)]['compute_dtype']}, "
                  f"{curves[(dtype, seed)]['tokens_per_second']} tokens/s", flush=True)
    report(curves)
    print(load_banner("end"))


def report(curves: dict) -> None:
    losses = {k: [p["loss"] for p in v["loss_curve"]] for k, v in curves.items()}
    evals = {k: [p["eval_loss"] for p in v["eval_curve"]] for k, v in curves.items()}
    steps = len(next(iter(losses.values())))
    print_table(["step", *(f"{d} s{s}" for d, s in losses)],
                [(i + 1, *(v[i] for v in losses.values())) for i in range(steps)], digits=3)
    print("validation loss: " + "; ".join(f"{d} s{s}: {[round(x, 3) for x in v]}" for (d, s), v in evals.items()))
    noise = distance(losses[("float32", 42)], losses[("float32", 43)])
    gap = distance(losses[("float32", 42)], losses[("bfloat16", 42)])
    eval_noise = distance(evals[("float32", 42)], evals[("float32", 43)])
    eval_gap = distance(evals[("float32", 42)], evals[("bfloat16", 42)])
    print(f"training loss, mean |difference| per step: bf16 vs float32 {gap:.3f}; float32 seed 42 vs 43 {noise:.3f} "
          f"-> {'within' if gap <= noise else 'OUTSIDE'} noise")
    print(f"validation loss, mean |difference|: bf16 vs float32 {eval_gap:.3f}; float32 seed 42 vs 43 {eval_noise:.3f}")


if __name__ == "__main__":
    main()
