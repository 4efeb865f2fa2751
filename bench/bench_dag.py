"""DAG construction time: `snakemake -n` over generated registries ("same as" chains, seed-system vocabulary).

    .venv/bin/python bench/bench_dag.py            # 75 and 2,000 experiments, 3 runs each, prints medians
    .venv/bin/python bench/bench_dag.py 75 --runs 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from registry_gen import paper_config, registry  # noqa: E402
from workflow import make_workdir, snakemake  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def time_dry_run(workdir: Path, *targets: str) -> float:
    t0 = time.perf_counter()
    out = snakemake(workdir, *targets, "-n", "-q")
    assert out.returncode == 0, out.stderr[-2000:]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sizes", nargs="*", type=int, default=[75, 2000])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    cfg = paper_config(str(DATA / "huatuogpt-o1_demo_data.json"), str(DATA / "med-s1_eval_data_samples.json"))
    print(f"{'experiments':>11} {'jobs':>6} {'dry-run median s':>17} {'runs':>30} {'one target s':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            wd = make_workdir(Path(tmp) / f"r{n}", results=registry(n), config=cfg)
            runs = [time_dry_run(wd) for _ in range(args.runs)]
            one = time_dry_run(wd, f"eval/e{n - 1:04d}/metrics.json")
            print(f"{n:>11} {3 * (n - 1) + 3:>6} {statistics.median(runs):>17.2f} {str([round(r, 2) for r in runs]):>30} {one:>13.2f}")


if __name__ == "__main__":
    main()
