"""Honest accuracy for a set of generations: per source, with Wilson and bootstrap CIs, repetitions and approaches.

``compute_metrics(records)`` turns generations.jsonl lines into the metrics.json dict of docs/internals.md. Every
answer goes through ``meds1.matcher.match``; an unparsed or ambiguous answer is counted wrong and reported, never
guessed. The headline numbers (``sources``, ``overall``, ``per_item``) are those of the primary approach; with test-time
scaling every approach has its block in ``test_time_scaling``. ``seed_compatible`` scores the same answers the seed
system's way (``meds1.evaluate.seed_scoring``) so a study can be put beside the seed's published tables.
Items are ordered by id before any resampling, so the result depends on the generations, not on their order in the
file, and the same input always gives byte-identical JSON (write it with ``meds1.io.write_json``).

    from meds1.evaluate.metrics import compute_metrics
    metrics = compute_metrics(records, bootstrap_resamples=1000, seed=0, extra={"experiment": "base", ...})
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from scipy import stats

from meds1.errors import MedS1Error
from meds1.evaluate.seed_scoring import RULE as SEED_RULE, SeedMatch, seed_match, seed_source_accuracy
from meds1.evaluate.settings import DEFAULTS
from meds1.matcher import MATCHER_VERSION, match, matcher_rules

CI_LEVEL = 0.95
REQUIRED_KEYS = ("id", "source", "question", "options", "answer_idx", "output", "run", "approach")
COMPUTED_KEYS = ("matcher", "ci", "sources", "overall", "per_item", "item_sources", "primary_approach",
                 "test_time_scaling", "seed_compatible")


@dataclass(frozen=True)
class ScoredRun:
    id: str
    source: str
    run: int
    letter: str | None
    correct: int
    n_reasoning_tokens: float | None
    ambiguous: bool = False
    seed: SeedMatch | None = None   # the seed-compatible reading of the same output
    answer_idx: str = ""


def compute_metrics(records: list[dict], *, similarity: bool = False, bootstrap_resamples: int = 1000,
                    seed: int = 0, primary_approach: str | None = None, extra: dict | None = None) -> dict:
    """The metrics.json dict for ``records`` (generations.jsonl lines), ``extra`` merged into the top level.

    ``primary_approach``: whose accuracy is the headline (default: the eval stage's, "reasoning"); a set of
    generations with one approach has that one."""
    if not records:
        raise MedS1Error("no generations to score")
    for index, record in enumerate(records):
        check_record(record, where=f"generation {index}")
    boot = _Bootstrap(bootstrap_resamples, seed)
    approaches = _scored_by_approach(records, similarity)
    main = pick_primary(list(approaches), primary_approach or DEFAULTS.primary_approach)
    items = approaches[main]
    result = {
        "matcher": {"version": MATCHER_VERSION, "rules": matcher_rules(similarity), "similarity": similarity},
        "ci": {"level": CI_LEVEL, "wilson": True,
               "bootstrap": {"method": "percentile", "resamples": bootstrap_resamples, "seed": seed}},
        "primary_approach": main,
        "sources": {src: source_metrics(runs_by_id, boot) for src, runs_by_id in items.items()},
        "overall": overall_metrics(items, boot),
        "per_item": {item_id: runs[0].correct for by_id in items.values() for item_id, runs in by_id.items()},
        "item_sources": {item_id: src for src, by_id in items.items() for item_id in by_id},
        "test_time_scaling": _test_time_scaling(approaches, boot) if len(approaches) > 1 else None,
        "seed_compatible": seed_compatible(items),
    }
    return _canonical(_merge_extra(result, extra or {}))


def pick_primary(approaches: list[str], wanted: str | None) -> str:
    """The headline approach: ``wanted`` when the generations have it, the only one when there is one."""
    if wanted in approaches:
        return wanted
    if len(approaches) == 1:
        return approaches[0]
    raise MedS1Error(f"primary approach '{wanted}' is not among the generations' approaches ({', '.join(approaches)})",
                     key="primary_approach", choices=approaches, value=wanted)


def seed_compatible(items: dict[str, dict[str, list[ScoredRun]]]) -> dict:
    """The seed's numbers for the same answers (run 0): per source max(first, last) letter accuracy, Overall their
    mean. Not comparable with our accuracy: the seed's scorer always guesses."""
    sources = {src: seed_source_accuracy([runs[0].seed for runs in by_id.values()],
                                         [runs[0].answer_idx for runs in by_id.values()])
               for src, by_id in items.items()}
    return {"rule": SEED_RULE, "sources": sources,
            "accuracy": float(np.mean([s["accuracy"] for s in sources.values()]))}


def check_record(record: Any, *, where: str, file=None) -> None:
    """Raise a one-line MedS1Error if ``record`` is not a usable generations.jsonl line."""
    if not isinstance(record, dict):
        raise MedS1Error(f"{where}: expected a JSON object, got {type(record).__name__}", file=file)
    for key in REQUIRED_KEYS:
        if key not in record:
            raise MedS1Error(f"{where}: missing key '{key}'", file=file)
    if not isinstance(record["options"], dict) or not record["options"]:
        raise MedS1Error(f"{where}: 'options' must be a non-empty object of letter -> text", file=file)
    if not isinstance(record["output"], str):
        raise MedS1Error(f"{where}: 'output' must be a string", file=file)
    if not isinstance(record["run"], int) or isinstance(record["run"], bool) or record["run"] < 0:
        raise MedS1Error(f"{where}: 'run' must be a non-negative integer", file=file)


def source_metrics(runs_by_id: dict[str, list[ScoredRun]], boot: "_Bootstrap") -> dict:
    """One source's block: first-run accuracy with CIs, parse counts, and repetition summaries when runs > 1."""
    first = np.array([runs[0].correct for runs in runs_by_id.values()], dtype=float)
    parsed = sum(runs[0].letter is not None for runs in runs_by_id.values())
    n_runs = max(len(runs) for runs in runs_by_id.values())
    block = {"n": len(first), "correct": int(first.sum()), "parsed": parsed, "unparsed": len(first) - parsed,
             "ambiguous": sum(runs[0].ambiguous for runs in runs_by_id.values()),
             "runs": n_runs, "majority": None, "mean_over_runs": None}
    block.update(_accuracy_with_cis(first, boot))
    if n_runs > 1:
        votes = [_majority_correct(runs) for runs in runs_by_id.values()]
        block["majority"] = _accuracy_with_cis(np.array(votes, dtype=float), boot)
        per_item_mean = np.array([np.mean([r.correct for r in runs]) for runs in runs_by_id.values()])
        block["mean_over_runs"] = {"accuracy": float(per_item_mean.mean()), "ci": boot.interval([per_item_mean])}
    return block


def overall_metrics(items: dict[str, dict[str, list[ScoredRun]]], boot: "_Bootstrap") -> dict:
    """Unweighted mean of per-source first-run accuracies; CI from a bootstrap stratified by source."""
    strata = [np.array([runs[0].correct for runs in by_id.values()], dtype=float) for by_id in items.values()]
    return {"accuracy": float(np.mean([s.mean() for s in strata])), "ci": boot.interval(strata),
            "n": sum(len(s) for s in strata), "n_sources": len(strata)}


def wilson_interval(correct: int, n: int, level: float = CI_LEVEL) -> list[float]:
    """Wilson score interval for ``correct`` successes out of ``n`` (no continuity correction)."""
    ci = stats.binomtest(int(correct), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return [float(ci.low), float(ci.high)]


class _Bootstrap:
    """Seeded percentile bootstrap of the mean of per-stratum means (one stratum = a plain bootstrap)."""

    def __init__(self, resamples: int, seed: int, level: float = CI_LEVEL):
        if int(resamples) < 1:
            raise MedS1Error("bootstrap resamples must be at least 1", key="resamples", value=resamples)
        self.resamples, self.seed, self.level = int(resamples), int(seed), level

    def interval(self, strata: list[np.ndarray]) -> list[float]:
        # A stratum of one item resamples to itself: scipy refuses it, so it enters the statistic as a constant.
        varying = [s for s in strata if len(s) > 1]
        fixed = sum(float(s.mean()) for s in strata if len(s) == 1)
        if not varying:
            point = fixed / len(strata)
            return [point, point]

        def mean_of_means(*samples, axis=-1):
            return (sum(s.mean(axis=axis) for s in samples) + fixed) / len(strata)

        result = stats.bootstrap(tuple(varying), mean_of_means, n_resamples=self.resamples, method="percentile",
                                 confidence_level=self.level, paired=False, vectorized=True,
                                 rng=np.random.default_rng(self.seed))
        return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def _accuracy_with_cis(correct: np.ndarray, boot: _Bootstrap) -> dict:
    return {"accuracy": float(correct.mean()), "wilson": wilson_interval(int(correct.sum()), len(correct)),
            "bootstrap": boot.interval([correct])}


def _majority_correct(runs: list[ScoredRun]) -> int:
    """Majority vote of the parsed letters; a tie goes to the tied letter seen in the earliest run."""
    letters = [r.letter for r in runs if r.letter is not None]
    if not letters:
        return 0
    counts = Counter(letters)
    top = max(counts.values())
    winner = next(x for x in letters if counts[x] == top)
    return int(any(r.letter == winner and r.correct for r in runs))


def _scored_by_approach(records: list[dict], similarity: bool) -> dict[str, dict[str, dict[str, list[ScoredRun]]]]:
    """approach (first-seen order) -> source (sorted) -> id (sorted) -> runs (sorted by run)."""
    grouped: dict[str, dict[str, dict[str, list[ScoredRun]]]] = {}
    seen: dict[tuple[str, int, str], int] = {}
    source_of: dict[str, str] = {}
    for index, record in enumerate(records):
        item_id, approach, run = str(record["id"]), str(record["approach"]), record["run"]
        if (item_id, run, approach) in seen:
            raise MedS1Error(f"generations {seen[item_id, run, approach]} and {index} are both id '{item_id}' "
                             f"run {run} approach '{approach}'", key="id")
        seen[item_id, run, approach] = index
        if source_of.setdefault(item_id, record["source"]) != record["source"]:
            raise MedS1Error(f"generation {index}: id '{item_id}' appears in sources '{source_of[item_id]}' and "
                             f"'{record['source']}'", key="id")
        scored = _score(record, similarity)
        grouped.setdefault(approach, {}).setdefault(scored.source, {}).setdefault(item_id, []).append(scored)
    return {a: _sorted_items(by_source) for a, by_source in grouped.items()}


def _score(record: dict, similarity: bool) -> ScoredRun:
    found = match(record["output"], record["options"], similarity=similarity)
    tokens = record.get("n_reasoning_tokens")
    return ScoredRun(id=str(record["id"]), source=str(record["source"]), run=record["run"], letter=found.letter,
                     correct=int(found.letter is not None and found.letter == record["answer_idx"]),
                     n_reasoning_tokens=float(tokens) if isinstance(tokens, (int, float)) else None,
                     ambiguous=found.ambiguous, answer_idx=str(record["answer_idx"]),
                     seed=seed_match(record["output"], record["options"]))


def _sorted_items(by_source: dict) -> dict:
    return {src: {i: sorted(by_source[src][i], key=lambda r: r.run) for i in sorted(by_source[src])}
            for src in sorted(by_source)}


def _test_time_scaling(approaches: dict, boot: _Bootstrap) -> dict:
    """Each approach: overall accuracy and CI, mean reasoning tokens, per-source first-run accuracy."""
    blocks = {}
    for approach, items in approaches.items():
        overall = overall_metrics(items, boot)
        tokens = [r.n_reasoning_tokens for r in _all_runs(items) if r.n_reasoning_tokens is not None]
        blocks[approach] = {
            "accuracy": overall["accuracy"], "ci": overall["ci"],
            "mean_reasoning_tokens": float(np.mean(tokens)) if tokens else None,
            "sources": {src: float(np.mean([runs[0].correct for runs in by_id.values()]))
                        for src, by_id in items.items()},
        }
    return blocks


def _all_runs(items: dict) -> Iterable[ScoredRun]:
    return (r for by_id in items.values() for runs in by_id.values() for r in runs)


def _merge_extra(result: dict, extra: dict) -> dict:
    clash = sorted(set(extra) & set(result))
    if clash:
        raise MedS1Error("would overwrite a computed metric", key=clash[0])
    return {**result, **extra}


def _canonical(value: Any) -> Any:
    """Sorted keys and plain Python numbers all the way down, so equal metrics serialise to identical bytes."""
    if isinstance(value, dict):
        return {str(k): _canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
