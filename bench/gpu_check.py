"""GPU check in one run: the training path (accelerate, FSDP2 full shard, bf16) killed with SIGKILL and resumed from
its sharded checkpoint, the final bf16 model, and generation with the hf backend (vLLM too where it is installed).

    python bench/gpu_check.py              # on a GPU machine, from the repo root: every GPU present, < 5 min
    python bench/gpu_check.py --cpu        # the same flow on CPU: 2 processes, FSDP over gloo (what CI runs)
    python bench/gpu_check.py --dry-run    # the environment report and the commands; nothing is trained

Needs torch, transformers, trl, accelerate and datasets, and this checkout (meds1 need not be installed: the repo
root goes on PYTHONPATH for every process it starts). Prints nvidia-smi, versions, every check and the figures
(training tokens/s, peak GPU memory, the step it was killed at and resumed from, generation tokens/s), and writes
them to gpu_check.json in $OUT (or --out). Exit status 0 only when every check passed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # meds1 from this checkout; the tiny model builder of the tests


class Report:
    """Checks (name -> passed, detail) and figures, printed as they come and written at the end."""

    def __init__(self):
        self.checks: dict[str, dict] = {}
        self.figures: dict[str, object] = {}

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        self.checks[name] = {"passed": bool(passed), "detail": detail}
        print(f"[{'PASS' if passed else 'FAIL'}] {name}{': ' + detail if detail else ''}", flush=True)
        return bool(passed)

    def figure(self, name: str, value) -> None:
        self.figures[name] = value
        print(f"  {name} = {value}", flush=True)

    def run(self, name: str, step):
        """Run one phase; an exception is a failed check with its last traceback lines, and the run goes on."""
        started = time.time()
        try:
            return step()
        except Exception as err:  # the check reports every failure, it does not stop at the first
            tail = "".join(traceback.format_exception(err)[-3:]).strip().replace("\n", " | ")
            self.check(name, False, f"{type(err).__name__}: {err} ({tail[-600:]})")
            return None
        finally:
            self.figure(f"{name} seconds", round(time.time() - started, 1))

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c["passed"] for c in self.checks.values())


# ------------------------------------------------------------------------------------------------ environment
def environment(report: Report, *, cpu: bool) -> int:
    """Versions, nvidia-smi and the GPUs meds1.devices counts; returns the processes to train with."""
    import accelerate
    import datasets
    import torch
    import transformers
    import trl

    from meds1.devices import count_gpus

    for name, module in (("python", platform), ("torch", torch), ("transformers", transformers), ("trl", trl),
                         ("accelerate", accelerate), ("datasets", datasets)):
        report.figure(f"{name} version", platform.python_version() if module is platform else module.__version__)
    report.figure("torch cuda", torch.version.cuda)
    smi = shutil.which("nvidia-smi")
    print(subprocess.run([smi], capture_output=True, text=True).stdout if smi else "nvidia-smi: not found", flush=True)
    gpus = count_gpus()
    report.figure("GPUs counted by meds1.devices", gpus)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        report.figure("GPU", f"{props.name}, {props.total_memory / 2**30:.1f} GiB, bf16 "
                             f"{'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    if cpu:
        return 2
    report.check("a GPU is visible", gpus >= 1, "run with --cpu on a machine without one" if gpus < 1 else "")
    return gpus


# ------------------------------------------------------------------------------------------------ model and data
def build_model(folder: Path, *, cpu: bool) -> Path:
    """The tests' tokenizer with a small random Llama, embeddings untied like the 7-32B models': 2 layers of 64 on
    CPU, 8 layers of 512 (~27 M parameters) on GPU."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tiny_model import build_tiny_model

    build_tiny_model(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    hidden, layers = (64, 2) if cpu else (512, 8)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 11 // 4,
                         num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=4,
                         max_position_embeddings=2048,
                         tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(folder)
    return folder


def build_dataset(folder: Path, rows: int) -> Path:
    from datasets import Dataset, DatasetDict

    from meds1.sft.chat import build_example

    def row(i: int) -> dict:
        question = f"Question {i}: Which of the following is the most likely diagnosis? A. one B. two C. three D. four"
        cot = "Let's think step by step. " + " ".join(["Wait, double-check the findings."] * (4 + i % 7))
        answer = f"The answer is {'ABCD'[i % 4]}."
        return {"id": f"q{i}", **build_example(question, cot, answer, fmt="huatuo"), "Question": question,
                "Complex_CoT": cot, "Response": answer}

    DatasetDict({"train": Dataset.from_list([row(i) for i in range(rows)]),
                 "validation": Dataset.from_list([row(i) for i in range(1000, 1008)])}).save_to_disk(str(folder))
    return folder


def train_spec(model: Path, *, cpu: bool) -> dict:
    params = {"learning_rate": 1e-3, "batch_size": 4, "gradient_accumulation_steps": 1, "total_batch_size": None,
              "num_epochs": 2, "weight_decay": 0.01, "warmup_ratio": 0.05, "max_length": 256 if cpu else 512,
              "select": "best", "evals_per_epoch": 4, "gradient_checkpointing": True, "weights_dtype": "float32"}
    return {"experiment": "gpu-check", "seed": 0, "training_params": params, "wandb": {"mode": "disabled"},
            "model": {"key": "gpu-check", "path": str(model), "hf_path": str(model), "max_length": 2048,
                      "system_prompt": None, "chat_template": None, "format": "huatuo"}}


# ------------------------------------------------------------------------------------------------ training
def child_env(*, cpu: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(":"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1", "USE_HUB_KERNELS": "0"}
    if cpu:
        env.update({"OMP_NUM_THREADS": "1", "MEDS1_ALLOW_CPU": "1"})
    return env


def kill_tree(pid: int) -> None:
    """SIGKILL the launcher and every worker at once, as preemption does (torchrun puts each worker in its own
    session, so a process-group kill would leave them running)."""
    import psutil

    try:
        tree = psutil.Process(pid)
        procs = [*tree.children(recursive=True), tree]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def interrupted_run(command: list[str], work: Path, env: dict, log: Path, report: Report) -> int | None:
    """Start training, SIGKILL it (launcher and workers) as soon as its first checkpoint is complete."""
    from meds1.sft.checkpoints import complete_checkpoints

    with open(log, "w") as out:
        job = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 240
        try:
            while not complete_checkpoints(work) and job.poll() is None and time.time() < deadline:
                time.sleep(0.01)
        finally:
            kill_tree(job.pid)
            job.wait()
    done = complete_checkpoints(work)
    killed = job.returncode == -signal.SIGKILL and bool(done)
    report.check("training killed (SIGKILL) after its first checkpoint", killed,
                 f"exit {job.returncode}, checkpoints {[s for s, _ in done]}" +
                 ("" if killed else f"; first error: {first_error(log.read_text())}"))
    return done[-1][0] if killed else None


def first_error(log: str) -> str:
    """The first traceback a worker printed (torchrun's own summary comes last and says little)."""
    at = log.find("Traceback (most recent call last)")
    return log[at:at + 4000] if at >= 0 else log[-2500:]


def check_sharded_checkpoint(work: Path, processes: int, report: Report) -> None:
    from meds1.sft.checkpoints import complete_checkpoints

    step, folder = complete_checkpoints(work)[-1]
    shards = {name: sorted(p.name for p in (folder / name).glob("*.distcp"))
              for name in ("pytorch_model_fsdp_0", "optimizer_0")}
    expected = [f"__{rank}_0.distcp" for rank in range(processes)]
    report.check("checkpoint is sharded: one weights and one optimizer file per process, no full copy",
                 all(files == expected for files in shards.values()) and not (folder / "optimizer.pt").exists(),
                 f"checkpoint-{step}: {shards}")


def training(root: Path, processes: int, report: Report, *, cpu: bool) -> dict | None:
    from meds1.sft import launch
    from meds1.sft.fsdp import require_torch_for_fsdp

    model = build_model(root / "model", cpu=cpu)
    require_torch_for_fsdp()  # the same one-line refusal the training job would give, before any process starts
    dataset = build_dataset(root / "dataset", 64 if cpu else 512)
    spec_path = root / "spec.json"
    spec_path.write_text(json.dumps(train_spec(model, cpu=cpu)))
    argv = ["--spec", str(spec_path), "--dataset", str(dataset), "--model", str(model), "--final",
            str(root / "final"), "--metrics", str(root / "train_metrics.json"), "--work", str(root / "work")]
    command = launch.launch_command(processes, argv, cpu=cpu)
    print("training command:", " ".join(command), flush=True)
    env = child_env(cpu=cpu)
    killed_at = interrupted_run(command, root / "work", env, root / "first_run.log", report)
    if killed_at is None:
        return None
    check_sharded_checkpoint(root / "work", processes, report)
    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    (root / "resumed_run.log").write_text(resumed.stdout + resumed.stderr)
    if not report.check("resumed run finished", resumed.returncode == 0,
                        f"exit {resumed.returncode}" + ("" if resumed.returncode == 0 else
                                                        f"; first error: {first_error(resumed.stdout + resumed.stderr)}")):
        return None
    metrics = json.loads((root / "train_metrics.json").read_text())
    report.check("resumed from the killed step", metrics["resumed_from_step"] == killed_at,
                 f"killed at {killed_at}, resumed from {metrics['resumed_from_step']}, "
                 f"finished at {metrics['global_step']}")
    report.check("FSDP on the expected device", metrics["sharding"] == "fsdp" and
                 metrics["device"] == ("cpu" if cpu else "cuda"), f"{metrics['sharding']} on {metrics['device']}")
    for name in ("effective_batch", "tokens_per_second", "peak_gpu_memory_mb", "peak_rss_mb", "wall_seconds",
                 "gradient_checkpointing", "weights_dtype", "global_step"):
        report.figure(f"train {name}", metrics.get(name))
    report.figure("train killed at step", killed_at)
    return metrics


def final_model(root: Path, report: Report) -> Path | None:
    from safetensors.torch import load_file

    final = root / "final"
    weights = load_file(final / "model.safetensors")
    dtypes = sorted({str(t.dtype) for t in weights.values()})
    config = json.loads((final / "config.json").read_text())
    report.check("final model: bf16 safetensors with the tokenizer, gathered once",
                 dtypes == ["torch.bfloat16"] and config.get("dtype") == "bfloat16" and
                 (final / "tokenizer.json").exists(), f"dtypes {dtypes}, config dtype {config.get('dtype')}")
    return final


# ------------------------------------------------------------------------------------------------ generation
def generation(final: Path, backend_name: str, report: Report) -> None:
    """32 prompts x 64 forced new tokens through a meds1 eval backend; tokens/s and peak GPU memory."""
    import torch

    from meds1.evaluate.backends import BackendContext, GenerationParams, Request, encode_prompt, make_backend

    backend = make_backend(backend_name, str(final), context=BackendContext(model={"key": "gpu-check"}, seed=0,
                                                                            batch_size=32, context_tokens=256))
    prompt = backend.tokenizer.apply_chat_template([{"role": "user", "content": "Which artery is occluded?"}],
                                                   tokenize=False, add_generation_prompt=True)
    ids = tuple(encode_prompt(backend.tokenizer, prompt))
    params = GenerationParams(max_new_tokens=64, min_tokens=64)
    backend.generate([Request(ids)], params)  # warm-up: kernels, caches
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.time()
    outputs = backend.generate([Request(ids, seed=i) for i in range(32)], params)
    seconds = time.time() - started
    tokens = sum(o.n_output_tokens for o in outputs)
    report.check(f"{backend_name} backend generates", len(outputs) == 32 and tokens >= 32 * 60,
                 f"{tokens} tokens in {seconds:.2f} s, device {getattr(backend, 'device', '?')}")
    report.figure(f"{backend_name} generation tokens/s (32 prompts x 64 tokens)", round(tokens / seconds, 1))
    if torch.cuda.is_available():
        report.figure(f"{backend_name} generation peak GPU memory MiB",
                      round(torch.cuda.max_memory_allocated() / 2**20, 1))


# ------------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="the same flow on CPU: 2 processes over gloo")
    parser.add_argument("--dry-run", action="store_true", help="environment report and commands only")
    parser.add_argument("--out", default=os.environ.get("OUT") or ".", help="folder for gpu_check.json")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (model, logs, checkpoints)")
    args = parser.parse_args(argv)
    os.environ.setdefault("USE_HUB_KERNELS", "0")  # offline: transformers must not fetch layer kernels for eval
    report, started = Report(), time.time()
    processes = report.run("environment", lambda: environment(report, cpu=args.cpu)) or 0
    root = Path(tempfile.mkdtemp(prefix="meds1-gpu-check-"))
    if args.dry_run:
        from meds1.sft import launch

        print("would run:", " ".join(launch.launch_command(max(processes, 1), ["..."], cpu=args.cpu)))
    elif processes >= 1:
        metrics = report.run("training", lambda: training(root, processes, report, cpu=args.cpu))
        final = report.run("final model", lambda: final_model(root, report)) if metrics else None
        if final is None and (root / "model").exists():  # still measure generation, on the untrained model
            report.figure("generation model", "untrained (training failed)")
            final = root / "model"
        if final is not None:
            report.run("hf generation", lambda: generation(final, "hf", report))
            if not args.cpu and _importable("vllm"):
                report.run("vllm generation", lambda: generation(final, "vllm", report))
            else:
                report.figure("vllm", "not installed here: not checked" if not args.cpu else "GPU only: not checked")
    report.figure("total seconds", round(time.time() - started, 1))
    print(f"\n{'ALL CHECKS PASSED' if report.passed else 'SOME CHECKS FAILED'} "
          f"({sum(c['passed'] for c in report.checks.values())}/{len(report.checks)})", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps({"checks": report.checks, "figures": report.figures}, indent=1,
                                                   default=str))
    for log in root.glob("*.log"):  # the training logs travel with the report
        shutil.copy(log, out / f"gpu_check_{log.name}")
    if args.keep:
        print(f"scratch kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if report.passed or (args.dry_run and processes >= 0) else 1


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main())
