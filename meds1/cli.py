"""Wiring shared by the thin scripts in scripts/: logging to the rule's log, and one-line user errors."""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from meds1.io import sweep_leftovers


def run_rule(snakemake, main: Callable[[dict], None]) -> None:
    """Send stdout/stderr (also of C code and subprocesses) to the rule's log and run ``main(spec)``.

    A MedS1Error (bad input) prints one line to the terminal and the log and exits 1: no traceback.
    """
    terminal = os.fdopen(os.dup(2), "w", buffering=1)
    if snakemake.log:
        log_fd = os.open(snakemake.log[0], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s", force=True)
    spec = json.loads(snakemake.params.spec) if hasattr(snakemake.params, "spec") else {}
    limit_threads(int(getattr(snakemake, "threads", 0) or 0))
    for output in snakemake.output:  # what a killed attempt of this job left half-written
        for leftover in sweep_leftovers(Path(output)):
            print(f"removed {leftover} (left by an interrupted attempt)", file=sys.stderr)

    def run():
        from meds1.plugins import load_extra

        load_extra(spec.get("plugins"))
        main(spec)
    guarded(run, terminal)


def limit_threads(n: int) -> None:
    """Give torch, BLAS and tokenizers exactly the rule's ``threads`` (their defaults oversubscribe a shared node:
    7-9x slower in bench/). Environment variables reach subprocesses (accelerate workers) too."""
    if n < 1:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if n > 1 else "false"
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(n)


def guarded(fn: Callable[[], None], terminal=None) -> None:
    from meds1.errors import MedS1Error

    try:
        fn()
    except (MedS1Error, PermissionError, IsADirectoryError, NotADirectoryError) as err:
        line = err if isinstance(err, MedS1Error) else f"{err.filename}: {err.strerror}"
        for stream in {sys.stderr, terminal or sys.stderr}:
            print(f"error: {line}", file=stream, flush=True)
        sys.exit(1)


def check_settings_file(path: str) -> None:
    """Parse a YAML settings file before Snakemake does, so a mistake is one line naming file, line and column."""
    from meds1.errors import MedS1Error
    from meds1.registry.workflow import load_yaml_file

    try:
        load_yaml_file(path)
    except MedS1Error as err:
        sys.exit(f"error: {err}")


def run_command(main: Callable[[], int | None]) -> None:
    """The body of ``if __name__ == "__main__":`` for ``python -m meds1.<tool>``: exit with main's status; a
    MedS1Error (bad input) is one line on stderr and exit status 1, never a traceback."""
    from meds1.errors import MedS1Error

    try:
        sys.exit(main())
    except MedS1Error as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
