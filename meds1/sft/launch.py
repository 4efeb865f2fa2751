"""Entry point of a training job: one plain process on CPU, ``accelerate launch`` with FSDP over the job's GPUs.

    python -m meds1.sft.launch --spec spec.json --dataset curated/EXP/dataset --model models/smollm2-135m \\
        --final ckpts/EXP/final --metrics ckpts/EXP/train_metrics.json --work ckpts/EXP/work

Run as above inside ONE SLURM task (never ``srun -n``): with GPUs visible it re-launches itself through
``accelerate launch --num_processes <GPUs> --config_file meds1/resources/accelerate/fsdp.yaml``, one process per
GPU; on CPU it trains in this process. ``--spec`` takes a JSON file or the JSON text itself.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from meds1.errors import MedS1Error
from meds1.io import read_json, write_json
from meds1.sft.config import count_gpus

ACCELERATE_CONFIGS = Path(__file__).resolve().parents[1] / "resources" / "accelerate"
FSDP_CONFIG = ACCELERATE_CONFIGS / "fsdp.yaml"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m meds1.sft.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="train spec: a JSON file or JSON text")
    parser.add_argument("--dataset", required=True, help="curated DatasetDict folder (train/validation)")
    parser.add_argument("--model", required=True, help="model folder or hub id to start from")
    parser.add_argument("--final", required=True, help="output folder for the selected model + tokenizer")
    parser.add_argument("--metrics", required=True, help="output train_metrics.json")
    parser.add_argument("--work", required=True, help="folder for resumable checkpoints")
    return parser.parse_args(argv)


def launch_command(num_gpus: int, argv: Sequence[str] = (), *, config_file: str | Path | None = None) -> list[str]:
    """The command that trains with ``argv`` on ``num_gpus`` GPUs (0: a plain single process)."""
    if num_gpus < 1:
        return [sys.executable, "-m", "meds1.sft.launch", *argv]
    return [_accelerate_executable(), "launch", "--num_processes", str(num_gpus), "--num_machines", "1",
            "--main_process_port", str(_free_port()), "--config_file", str(config_file or FSDP_CONFIG),
            "-m", "meds1.sft.launch", *argv]


def under_launcher() -> bool:
    """True inside a process started by accelerate/torchrun (they set these for every worker)."""
    return "LOCAL_RANK" in os.environ or "WORLD_SIZE" in os.environ


def read_spec(value: str) -> dict:
    text = value if value.lstrip().startswith("{") else _read_file(value)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise MedS1Error(f"train spec is not valid JSON ({err})", file=None if text is value else value) from err


def run_training(spec: dict, *, dataset_dir, final_dir, metrics_path, work_dir, gpus: int | None = None,
                 model_path=None) -> dict:
    """Train one experiment from Python (the workflow's train script): in this process on CPU, else through
    ``accelerate launch`` over the visible GPUs (at most ``gpus``, the rule's request). Returns train_metrics."""
    model_path = model_path or spec["model"].get("path") or spec["model"].get("hf_path")
    visible = count_gpus()
    processes = min(gpus, visible) if gpus else visible
    if processes < 1:
        from meds1.sft.train import train

        return train(spec, dataset_dir, model_path, final_dir, metrics_path, work_dir)
    spec_path = Path(work_dir) / "train_spec.json"
    write_json(spec_path, spec)  # the worker processes read the spec from here
    argv = ["--spec", str(spec_path), "--dataset", str(dataset_dir), "--model", str(model_path),
            "--final", str(final_dir), "--metrics", str(metrics_path), "--work", str(work_dir)]
    command = launch_command(processes, argv)
    print(f"[meds1.sft] {' '.join(command)}", file=sys.stderr, flush=True)
    returncode = subprocess.run(command, check=False).returncode
    if returncode != 0:
        raise MedS1Error(f"training processes failed with exit code {returncode} (see the log above)",
                         experiment=spec.get("experiment"))
    return read_json(metrics_path)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    gpus = count_gpus()
    if gpus >= 1 and not under_launcher():
        command = launch_command(gpus, argv)
        print(f"[meds1.sft] {' '.join(command)}", file=sys.stderr, flush=True)
        return subprocess.run(command, check=False).returncode
    from meds1.sft.train import train  # heavy imports only in the process that trains

    train(read_spec(args.spec), args.dataset, args.model, args.final, args.metrics, args.work)
    return 0


def _read_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise MedS1Error(f"cannot read train spec ({err.strerror})", file=path) from err


def _accelerate_executable() -> str:
    beside_python = Path(sys.executable).with_name("accelerate")
    return str(beside_python) if beside_python.exists() else (shutil.which("accelerate") or "accelerate")


def _free_port() -> int:
    """A free TCP port, so two jobs sharing a node do not both rendezvous on accelerate's default 29500."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MedS1Error as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
