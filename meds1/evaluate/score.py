"""Re-score saved generations into metrics.json, without generating anything.

    # same metrics.json as the eval rule wrote (matcher and bootstrap settings taken from the old file):
    python -m meds1.evaluate.score eval/base/generations.jsonl -o eval/base/metrics.json \\
        --extra-from eval/base/metrics.json
    # try the similarity tier, more resamples:
    python -m meds1.evaluate.score eval/base/generations.jsonl -o /tmp/metrics.json --similarity \\
        --bootstrap-resamples 5000 --seed 1

Each line needs ``id, source, question, options, answer_idx, output``; ``run`` defaults to 0 and ``approach`` to the
primary approach (``--primary-approach``, default: OLD's, else the eval stage's default, "reasoning"), so hand-made
or foreign generation files can be scored as they are.

With ``--extra-from OLD`` every field of OLD that compute_metrics does not compute (experiment, config_hash, model,
backend, sampling, dataset, ...) is copied, and the matcher/bootstrap/primary-approach settings default to OLD's. Bad
input prints one line naming the file (and line) and exits with status 2; nothing is written then.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from meds1.data.files import jsonl_objects, read_text
from meds1.errors import MedS1Error
from meds1.evaluate.metrics import COMPUTED_KEYS, check_record, compute_metrics
from meds1.evaluate.settings import DEFAULTS
from meds1.io import write_json

DEFAULT_SEED = 0


def read_generations(path: str | Path, approach: str = DEFAULTS.primary_approach) -> list[dict]:
    """generations.jsonl lines, each checked (``run`` 0 and ``approach`` filled in where missing); a bad line is a
    MedS1Error naming the file and line number."""
    path = Path(path)
    records = []
    for number, record in jsonl_objects(path):
        if isinstance(record, dict):
            record = {"run": 0, "approach": approach, **record}
        check_record(record, where=f"line {number}", file=path)
        records.append(record)
    if not records:
        raise MedS1Error("no generations in the file", file=path)
    return records


def rescore(generations: str | Path, output: str | Path, *, similarity: bool | None = None,
            bootstrap_resamples: int | None = None, seed: int | None = None, primary_approach: str | None = None,
            extra_from: str | Path | None = None) -> dict:
    """Recompute metrics from ``generations`` and write them to ``output``; unset settings come from ``extra_from``."""
    old = _read_json_object(extra_from) if extra_from else {}
    primary = _first_set(primary_approach, old.get("primary_approach"), DEFAULTS.primary_approach)
    records = read_generations(generations, approach=primary)
    extra = {k: v for k, v in old.items() if k not in COMPUTED_KEYS}  # what compute_metrics cannot know
    old_boot = (old.get("ci") or {}).get("bootstrap") or {}
    metrics = compute_metrics(
        records,
        similarity=_first_set(similarity, (old.get("matcher") or {}).get("similarity"), False),
        bootstrap_resamples=_first_set(bootstrap_resamples, old_boot.get("resamples"), DEFAULTS.bootstrap_resamples),
        seed=_first_set(seed, old_boot.get("seed"), DEFAULT_SEED),
        primary_approach=primary,
        extra=extra,
    )
    write_json(output, metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        rescore(args.generations, args.output, similarity=args.similarity,
                bootstrap_resamples=args.bootstrap_resamples, seed=args.seed,
                primary_approach=args.primary_approach, extra_from=args.extra_from)
    except MedS1Error as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m meds1.evaluate.score", description=__doc__.split("\n\n")[0],
                                     epilog="Lines: id, source, question, options, answer_idx, output; run (default "
                                            "0), approach (default: the primary approach).")
    parser.add_argument("generations", help="eval/<exp>/generations.jsonl")
    parser.add_argument("-o", "--output", required=True, help="metrics.json to write")
    parser.add_argument("--similarity", action=argparse.BooleanOptionalAction, default=None,
                        help="use the similarity tier (default: as in --extra-from, else off)")
    parser.add_argument("--bootstrap-resamples", type=int, default=None,
                        help=f"bootstrap resamples (default: as in --extra-from, else {DEFAULTS.bootstrap_resamples})")
    parser.add_argument("--seed", type=int, default=None,
                        help=f"bootstrap seed (default: as in --extra-from, else {DEFAULT_SEED})")
    parser.add_argument("--primary-approach", default=None, metavar="APPROACH",
                        help="the headline approach, and the approach of lines that name none (default: as in "
                             f"--extra-from, else '{DEFAULTS.primary_approach}', the eval stage's default)")
    parser.add_argument("--extra-from", default=None, metavar="OLD_METRICS.json",
                        help="copy experiment, model, backend, sampling, config_hash, ... from this metrics.json")
    return parser


def _read_json_object(path: str | Path) -> dict:
    path = Path(path)
    try:
        value = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise MedS1Error(f"line {err.lineno}: invalid JSON ({err.msg})", file=path) from None
    if not isinstance(value, dict):
        raise MedS1Error("expected a JSON object (a metrics.json)", file=path)
    return value


def _first_set(*values):
    return next(v for v in values if v is not None)


if __name__ == "__main__":
    sys.exit(main())
