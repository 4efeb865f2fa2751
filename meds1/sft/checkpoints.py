"""Resumable checkpoints in ``work_dir`` and the atomic hand-over of the selected model to ``final_dir``.

Resume is a first-class mode: a run killed at any moment restarts from its latest COMPLETE checkpoint (transformers
writes ``trainer_state.json`` last, so a checkpoint without a readable one is half-written and skipped).
Checkpoints made for a different spec or dataset (the fingerprint differs) are removed instead of resumed.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

from meds1.io import atomic_path, write_json

FINGERPRINT_FILE = "run_fingerprint.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def run_fingerprint(spec: dict, dataset_dir: str | Path, model_path: str | Path) -> str:
    """What a checkpoint depends on: the science settings, the data and the starting model (not logging)."""
    relevant = {k: v for k, v in spec.items() if k not in ("wandb",)}
    states = sorted(Path(dataset_dir).glob("*/state.json"))  # datasets' own content fingerprints, per split
    data = [json.loads(p.read_text()).get("_fingerprint") for p in states]
    model = Path(model_path).resolve() if Path(model_path).exists() else model_path  # same run from another cwd
    blob = json.dumps({"spec": relevant, "data": data, "model": str(model)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def complete_checkpoints(work_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every fully written checkpoint, oldest first."""
    found = []
    for path in Path(work_dir).glob("checkpoint-*"):
        match = _CHECKPOINT.match(path.name)
        if match and path.is_dir() and _readable_json(path / "trainer_state.json") is not None:
            found.append((int(match.group(1)), path))
    return sorted(found)


def find_resume_checkpoint(work_dir: str | Path, fingerprint: str) -> Path | None:
    """The latest complete checkpoint of THIS run (same fingerprint), or None to start fresh."""
    saved = _readable_json(Path(work_dir) / FINGERPRINT_FILE) or {}
    checkpoints = complete_checkpoints(work_dir)
    if not checkpoints or saved.get("fingerprint") != fingerprint:
        return None
    return checkpoints[-1][1]


def prepare_work_dir(work_dir: str | Path, fingerprint: str, resuming: bool) -> None:
    """Main process only: clear stale checkpoints from another spec, then record this run's fingerprint."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if not resuming:
        stale = [p for p in work_dir.glob("checkpoint-*") if p.is_dir()]
        if stale:
            print(f"[meds1.sft] removing {len(stale)} checkpoint(s) of a different run from {work_dir}",
                  file=sys.stderr)
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
    write_json(work_dir / FINGERPRINT_FILE, {"fingerprint": fingerprint})


def step_of(checkpoint: str | Path | None) -> int | None:
    match = _CHECKPOINT.match(Path(checkpoint).name) if checkpoint else None
    return int(match.group(1)) if match else None


def publish_final(trainer, final_dir: str | Path, work_dir: str | Path) -> None:
    """Gather the trainer's current weights once, in bf16, and move model + tokenizer into ``final_dir`` in one rename.

    Every process must call this (FSDP gathers the weights collectively, one tensor at a time); only the main one
    keeps and writes them, as bf16 safetensors with a config saying so.
    """
    import torch

    from meds1.sft.fsdp import gathered_state_dict

    main = trainer.is_world_process_zero()
    staging = Path(work_dir) / "final-staging"
    if main and staging.exists():
        shutil.rmtree(staging)
    weights = gathered_state_dict(trainer.model, dtype=torch.bfloat16, keep=main)
    if main:
        model = trainer.accelerator.unwrap_model(trainer.model)
        model.save_pretrained(staging, state_dict=weights, safe_serialization=True)
        _declare_dtype(staging / "config.json", "bfloat16")
        trainer.processing_class.save_pretrained(staging)
        with atomic_path(final_dir) as tmp:
            shutil.move(str(staging), str(tmp))
    trainer.accelerator.wait_for_everyone()


def _declare_dtype(config_path: Path, dtype: str) -> None:
    """save_pretrained records the dtype of the in-memory (fp32 master) weights; the file holds ``dtype``."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["dtype"] = dtype
    config.pop("torch_dtype", None)
    write_json(config_path, config)


def _readable_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
