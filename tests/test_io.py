"""Crash-safe writes: a write replaces its target whole; what a killed attempt of a rule left behind is swept when
the rule runs again (and nothing else: shared caches may be mid-write by another job)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from meds1.io import atomic_path, sweep_leftovers, write_json


def test_a_killed_write_leaves_the_old_file_and_the_next_write_sweeps_its_temp(tmp_path):
    target = tmp_path / "dataset"
    write_json(target / "state.json", {"old": True})
    script = textwrap.dedent(f"""
        import time
        from meds1.io import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.mkdir()
            (tmp / "big.bin").write_bytes(b"x" * 1_000_000)
            print("writing", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    leftovers = list(tmp_path.glob(".dataset.tmp-*"))
    assert len(leftovers) == 1 and (target / "state.json").exists()  # the old output is intact
    other = tmp_path / ".cache.json.tmp-1-abc"  # another output's temp (e.g. a shared cache being written): kept
    other.write_text("{}")
    assert sweep_leftovers(target) == leftovers  # the next run of the rule sweeps its own outputs (meds1.cli.run_rule)
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "state.json").write_text("{}")
    assert list(tmp_path.glob(".dataset.tmp-*")) == [] and other.exists()
    assert (target / "state.json").read_text() == "{}"


def test_a_failed_write_removes_its_temp_and_keeps_the_target(tmp_path):
    target = tmp_path / "stats.json"
    write_json(target, {"n": 1})
    try:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert list(tmp_path.glob(".stats.json.tmp-*")) == [] and '"n": 1' in target.read_text()
