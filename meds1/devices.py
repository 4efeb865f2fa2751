"""The GPUs a job has, counted in ONE place, and the one-line stop when a GPU job finds fewer than it planned.

SLURM hands a job its GPUs through ``CUDA_VISIBLE_DEVICES``; CUDA says whether they work. ``count_gpus`` is both
at once, so the training launcher, the eval backends and the checks all see the same number. A job that planned GPUs
(its rule's ``resources: gpu``) and finds fewer stops with one line; it runs on CPU only when the run asked for CPU:
the rule's ``allow_cpu`` resource (``profiles/local`` sets it for the demo) or ``MEDS1_ALLOW_CPU=1`` in the
environment (which SLURM passes into jobs: CI runs GPU rules on CPU-only nodes that way).

Whether bfloat16 pays on this CPU is also decided here (``cpu_bf16_is_fast``), for training and evaluation alike.
"""
from __future__ import annotations

import os
import sys

from meds1.errors import MedS1Error

ALLOW_CPU_ENV = "MEDS1_ALLOW_CPU"
CPU_BF16_ENV = "MEDS1_CPU_BF16"
_TRUE = ("1", "true", "yes", "on")


def count_gpus() -> int:
    """Usable GPUs: those listed in CUDA_VISIBLE_DEVICES (when set) that torch can also open."""
    listed = visible_device_ids()
    if listed is not None and not listed:
        return 0
    working = _torch_gpu_count()
    return min(len(listed), working) if listed is not None else working


def visible_device_ids() -> list[str] | None:
    """The ids in CUDA_VISIBLE_DEVICES (None when unset). CUDA ignores everything from an invalid id such as -1 on."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    ids = []
    for part in (p.strip() for p in value.split(",")):
        if not part or part.startswith("-"):
            break
        ids.append(part)
    return ids


def cpu_allowed(resource=None) -> bool:
    """Did the run ask for CPU? The rule's ``allow_cpu`` resource, else ``MEDS1_ALLOW_CPU`` in the environment."""
    if resource not in (None, "", 0, "0"):
        return str(resource).strip().lower() in _TRUE
    return os.environ.get(ALLOW_CPU_ENV, "").strip().lower() in _TRUE


def require_gpus(planned: int, *, allow_cpu: bool, experiment: str | None = None, job: str = "GPU") -> int:
    """The number of GPUs the job will use: ``planned`` when that many work, 0 (CPU) when none do and CPU was
    asked for; otherwise a one-line MedS1Error naming what was found and how to ask for CPU."""
    planned = int(planned or 0)
    if planned < 1:
        return 0
    found = count_gpus()
    if found >= planned:
        return planned
    if found == 0 and allow_cpu:
        print(f"[meds1] {job} job: no usable GPU ({_what_was_seen()}); running on CPU as this run asked "
              f"(allow_cpu / {ALLOW_CPU_ENV})", file=sys.stderr, flush=True)
        return 0
    if found == 0:
        raise MedS1Error(f"the {job} job planned {planned} GPU(s) but finds none ({_what_was_seen()}); it stops "
                         f"rather than run on CPU: ask for CPU explicitly with --profile profiles/local, "
                         f"resource allow_cpu=1 or {ALLOW_CPU_ENV}=1", experiment=experiment)
    raise MedS1Error(f"the {job} job planned {planned} GPU(s) but finds only {found} ({_what_was_seen()}): give it "
                     f"{planned} GPUs (see python -m meds1.plan) or lower its need in config.json", experiment=experiment)


def _what_was_seen() -> str:
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    shown = "unset" if listed is None else repr(listed)
    return f"CUDA_VISIBLE_DEVICES={shown}, torch sees {_torch_gpu_count()} CUDA device(s)"


def _torch_gpu_count() -> int:
    try:
        import torch  # inside: importing this module must stay cheap (Snakefile parse time)
    except ImportError:
        return 0
    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except RuntimeError:  # a broken driver raises instead of answering
        return 0


def cpu_bf16_is_fast() -> bool:
    """Does this CPU multiply bfloat16 matrices faster than float32? Only with AMX (Intel Sapphire Rapids and later):
    measured (bench/README.md) 5-7x float32 on large products and 2-3x on a decode step's. AVX512-BF16 alone (AMD Zen 4,
    Cooper Lake) was no faster than float32 there, and AVX2-only CPUs emulate bf16 about 10x slower.
    ``MEDS1_CPU_BF16=0`` or ``=1`` overrides the check (benchmarks compare both on one machine)."""
    forced = os.environ.get(CPU_BF16_ENV, "").strip().lower()
    if forced:
        return forced in _TRUE
    return "amx_bf16" in cpu_flags()


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS: no bf16 there then)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse instead of handing them back to the kernel (Linux only; True when
    applied). By default a freed block above its mmap threshold (at most 32 MiB) goes back at once, and the next
    tensor of that size page-faults on every 4 KiB page: on CPU, a 70 MB activation's ``silu`` then took 160 ms
    instead of ~20 (bench/README.md). Memory then stays at its peak, which a training or generation job reaches
    again at every step anyway."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
        trim = libc.mallopt(m_trim_threshold, 1 << 30)
        # glibc before 2.35 refuses a threshold above 32 MiB: then 32 MiB, which still covers most activations
        mmap = libc.mallopt(m_mmap_threshold, 1 << 30) or libc.mallopt(m_mmap_threshold, 32 << 20)
        return bool(trim and mmap)
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False
