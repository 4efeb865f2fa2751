"""Entry point of a training job: ``accelerate launch`` with FSDP over the job's GPUs, one plain process on CPU.

    python -m meds1.sft.launch --spec spec.json --dataset curated/EXP/dataset --model models/smollm2-135m \\
        --final ckpts/EXP/final --metrics ckpts/EXP/train_metrics.json --work ckpts/EXP/work [--gpus N | --cpu]

Run as above inside ONE SLURM task (never ``srun -n``): it checks that the GPUs it planned are there
(``meds1.devices``: what SLURM/CUDA give the job, counted once), then re-launches itself through
``accelerate launch --num_processes <GPUs> --config_file meds1/resources/accelerate/gpus.yaml``, one process per
GPU, and the workers train with FSDP (``meds1.sft.fsdp``). With no GPU it stops with one line unless CPU was asked
for (``--cpu``, the rule's ``allow_cpu`` resource or MEDS1_ALLOW_CPU=1); then it trains in this process.
``--spec`` takes a JSON file or the JSON text itself.
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

from meds1.devices import count_gpus, cpu_allowed, require_gpus
from meds1.errors import MedS1Error
from meds1.io import read_json, write_json

ACCELERATE_CONFIGS = Path(__file__).resolve().parents[1] / "resources" / "accelerate"
GPU_LAUNCH_CONFIG = ACCELERATE_CONFIGS / "gpus.yaml"    # one process per GPU; FSDP itself is set in meds1.sft.fsdp
CPU_LAUNCH_CONFIG = ACCELERATE_CONFIGS / "cpu.yaml"     # N processes on CPU (gloo): the FSDP path, tested without GPUs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m meds1.sft.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="train spec: a JSON file or JSON text")
    parser.add_argument("--dataset", required=True, help="curated DatasetDict folder (train/validation)")
    parser.add_argument("--model", required=True, help="model folder or hub id to start from")
    parser.add_argument("--final", required=True, help="output folder for the selected model + tokenizer")
    parser.add_argument("--metrics", required=True, help="output train_metrics.json")
    parser.add_argument("--work", required=True, help="folder for resumable checkpoints")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs the job planned (default: all it has)")
    parser.add_argument("--cpu", action="store_true", help="train on CPU when no GPU works (asked on purpose)")
    return parser.parse_args(argv)


def launch_command(num_processes: int, argv: Sequence[str] = (), *, cpu: bool = False) -> list[str]:
    """The command that trains with ``argv``: one process per GPU through accelerate (FSDP); ``cpu`` starts
    ``num_processes`` CPU processes the same way; 0 processes: this interpreter, on CPU."""
    if num_processes < 1:
        return [sys.executable, "-m", "meds1.sft.launch", *argv, "--cpu"]
    config = CPU_LAUNCH_CONFIG if cpu else GPU_LAUNCH_CONFIG
    return [_accelerate_executable(), "launch", "--num_processes", str(num_processes), "--num_machines", "1",
            "--main_process_port", str(_free_port()), "--config_file", str(config), "-m", "meds1.sft.launch", *argv]


def under_launcher() -> bool:
    """True inside a process started by accelerate/torchrun (they set these for every worker)."""
    return "LOCAL_RANK" in os.environ or "WORLD_SIZE" in os.environ


def read_spec(value: str) -> dict:
    text = value if value.lstrip().startswith("{") else _read_file(value)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise MedS1Error(f"train spec is not valid JSON ({err})", file=None if text is value else value) from err


def run_training(spec: dict, *, dataset_dir, final_dir, metrics_path, work_dir, gpus: int = 0,
                 allow_cpu: bool | None = None, model_path=None) -> dict:
    """Train one experiment (the workflow's train script): ``gpus`` is the rule's planned count. With that many GPUs
    working, ``accelerate launch`` runs one FSDP process per GPU; with none, this process trains on CPU if the run
    asked for CPU (``allow_cpu``, default: MEDS1_ALLOW_CPU), else a one-line MedS1Error. Returns train_metrics."""
    model_path = model_path or spec["model"].get("path") or spec["model"].get("hf_path")
    allow_cpu = cpu_allowed() if allow_cpu is None else allow_cpu
    processes = require_gpus(gpus, allow_cpu=allow_cpu, experiment=spec.get("experiment"), job="train")
    if processes < 1:
        from meds1.sft.train import train

        return train(spec, dataset_dir, model_path, final_dir, metrics_path, work_dir)
    spec_path = Path(work_dir) / "train_spec.json"
    write_json(spec_path, spec)  # the worker processes read the spec from here
    argv = ["--spec", str(spec_path), "--dataset", str(dataset_dir), "--model", str(model_path),
            "--final", str(final_dir), "--metrics", str(metrics_path), "--work", str(work_dir)]
    _run_workers(launch_command(processes, argv), spec.get("experiment"))
    return read_json(metrics_path)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if not under_launcher():
        spec = read_spec(args.spec)
        planned = args.gpus if args.gpus is not None else max(count_gpus(), 1)
        if require_gpus(planned, allow_cpu=args.cpu or cpu_allowed(), experiment=spec.get("experiment"),
                        job="train") >= 1:
            worker_argv = [a for a in argv if a != "--cpu"]
            _run_workers(launch_command(planned, worker_argv), spec.get("experiment"))
            return 0
    from meds1.sft.train import train  # heavy imports only in the process that trains

    train(read_spec(args.spec), args.dataset, args.model, args.final, args.metrics, args.work)
    return 0


def _run_workers(command: list[str], experiment) -> None:
    print(f"[meds1.sft] {' '.join(command)}", file=sys.stderr, flush=True)
    returncode = subprocess.run(command, check=False).returncode
    if returncode != 0:
        raise MedS1Error(f"training processes failed with exit code {returncode} (see the log above)",
                         experiment=experiment)


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
    from meds1.cli import run_command

    run_command(main)
