"""Wiring shared by the thin scripts in scripts/: logging to the rule's log, and one-line user errors."""
from __future__ import annotations

import json
import logging
import os
import sys
from typing import Callable


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
    guarded(lambda: main(spec), terminal)


def guarded(fn: Callable[[], None], terminal=None) -> None:
    from meds1.errors import MedS1Error

    try:
        fn()
    except MedS1Error as err:
        for stream in {sys.stderr, terminal or sys.stderr}:
            print(f"error: {err}", file=stream, flush=True)
        sys.exit(1)
