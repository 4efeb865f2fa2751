"""Resumable evaluation: generations for every (item, run, approach), then metrics.

    metrics = evaluate(spec, "ckpts/exp/final", "eval/exp/generations.jsonl", "eval/exp/metrics.json",
                       work_dir="eval/exp/work")

Each finished job is appended at once to ``work_dir/generations.partial.jsonl``; a rerun after a crash or a kill -9
skips every job already there and generates only the rest. The partial file is thrown away when something that
changes the generated text (model, prompts, sampling, backend, dataset) differs from the run that wrote it.

Runs: an item of source S is answered ``eval.repetitions[S] * eval.repetition_multiplier`` times (default 1). Run 0
is always greedy; later runs sample at ``sampling.temperature`` (0.6 when that is 0) with a per-run seed.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from meds1.evaluate.backends import GenerationParams, make_backend, resolve_backend_name
from meds1.data.eval_items import load_eval_items, select_items
from meds1.evaluate.prompts import build_prompt
from meds1.evaluate.tts import (DEFAULT_APPROACHES, ApproachContext, answer_marker_for, parse_approach, run_approach,
                                trace_format)
from meds1.errors import MedS1Error
from meds1.io import append_jsonl, read_json, read_jsonl, write_json, write_text

log = logging.getLogger(__name__)

DEFAULT_SAMPLING = {"max_new_tokens": 2048, "temperature": 0.0, "top_p": 0.9, "batch_size": 8}
REPEAT_TEMPERATURE = 0.6   # runs after the first sample at this temperature unless the spec gives one
PARTIAL_NAME = "generations.partial.jsonl"
RECORD_FIELDS = ("id", "source", "question", "options", "answer_idx")


@dataclass(frozen=True)
class Job:
    item: dict
    run: int
    approach: str

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.item["id"], self.run, self.approach)


def _key(record: dict) -> tuple[str, int, str]:
    return (str(record["id"]), int(record["run"]), str(record["approach"]))


def effective_sampling(spec: dict) -> dict:
    return {**DEFAULT_SAMPLING, **{k: v for k, v in (spec.get("sampling") or {}).items() if v is not None}}


def approaches_for(spec: dict) -> list[str]:
    if not spec.get("test_time_scaling"):
        return ["default"]
    approaches = list(spec.get("reasoning_approaches") or DEFAULT_APPROACHES)
    for name in approaches:
        parse_approach(name)  # fail before loading the model, not halfway through
    return approaches


def build_jobs(items: list[dict], spec: dict) -> list[Job]:
    """item x run x approach, runs per source from ``eval.repetitions`` times ``eval.repetition_multiplier``."""
    eval_cfg = spec.get("eval") or {}
    repetitions, multiplier = eval_cfg.get("repetitions") or {}, int(eval_cfg.get("repetition_multiplier") or 1)
    approaches = approaches_for(spec)
    return [Job(item, run, approach)
            for item in items
            for run in range(max(1, int(repetitions.get(item["source"], 1)) * multiplier))
            for approach in approaches]


def generation_params(sampling: dict, run: int, seed: int) -> GenerationParams:
    repeat = float(sampling.get("repeat_temperature") or REPEAT_TEMPERATURE)
    temperature = 0.0 if run == 0 else (float(sampling["temperature"]) or repeat)
    return GenerationParams(max_new_tokens=int(sampling["max_new_tokens"]), temperature=temperature,
                            top_p=float(sampling["top_p"]), seed=seed + 1000 * run)


# ---------------------------------------------------------------------------------------------------------- resume
def generation_fingerprint(spec: dict, model_path: str, backend_name: str) -> str:
    """A hash of everything that changes the generated text (not of limit/eval_sample/repetitions: jobs are keyed)."""
    model = spec.get("model") or {}
    sampling = {k: v for k, v in effective_sampling(spec).items() if k != "batch_size"}
    relevant = {"model_path": str(model_path), "system_prompt": system_prompt_for(spec),
                "chat_template": model.get("chat_template"), "prompting": spec.get("prompting"),
                "format": spec.get("format"), "sampling": sampling, "seed": spec.get("seed", 0),
                "backend": backend_name, "dataset": spec.get("dataset")}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_partial(work_dir: Path, fingerprint: str) -> dict[tuple, dict]:
    """Finished generations from an earlier attempt with the same fingerprint; a torn last line is dropped."""
    partial, meta = work_dir / PARTIAL_NAME, work_dir / (PARTIAL_NAME + ".meta.json")
    previous = read_json(meta).get("fingerprint") if meta.exists() else None
    if previous != fingerprint:
        if partial.exists():
            log.warning("discarding %s: written by a run with different generation settings", partial)
            partial.unlink()
        write_json(meta, {"fingerprint": fingerprint})
        return {}
    records = read_jsonl(partial, tolerate_torn_tail=True)
    # Rewrite without the torn tail, or the next append would glue a new record onto the broken line.
    write_text(partial, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return {_key(r): r for r in records}


# ------------------------------------------------------------------------------------------------------ generation
def make_record(job: Job, answer) -> dict:
    return {**{f: job.item[f] for f in RECORD_FIELDS}, "output": answer.output, "run": job.run,
            "approach": job.approach, "n_output_tokens": answer.n_output_tokens,
            "n_reasoning_tokens": answer.n_reasoning_tokens}


def _groups(jobs: list[Job]) -> dict[tuple[int, str], list[Job]]:
    """Jobs sharing a run and an approach share sampling settings and can be generated together."""
    groups: dict[tuple[int, str], list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.run, job.approach), []).append(job)
    return groups


def system_prompt_for(spec: dict) -> str | None:
    """The model entry's system prompt, else the one its trace format needs (e.g. nemotron's thinking switch)."""
    return (spec.get("model") or {}).get("system_prompt") or getattr(trace_format(spec.get("format")),
                                                                     "system_prompt", None)


def generate_missing(todo: list[Job], backend, spec: dict, partial: Path, done: dict) -> None:
    sampling, seed = effective_sampling(spec), int(spec.get("seed", 0))
    marker, chunk = answer_marker_for(spec.get("format")), max(1, int(sampling["batch_size"]))
    system_prompt = system_prompt_for(spec)
    with tqdm(total=len(todo), desc="eval generations", mininterval=5, disable=None) as bar:
        for (run, approach), jobs in _groups(todo).items():
            for start in range(0, len(jobs), chunk):
                part = jobs[start:start + chunk]
                params = generation_params(sampling, run, seed + start)
                ctx = ApproachContext(backend, params, answer_marker=marker, seed=seed)
                prompts = [build_prompt(j.item, backend.tokenizer, prompting=spec.get("prompting"),
                                        system_prompt=system_prompt) for j in part]
                answers = run_approach(approach, ctx, prompts, keys=[f"{j.item['id']}:{j.run}" for j in part])
                for job, answer in zip(part, answers):
                    record = make_record(job, answer)
                    append_jsonl(partial, record)
                    done[job.key] = record
                bar.update(len(part))


# ---------------------------------------------------------------------------------------------------------- outputs
def write_generations(path, records: list[dict]) -> None:
    ordered = sorted(records, key=lambda r: (r["source"], r["id"], r["run"], r["approach"]))
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))


def metrics_extra(spec: dict, model_path: str, backend_name: str) -> dict:
    dataset = spec.get("dataset") or {}
    eff = effective_sampling(spec)
    sampling = {**eff, "repeat_temperature": float(eff["temperature"]) or float(eff.get("repeat_temperature")
                                                                                 or REPEAT_TEMPERATURE)}
    return {"experiment": spec.get("experiment"), "config_hash": spec.get("config_hash"), "config": spec.get("config"),
            "model": {"key": (spec.get("model") or {}).get("key"), "path": str(model_path)},
            "backend": backend_name, "sampling": sampling,
            "dataset": dataset.get("key") or dataset.get("file_path") or dataset.get("hf_path")}


def compute_and_write_metrics(records: list[dict], spec: dict, model_path: str, backend_name: str, metrics_path):
    from meds1.evaluate.metrics import compute_metrics  # the scoring side; imported late so generation never waits

    boot = spec.get("bootstrap") or {}
    metrics = compute_metrics(records, similarity=bool((spec.get("matcher") or {}).get("similarity", False)),
                              bootstrap_resamples=int(boot.get("resamples", 1000)),
                              seed=int(boot.get("seed", spec.get("seed", 0))),
                              extra=metrics_extra(spec, model_path, backend_name))
    write_json(metrics_path, metrics)
    return metrics


def evaluate(spec: dict, model_path: str, generations_path, metrics_path, *, work_dir, base_dir=".",
             backend=None) -> dict:
    """Generate what is missing, write ``generations.jsonl`` and ``metrics.json``, return the metrics.

    ``backend``: an already built backend (tests, or a caller evaluating several checkpoints); default: built from
    ``spec["backend"]`` (auto|hf|vllm) for ``model_path``.
    """
    try:
        return _evaluate(spec, model_path, generations_path, metrics_path, work_dir=work_dir, base_dir=base_dir,
                         backend=backend)
    except MedS1Error as err:  # bad data or settings: say which experiment they belong to
        err.experiment = err.experiment or spec.get("experiment")
        raise


def _evaluate(spec: dict, model_path: str, generations_path, metrics_path, *, work_dir, base_dir, backend) -> dict:
    seed = int(spec.get("seed", 0))
    items = select_items(load_eval_items(spec["dataset"], base_dir=base_dir, seed=seed),
                         eval_sample=spec.get("eval_sample"), limit=spec.get("limit"), seed=seed,
                         exclude_ids=spec.get("exclude_ids") or ())
    jobs = build_jobs(items, spec)
    backend_name = backend.name if backend is not None else resolve_backend_name(spec.get("backend"))
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    done = load_partial(work_dir, generation_fingerprint(spec, model_path, backend_name))
    todo = [job for job in jobs if job.key not in done]
    log.info("eval %s: %d jobs, %d already generated, %d to go", spec.get("experiment"), len(jobs),
             len(jobs) - len(todo), len(todo))
    if todo and backend is None:  # a finished run that only lacks metrics never loads the model again
        backend = make_backend(backend_name, model_path, model=spec.get("model"), seed=seed,
                               sampling=effective_sampling(spec), tensor_parallel_size=spec.get("tensor_parallel_size"))
    generate_missing(todo, backend, spec, work_dir / PARTIAL_NAME, done)
    records = [done[job.key] for job in jobs]
    write_generations(generations_path, records)
    return compute_and_write_metrics(records, spec, model_path, backend_name, metrics_path)
