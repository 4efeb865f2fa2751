"""The README's main command on a prepared machine: wall time, the per-rule breakdown from Snakemake's benchmark files,
and a second run that must do nothing.

    .venv/bin/python bench/bench_demo.py                 # summarise the existing benchmarks/<stage>/<target>.tsv files
    .venv/bin/python bench/bench_demo.py --run           # DELETES curated/ ckpts/ eval/ results/ logs/ benchmarks/
                                                         # and models/, then times `snakemake --profile profiles/local`
                                                         # twice (--keep-models: keep the prepared model)
    .venv/bin/python bench/bench_demo.py --run --workdir /tmp/copy -- curated/demo-random/stats.json
                                                         # another checkout, and targets passed on to snakemake

"After installation" means the venv exists, as after ``bash .ci/setup.sh``, and ``cache/`` holds the downloaded
wheel of the demo model (``cache/wheels``; the download is part of installing). The prepared model folder
(``models/``, with the GGUF unpacked into ``cache/gguf``) is deleted, so the figure includes the model preparation
rule, then curate -> train -> eval -> plot.
Target: the first run within 8 minutes on 2 quiet cores.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, load_banner, print_table, timed, verdict

OUTPUT_DIRS = ("curated", "ckpts", "eval", "results", "logs", "benchmarks")
MODEL_DIRS = ("models", "cache/gguf")  # the prepared model and the GGUF unpacked from the wheel: the demo's work
TARGET_S = 480.0
NOTHING_TO_DO = "Nothing to be done"


def read_benchmarks(workdir: Path) -> list[dict]:
    """One row per ``benchmarks/<stage>/<name>.tsv`` (Snakemake's ``benchmark:`` files; the last repeat counts)."""
    import pandas as pd

    rows = []
    for path in sorted((workdir / "benchmarks").glob("**/*.tsv")):
        table = pd.read_csv(path, sep="\t", na_values=["-", "NA"])
        if table.empty:
            continue
        last = table.iloc[-1]
        # benchmarks/<stage>/<wildcards>.tsv; a wildcard may hold slashes (models/models/smollm2-135m.tsv)
        stage, *rest = path.relative_to(workdir / "benchmarks").with_suffix("").parts
        rows.append({"stage": stage, "target": "/".join(rest), "s": float(last["s"]),
                     "max_rss_mb": _number(last.get("max_rss")), "cpu_s": _number(last.get("cpu_time"))})
    return rows


def _number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if value != value else value  # NaN -> None


def print_breakdown(rows: list[dict], wall_s: float | None = None) -> None:
    if not rows:
        print("no benchmark files under benchmarks/ (run the workflow, or pass --run)")
        return
    print_table(["stage", "target", "s", "max_rss MB", "cpu s"],
                [(r["stage"], r["target"], r["s"], r["max_rss_mb"], r["cpu_s"]) for r in rows], digits=1)
    per_stage: dict[str, list[dict]] = {}
    for r in rows:
        per_stage.setdefault(r["stage"], []).append(r)
    print("\nper stage (jobs may overlap with cores: all, so the sum can exceed the wall time)")
    print_table(["stage", "jobs", "sum s", "max s", "cpu s"],
                [(stage, len(jobs), sum(j["s"] for j in jobs), max(j["s"] for j in jobs),
                  sum(j["cpu_s"] or 0.0 for j in jobs)) for stage, jobs in per_stage.items()], digits=1)
    total, cpu = sum(r["s"] for r in rows), sum(r["cpu_s"] or 0.0 for r in rows)
    suffix = f"; wall {wall_s:.1f} s" if wall_s is not None else ""
    print(f"sum over rules: {total:.1f} s, {cpu:.1f} CPU s{suffix}")


def clean_outputs(workdir: Path, keep_models: bool = False) -> None:
    """Remove the workflow's outputs and (unless ``keep_models``) the prepared models; never cache/ (installation)."""
    names = OUTPUT_DIRS + (() if keep_models else MODEL_DIRS)
    for name in names:
        path = workdir / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    print(f"removed {', '.join(d + '/' for d in names)} under {workdir}", flush=True)


def run_snakemake(workdir: Path, targets: list[str], log: Path) -> tuple[int, float, str]:
    """(exit code, wall seconds, combined output) of ``snakemake --profile profiles/local [targets]``."""
    snakemake = Path(sys.executable).with_name("snakemake")
    command = [str(snakemake), "--profile", "profiles/local", *targets]
    with log.open("w") as out:
        done, wall = timed(lambda: subprocess.run(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT))
    return done.returncode, wall, log.read_text(errors="replace")


def run_demo(workdir: Path, targets: list[str], keep_models: bool = False) -> None:
    clean_outputs(workdir, keep_models)
    with tempfile.TemporaryDirectory() as tmp:
        code, wall, output = run_snakemake(workdir, targets, Path(tmp) / "first.log")
        if code != 0:
            raise SystemExit(f"snakemake failed (exit {code}) after {wall:.1f} s:\n{output[-4000:]}")
        judged = "targets given: the 8-minute target is for the whole demo" if targets else \
            f"target <= {TARGET_S / 60:.0f} min: {verdict(wall, TARGET_S, higher_is_better=False)}"
        print(f"\nfirst run: {wall:.1f} s = {wall / 60:.1f} min ({judged})\n")
        print_breakdown(read_benchmarks(workdir), wall)
        code2, wall2, output2 = run_snakemake(workdir, targets, Path(tmp) / "second.log")
    idle = code2 == 0 and NOTHING_TO_DO in output2
    print(f"\nsecond run: {wall2:.1f} s, {'nothing to do' if idle else 'RAN JOBS (or failed)'} "
          f"(target: nothing to do): {'met' if idle else 'NOT met'}")
    if not idle:
        print(output2[-3000:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true", help=f"delete {', '.join(OUTPUT_DIRS + MODEL_DIRS)} and run "
                    "the demo twice")
    ap.add_argument("--keep-models", action="store_true", help="keep the prepared model folders (models/)")
    ap.add_argument("--workdir", type=Path, default=REPO, help="the checkout to run in (default: this repo)")
    ap.add_argument("targets", nargs="*", help="snakemake targets (default: rule all)")
    args = ap.parse_args()
    print(load_banner("start"), flush=True)
    workdir = args.workdir.resolve()
    if args.run:
        run_demo(workdir, args.targets, args.keep_models)
    else:
        print_breakdown(read_benchmarks(workdir))
    print(load_banner("end"))


if __name__ == "__main__":
    main()
