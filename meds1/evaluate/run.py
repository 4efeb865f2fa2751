"""Resumable evaluation: generations for every (item, run, approach), then metrics.

    metrics = evaluate(spec, "ckpts/exp/final", "eval/exp/generations.jsonl", "eval/exp/metrics.json",
                       work_dir="eval/exp/work")

The backend gets ``prompts_per_call`` prompts per generate call (vLLM: all of a run up to 4096; hf: one batch) and
every answer of a call is appended at once to ``work_dir/generations.partial.jsonl``; a rerun after a crash or a
kill -9 skips every job already there. The partial file is thrown away when something that changes the generated text
(model, prompts, sampling, test-time scaling, backend, dataset) differs from the run that wrote it.

Runs: an item of source S is answered ``eval.repetitions[S] * eval.repetition_multiplier`` times (default 1). Run 0
is greedy unless ``temperature`` > 0; later runs sample at ``temperature`` (``repeat_temperature`` when that is 0).
Each job's sampling seed comes from (seed, item id, run, approach), never from its position in a batch, so a resumed
run writes exactly what an uninterrupted one would: bit for bit in float32 (CPU, or the hf backend's ``dtype:
float32`` on a GPU). In bfloat16 the batch a prompt shares changes the rounding of its logits, so a few answers can
differ (on an H200: 41 of 42 sampled answers identical after a resume, 12 of 14 greedy answers batched vs alone).
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from meds1.data.eval_items import load_eval_items, select_items
from meds1.errors import MedS1Error
from meds1.evaluate.backends import BackendContext, GenerationParams, encode_prompt, make_backend, resolve_backend_name
from meds1.evaluate.prompts import build_prompt
from meds1.evaluate.settings import DEFAULTS
from meds1.evaluate.tts import ApproachContext, Question, markers_for, parse_approach, run_approach
from meds1.io import append_jsonl, read_json, read_jsonl, write_json, write_text

log = logging.getLogger(__name__)

PARTIAL_NAME = "generations.partial.jsonl"
BACKEND_NAME = "backend.json"  # what the backend says it ran with (dtype, engine, threads), for metrics.json
RECORD_FIELDS = ("id", "source", "question", "options", "answer_idx")
PLAIN = "default"   # the one approach of a run without test-time scaling
CONTEXT_MARGIN = 64  # tokens for prefills, cues and forced markers when sizing an engine's context


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
    """The spec's sampling block over the EvalSettings defaults (one home for each default)."""
    defaults = {k: getattr(DEFAULTS, k) for k in ("max_new_tokens", "temperature", "repeat_temperature", "top_p",
                                                   "batch_size", "answer_max_tokens")}
    return {**defaults, **{k: v for k, v in (spec.get("sampling") or {}).items() if v is not None}}


def approaches_for(spec: dict) -> list[str]:
    if not spec.get("test_time_scaling"):
        return [PLAIN]
    approaches = list(spec.get("reasoning_approaches") or [DEFAULTS.primary_approach])
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


def generation_params(sampling: dict, run: int) -> GenerationParams:
    temperature = float(sampling["temperature"])
    if run > 0 and temperature == 0:
        temperature = float(sampling["repeat_temperature"])  # repeating a greedy answer adds nothing
    return GenerationParams(max_new_tokens=int(sampling["max_new_tokens"]), temperature=temperature,
                            top_p=float(sampling["top_p"]))


def job_seed(seed: int, job: Job) -> int:
    """The sampling seed of one job: fixed by what the job is, not by when or with whom it is generated."""
    text = f"{seed}:{job.item['id']}:{job.run}:{job.approach}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


# ---------------------------------------------------------------------------------------------------------- resume
def generation_fingerprint(spec: dict, model_path: str, backend_name: str) -> str:
    """A hash of everything that changes the generated text (not of limit/eval_sample/repetitions: jobs are keyed)."""
    model = spec.get("model") or {}
    sampling = {k: v for k, v in effective_sampling(spec).items() if k != "batch_size"}
    relevant = {"model_path": str(model_path), "system_prompt": system_prompt_for(spec),
                "chat_template": model.get("chat_template"), "prompting": spec.get("prompting"),
                "format": spec.get("format"), "sampling": sampling, "seed": spec.get("seed", 0),
                "backend": backend_name, "dataset": spec.get("dataset"), "seeding": "per-job-v2"}
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
    from meds1.traces.formats import get_format

    own = (spec.get("model") or {}).get("system_prompt")
    return own or (get_format(spec["format"], key="format").system_prompt if spec.get("format") else None)


def encode_prompts(items: list[dict], tokenizer, spec: dict) -> dict[str, tuple[int, ...]]:
    """item id -> the token ids of its rendered chat prompt (ending with the generation prompt)."""
    system_prompt = system_prompt_for(spec)
    return {i["id"]: tuple(encode_prompt(tokenizer, build_prompt(i, tokenizer, prompting=spec.get("prompting"),
                                                                 system_prompt=system_prompt))) for i in items}


def context_tokens(prompts: dict, spec: dict) -> int:
    """Longest prompt + the most tokens one job may add: what an engine's context must hold."""
    sampling = effective_sampling(spec)
    budgets = [parse_approach(a)[1] or int(sampling["max_new_tokens"]) for a in approaches_for(spec)]
    answer = int(sampling["answer_max_tokens"]) if spec.get("test_time_scaling") else 0
    return max(map(len, prompts.values()), default=0) + max(budgets) + answer + CONTEXT_MARGIN


def generate_missing(todo: list[Job], backend, spec: dict, prompts: dict, partial: Path, done: dict) -> None:
    sampling, seed = effective_sampling(spec), int(spec.get("seed", 0))
    markers, chunk = markers_for(spec.get("format"), backend.tokenizer), max(1, int(backend.prompts_per_call))
    with tqdm(total=len(todo), desc="eval generations", mininterval=10, disable=False) as bar:  # into the log
        for (run, approach), jobs in _groups(todo).items():
            ctx = ApproachContext(backend, generation_params(sampling, run), markers,
                                  answer_max_tokens=int(sampling["answer_max_tokens"]))
            for start in range(0, len(jobs), chunk):
                part = jobs[start:start + chunk]
                questions = [Question(prompts[j.item["id"]], job_seed(seed, j), str(j.item["id"])) for j in part]
                for job, answer in zip(part, run_approach(approach, ctx, questions)):
                    record = make_record(job, answer)
                    append_jsonl(partial, record)
                    done[job.key] = record
                bar.update(len(part))


# ---------------------------------------------------------------------------------------------------------- outputs
def write_generations(path, records: list[dict]) -> None:
    ordered = sorted(records, key=lambda r: (r["source"], r["id"], r["run"], r["approach"]))
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))


def metrics_extra(spec: dict, model_path: str, backend_name: str, excluded: dict | None = None) -> dict:
    """``spec["backend_settings"]``: what the backend said it ran with (``_evaluate`` puts it there)."""
    dataset = spec.get("dataset") or {}
    return {"experiment": spec.get("experiment"), "config_hash": spec.get("config_hash"), "config": spec.get("config"),
            "model": {"key": (spec.get("model") or {}).get("key"), "path": str(model_path)},
            "backend": backend_name, "backend_settings": spec.get("backend_settings"),
            "sampling": effective_sampling(spec),
            "dataset": dataset.get("key") or dataset.get("file_path") or dataset.get("hf_path"),
            "excluded": excluded or {"count": 0, "ids": [], "reason": None}}


def primary_approach(spec: dict) -> str:
    return spec.get("primary_approach") or DEFAULTS.primary_approach


def compute_and_write_metrics(records: list[dict], spec: dict, model_path: str, backend_name: str, metrics_path,
                              excluded: dict | None = None):
    from meds1.evaluate.metrics import compute_metrics  # the scoring side; imported late so generation never waits

    boot = spec.get("bootstrap") or {}
    metrics = compute_metrics(records, similarity=bool((spec.get("matcher") or {}).get("similarity", False)),
                              bootstrap_resamples=int(boot.get("resamples", DEFAULTS.bootstrap_resamples)),
                              seed=int(boot.get("seed", spec.get("seed", 0))), primary_approach=primary_approach(spec),
                              extra=metrics_extra(spec, model_path, backend_name, excluded))
    write_json(metrics_path, metrics)
    return metrics


def evaluate(spec: dict, model_path: str, generations_path, metrics_path, *, work_dir, base_dir=".",
             backend=None) -> dict:
    """Generate what is missing, write ``generations.jsonl`` and ``metrics.json``, return the metrics.

    ``backend``: an already built backend (tests, or a caller evaluating several checkpoints); default: built from
    ``spec["backend"]`` (auto or a registered backend) for ``model_path``.
    """
    try:
        return _evaluate(spec, model_path, generations_path, metrics_path, work_dir=work_dir, base_dir=base_dir,
                         backend=backend)
    except MedS1Error as err:  # bad data or settings: say which experiment they belong to
        err.experiment = err.experiment or spec.get("experiment")
        raise


def select_for_eval(spec: dict, base_dir) -> tuple[list[dict], dict]:
    """The items to evaluate and what was left out (probe questions curation used: ids present in the eval set)."""
    seed = int(spec.get("seed", 0))
    items = load_eval_items(spec["dataset"], base_dir=base_dir, seed=seed)
    present = {i["id"] for i in items}
    excluded_ids = sorted(str(i) for i in (spec.get("exclude_ids") or ()) if str(i) in present)
    kept = select_items(items, eval_sample=spec.get("eval_sample"), limit=spec.get("limit"), seed=seed,
                        exclude_ids=excluded_ids)
    reason = "probe questions used by curation" if excluded_ids else None
    return kept, {"count": len(excluded_ids), "ids": excluded_ids, "reason": reason}


def _evaluate(spec: dict, model_path: str, generations_path, metrics_path, *, work_dir, base_dir, backend) -> dict:
    items, excluded = select_for_eval(spec, base_dir)
    jobs = build_jobs(items, spec)
    backend_name = backend.name if backend is not None else resolve_backend_name(spec.get("backend"))
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    done = load_partial(work_dir, generation_fingerprint(spec, model_path, backend_name))
    todo = [job for job in jobs if job.key not in done]
    log.info("eval %s: %d jobs, %d already generated, %d to go; %d probe questions left out", spec.get("experiment"),
             len(jobs), len(jobs) - len(todo), len(todo), excluded["count"])
    if todo:  # a finished run that only lacks metrics never loads the model again
        tokenizer = backend.tokenizer if backend else model_tokenizer(spec, model_path)
        prompts = encode_prompts(items, tokenizer, spec)
        backend = backend or _build_backend(spec, model_path, backend_name, prompts, tokenizer)
        generate_missing(todo, backend, spec, prompts, work_dir / PARTIAL_NAME, done)
        if hasattr(backend, "describe"):
            write_json(work_dir / BACKEND_NAME, backend.describe())
    records = [done[job.key] for job in jobs]
    write_generations(generations_path, records)
    settings = read_json(work_dir / BACKEND_NAME) if (work_dir / BACKEND_NAME).exists() else None
    return compute_and_write_metrics(records, spec | {"backend_settings": settings}, model_path, backend_name,
                                     metrics_path, excluded)


def model_tokenizer(spec: dict, model_path: str):
    from meds1.tokenizers import load_tokenizer

    return load_tokenizer(spec.get("model") or {}, model_path, padding_side="left")  # left: batched generation


def _build_backend(spec: dict, model_path: str, backend_name: str, prompts: dict, tokenizer):
    context = BackendContext(model=spec.get("model") or {}, seed=int(spec.get("seed", 0)),
                             batch_size=int(effective_sampling(spec)["batch_size"]),
                             context_tokens=context_tokens(prompts, spec))
    return make_backend(backend_name, model_path, context=context, options=spec.get("backend_options"),
                        tokenizer=tokenizer)
