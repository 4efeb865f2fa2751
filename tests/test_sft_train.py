"""Training on the tiny model: masking, loss, best-validation selection, length fitting, resume after SIGKILL,
the final model (bf16, gathered once), and the multi-process path: FSDP over gloo on two CPU processes, killed and
resumed from its sharded checkpoint."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file

from meds1.sft import launch
from meds1.sft.chat import build_example
from meds1.sft.checkpoints import complete_checkpoints

REPO = Path(__file__).resolve().parents[1]
LONG_COT = " ".join(f"Step {i}: Wait, double-check." for i in range(60))


def curated_rows(n: int, start: int, letters: str = "ABCD", long_every: int = 0) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        question = f"Question {i}: Which of the following is the most likely diagnosis? A. one B. two C. three D. four"
        cot = LONG_COT if long_every and i % long_every == 0 else \
            "Let's think step by step. " + " ".join(["Wait, double-check."] * (2 + i % 3))
        response = f"The answer is {letters[i % len(letters)]}."
        rows.append({"id": f"q{i}", **build_example(question, cot, response, fmt="huatuo"),
                     "Question": question, "Complex_CoT": cot, "Response": response})
    return rows


def save_curated(path: Path, train: list[dict], validation: list[dict]) -> Path:
    train_split = Dataset.from_list(train)
    validation_split = Dataset.from_list(validation) if validation else train_split.select([])  # empty, same features
    # one shard each: datasets 5.2 cannot reload an empty split saved with its default of zero shards
    DatasetDict({"train": train_split, "validation": validation_split}).save_to_disk(
        path, num_shards={"train": 1, "validation": 1})
    return path


def make_spec(tiny_model_dir, **training) -> dict:
    params = {"learning_rate": 0.02, "batch_size": 4, "gradient_accumulation_steps": 1, "total_batch_size": None,
              "num_epochs": 2, "weight_decay": 0.01, "warmup_ratio": 0.1, "max_length": 128, "select": "best",
              "evals_per_epoch": 2, "optimizer": {"adam_beta1": 0.9, "adam_beta2": 0.95, "adam_epsilon": 1e-8}}
    params.update(training)
    return {"experiment": "tiny-exp", "seed": 0, "training_params": params, "wandb": {"mode": "disabled"},
            "model": {"key": "tiny", "hf_path": str(tiny_model_dir), "path": str(tiny_model_dir), "max_length": 512,
                      "system_prompt": None, "chat_template": None, "format": "huatuo"}}


@pytest.fixture(scope="module")
def curated(tiny_model_dir, tmp_path_factory) -> Path:
    """24 train rows (every 6th with a reasoning trace too long for max_length 128, plus one whose question alone is
    too long) and 8 validation rows."""
    train = curated_rows(24, 0, long_every=6)
    huge = curated_rows(1, 999)[0]
    huge.update(build_example(huge["Question"] * 10, "short", "The answer is A.", fmt="huatuo"))
    return save_curated(tmp_path_factory.mktemp("curated") / "dataset", train + [huge], curated_rows(8, 100))


@pytest.fixture(scope="module")
def good_run(tiny_model_dir, curated, tmp_path_factory):
    from meds1.sft.train import train

    out = tmp_path_factory.mktemp("good")
    metrics = train(make_spec(tiny_model_dir), curated, tiny_model_dir, out / "final", out / "train_metrics.json",
                    out / "work")
    return out, metrics


def test_prompt_tokens_are_masked_exactly(tiny_model_dir, curated, tmp_path):
    from meds1.sft.chat import load_tokenizer
    from meds1.sft.train import build_trainer

    run = build_trainer(make_spec(tiny_model_dir), curated, tiny_model_dir, tmp_path / "work")
    tok = load_tokenizer({"key": "tiny"}, tiny_model_dir)
    fitted = run.trainer.train_dataset
    assert len(fitted) == 24  # the one whose question cannot fit is gone before trl sees it
    for i in (0, 1, 6):  # 6 has truncated reasoning
        row = fitted[i]
        source = Dataset.from_list(curated_rows(24, 0, long_every=6))[i]
        n_prompt = len(tok.apply_chat_template(source["prompt"], add_generation_prompt=True, return_dict=True)
                       ["input_ids"])
        labels, ids = row["labels"], row["input_ids"]
        assert labels[:n_prompt] == [-100] * n_prompt
        assert labels[n_prompt:] == ids[n_prompt:] and len(ids) > n_prompt and len(ids) <= 128
        assert tok.decode(ids[n_prompt:]).endswith("The answer is " + "ABCD"[i % 4] + ".<|im_end|>\n")


def test_loss_decreases_and_metrics_are_complete(good_run):
    out, metrics = good_run
    assert json.loads((out / "train_metrics.json").read_text()) == metrics
    losses = [p["loss"] for p in metrics["loss_curve"]]
    assert len(losses) == metrics["global_step"] == 12  # 24 examples / batch 4 x 2 epochs, logged every step
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    assert all(p["lr"] is not None and 0 <= p["mean_token_accuracy"] <= 1 for p in metrics["loss_curve"])
    assert metrics["effective_batch"] == {"per_device": 4, "grad_accum": 1, "num_gpus": 1, "total": 4}
    assert [e["step"] for e in metrics["eval_curve"]] == [3, 6, 9, 12]  # 2 evals per epoch
    assert metrics["tokens_per_second"] > 0 and metrics["peak_memory_mb"] > 0 and metrics["wall_seconds"] > 0
    assert metrics["resumed_from_step"] is None and metrics["epochs"] == 2


def test_long_examples_are_truncated_in_the_reasoning_and_counted(good_run):
    _, metrics = good_run
    assert (metrics["truncated"], metrics["dropped_too_long"], metrics["num_train_examples"]) == (4, 1, 24)
    assert metrics["dropped_ids"] == ["q999"] and metrics["validation_truncated"] == 0


def test_final_model_loads_and_generates(good_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = good_run
    assert sorted(p.name for p in out.iterdir()) == ["final", "train_metrics.json", "work"]  # no temp leftovers
    assert_bf16_model_with_tokenizer(out / "final")
    tok = AutoTokenizer.from_pretrained(out / "final")
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    prompt = tok.apply_chat_template([{"role": "user", "content": "Which artery?"}], add_generation_prompt=True,
                                     return_dict=True, return_tensors="pt")
    generated = model.generate(**prompt, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert generated.shape[1] == prompt["input_ids"].shape[1] + 6


def test_best_validation_checkpoint_becomes_the_final_model(tiny_model_dir, tmp_path):
    from meds1.sft.train import train

    # Train on answer A only with a learning rate high enough to overshoot: validation loss dips, then rises.
    dataset = save_curated(tmp_path / "dataset", curated_rows(16, 0, letters="A"), curated_rows(4, 100, letters="D"))
    spec = make_spec(tiny_model_dir, learning_rate=0.2, num_epochs=1, evals_per_epoch=4, max_length=256)
    metrics = train(spec, dataset, tiny_model_dir, tmp_path / "final", tmp_path / "m.json", tmp_path / "work")
    evals = {e["step"]: e["eval_loss"] for e in metrics["eval_curve"]}
    best_step = min(evals, key=evals.get)
    assert list(evals) == [1, 2, 3, 4]
    assert metrics["selected"] == {"rule": "best", "step": best_step, "epoch": best_step / 4,
                                   "eval_loss": evals[best_step]}
    assert best_step != metrics["global_step"]  # the premise: the last model is not the best one
    final = load_file(tmp_path / "final" / "model.safetensors")
    as_bf16 = lambda path: {k: v.to(torch.bfloat16) for k, v in load_file(path).items()}  # noqa: E731
    chosen = as_bf16(tmp_path / "work" / f"checkpoint-{best_step}" / "model.safetensors")
    last = as_bf16(tmp_path / "work" / f"checkpoint-{metrics['global_step']}" / "model.safetensors")
    assert final.keys() == chosen.keys()
    assert all(torch.equal(final[k], chosen[k]) for k in final)
    assert not all(torch.equal(final[k], last[k]) for k in final)


def _launch_argv(spec_path, dataset, model, out: Path) -> list[str]:
    return ["--spec", str(spec_path), "--dataset", str(dataset), "--model", str(model), "--final",
            str(out / "final"), "--metrics", str(out / "train_metrics.json"), "--work", str(out / "work")]


def test_killed_run_resumes_from_its_checkpoint(tiny_model_dir, curated, tmp_path):
    from meds1.sft.train import train

    spec = make_spec(tiny_model_dir, batch_size=2, num_epochs=2, evals_per_epoch=2, select="last")
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    argv = _launch_argv(tmp_path / "spec.json", curated, tiny_model_dir, tmp_path)
    job = subprocess.Popen(launch.launch_command(0, argv), cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not complete_checkpoints(tmp_path / "work") and job.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        os.killpg(job.pid, signal.SIGKILL)  # the test started this process group; kill exactly it
    finally:
        job.wait()
    assert job.returncode == -signal.SIGKILL, "training ended before its first checkpoint could be interrupted"
    assert not (tmp_path / "final").exists() and not (tmp_path / "train_metrics.json").exists()
    killed_at = complete_checkpoints(tmp_path / "work")[-1][0]
    assert 0 < killed_at < 24

    metrics = train(spec, curated, tiny_model_dir, tmp_path / "final", tmp_path / "train_metrics.json",
                    tmp_path / "work")
    assert metrics["resumed_from_step"] == killed_at
    assert metrics["global_step"] == 24  # 24 examples x 2 epochs at batch 2
    assert [p["step"] for p in metrics["loss_curve"]] == list(range(1, 25))  # old history kept, nothing redone twice
    assert metrics["selected"]["rule"] == "last" and metrics["selected"]["step"] == 24
    assert metrics["selected"]["eval_loss"] == metrics["eval_curve"][-1]["eval_loss"]
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    out = model.generate(torch.tensor([[1, 5, 9]]), max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape == (1, 7)


def assert_bf16_model_with_tokenizer(folder: Path) -> None:
    """The published model: one bf16 safetensors file whose config says bf16, next to the tokenizer."""
    weights = load_file(folder / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    assert (folder / "tokenizer.json").exists() and not (folder / "training_args.bin").exists()


def kill_process_tree(pid: int) -> None:
    """SIGKILL the launcher and its workers at once, as a preempted job dies. torchrun starts each worker in its
    own session, so a process group kill would leave them running: name them by id, all started by this test."""
    import psutil

    tree = psutil.Process(pid)
    for proc in [*tree.children(recursive=True), tree]:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def optimizer_shards(checkpoint: Path) -> dict[str, list[int]]:
    """optimizer tensor -> element count of each stored piece, from the checkpoint's distributed-checkpoint index."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = FileSystemReader(str(checkpoint / "optimizer_0")).read_metadata()
    return {key: [math.prod(chunk.sizes) for chunk in item.chunks]
            for key, item in metadata.state_dict_metadata.items()
            if isinstance(item, TensorStorageMetadata) and "exp_avg" in key}


def test_fsdp_on_two_cpu_processes_resumes_after_kill_9(tiny_model_dir, curated, tmp_path):
    """The GPU code path on CPU: accelerate launch, 2 processes over gloo, FSDP2 full shard, sharded checkpoints;
    killed with SIGKILL after its first checkpoint, resumed from it; the final model loads and generates."""
    spec = make_spec(tiny_model_dir, batch_size=2, total_batch_size=4, num_epochs=2, evals_per_epoch=2,
                     select="last")
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    command = launch.launch_command(2, _launch_argv(tmp_path / "spec.json", curated, tiny_model_dir, tmp_path),
                                    cpu=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "first.log", "w") as log:
        job = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 300
            while not complete_checkpoints(tmp_path / "work") and job.poll() is None and time.time() < deadline:
                time.sleep(0.02)
        finally:
            kill_process_tree(job.pid)
            job.wait()
    assert job.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    assert not (tmp_path / "final").exists()
    killed_at, checkpoint = complete_checkpoints(tmp_path / "work")[-1]
    assert 0 < killed_at < 12

    # Sharded state: each process wrote its own piece of weights and optimizer; nobody holds a full optimizer copy.
    assert not (checkpoint / "optimizer.pt").exists() and not (checkpoint / "model.safetensors").exists()
    for folder in ("optimizer_0", "pytorch_model_fsdp_0"):
        assert sorted(p.name for p in (checkpoint / folder).glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    shards = optimizer_shards(checkpoint)
    assert shards and all(len(pieces) == 2 for pieces in shards.values())  # every moment tensor split in two
    full = 8 * sum(sum(pieces) for pieces in shards.values())  # fp32 exp_avg + exp_avg_sq of every parameter
    assert all((checkpoint / "optimizer_0" / f"__{r}_0.distcp").stat().st_size < 0.75 * full for r in (0, 1))

    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "train_metrics.json").read_text())
    assert (metrics["sharding"], metrics["resumed_from_step"], metrics["global_step"]) == ("fsdp", killed_at, 12)
    assert metrics["effective_batch"] == {"per_device": 2, "grad_accum": 1, "num_gpus": 2, "total": 4}
    assert [p["step"] for p in metrics["loss_curve"]] == list(range(1, 13))  # history kept, nothing redone
    assert len(complete_checkpoints(tmp_path / "work")) == 2  # keep_checkpoints
    assert_bf16_model_with_tokenizer(tmp_path / "final")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "final", dtype=torch.float32)
    out = model.generate(torch.tensor([[1, 5, 9]]), max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape == (1, 7)


def test_without_validation_the_last_model_is_selected(tiny_model_dir, tmp_path):
    from meds1.sft.train import train

    dataset = save_curated(tmp_path / "dataset", curated_rows(8, 0), [])
    metrics = train(make_spec(tiny_model_dir, num_epochs=1), dataset, tiny_model_dir, tmp_path / "final",
                    tmp_path / "m.json", tmp_path / "work")
    assert metrics["eval_curve"] == [] and metrics["num_validation_examples"] == 0
    assert metrics["selected"] == {"rule": "last", "step": 2, "epoch": 1.0, "eval_loss": None}
    assert (tmp_path / "final" / "model.safetensors").exists()
