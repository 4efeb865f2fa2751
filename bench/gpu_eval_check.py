"""GPU check of the eval stage's hf path: prints figures and writes $OUT/gpu_eval.json (default /tmp/out).

    python bench/gpu_eval_check.py        # from the repo root, on a machine with a CUDA GPU (~80 s on an H200)

a. greedy: batched == one-by-one, in bf16 (the default on a GPU) and float32
b. sampling: per-request seeds independent of batch-mates, bf16 and float32
c. evaluate() with test-time scaling on a model trained on the qwen format: markers kept, metrics written
d. a run interrupted after two calls and resumed with other batch sizes == an uninterrupted run (sampled runs)
"""
import json
import os
import sys
import time
from pathlib import Path

sys.path[:0] = [".", "tests"]  # the tiny models of the test suite
import torch  # noqa: E402

from eval_models import train_on_formats  # noqa: E402
from meds1.data.eval_items import load_eval_items  # noqa: E402
from meds1.evaluate import run as R  # noqa: E402
from meds1.evaluate.backends import BackendContext, GenerationParams, Request, encode_prompt, make_backend  # noqa
from meds1.evaluate.prompts import build_prompt  # noqa: E402
from meds1.io import read_jsonl  # noqa: E402
from tiny_model import build_tiny_model  # noqa: E402

OUT = Path(os.environ.get("OUT", "/tmp/out"))
WORK = Path("/tmp/gpucheck")
report = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "torch": torch.__version__}


def diverse(tiny: Path) -> Path:
    from transformers import AutoModelForCausalLM
    import shutil

    out = WORK / "diverse"
    model = AutoModelForCausalLM.from_pretrained(tiny)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                p.normal_(0.0, 0.4)
    model.save_pretrained(out)
    for f in os.listdir(tiny):
        if f.startswith(("tokenizer", "chat_template", "special_tokens")):
            shutil.copy(tiny / f, out / f)
    return out


def agreement(model: Path, dtype: str, items) -> dict:
    b = make_backend("hf", str(model), context=BackendContext(batch_size=8), options={"hf": {"dtype": dtype}})
    reqs = [Request(tuple(encode_prompt(b.tokenizer, build_prompt(i, b.tokenizer, prompting="step"))), seed=7 + n)
            for n, i in enumerate(items)]
    out = {}
    for label, params in (("greedy", GenerationParams(max_new_tokens=48)),
                          ("sampled", GenerationParams(max_new_tokens=48, temperature=0.8, top_p=0.95))):
        t = time.time()
        batched = b.generate(reqs, params)
        seconds = time.time() - t
        alone = [b.generate([r], params)[0] for r in reqs]
        same = sum(x.token_ids == y.token_ids for x, y in zip(batched, alone))
        out[label] = {"same": same, "n": len(reqs), "batched_seconds": round(seconds, 3),
                      "tokens": sum(g.n_output_tokens for g in batched)}
    out["model_dtype"] = str(b.model.dtype)
    out["device"] = str(b.model.device)
    return out


def main():
    WORK.mkdir(exist_ok=True)
    tiny = build_tiny_model(WORK / "tiny")
    items = load_eval_items({"file_path": "tests/data/eval_items.json"})
    div = diverse(tiny)
    for dtype in ("auto", "float32"):
        report[f"agreement_{dtype}"] = agreement(div, dtype, items)
        print(dtype, report[f"agreement_{dtype}"], flush=True)

    trained = train_on_formats(tiny, WORK / "trained")
    spec = {"experiment": "gpu", "seed": 0, "model": {"key": "t", "path": str(trained)},
            "dataset": {"key": "own", "file_path": "tests/data/eval_items.json"}, "format": "qwen",
            "test_time_scaling": True, "reasoning_approaches": ["immediate", "reasoning", "reasoning_2x", "budget_16"],
            "backend": "hf", "sampling": {"max_new_tokens": 64, "answer_max_tokens": 16, "batch_size": 8},
            "bootstrap": {"resamples": 200}}
    t = time.time()
    metrics = R.evaluate(spec, str(trained), WORK / "tts.jsonl", WORK / "tts.json", work_dir=WORK / "tts")
    recs = read_jsonl(WORK / "tts.jsonl")
    report["tts"] = {"seconds": round(time.time() - t, 2), "records": len(recs), "backend": metrics["backend"],
                     "primary": metrics["primary_approach"],
                     "with_answer_marker": sum("<|im_start|>answer" in r["output"] for r in recs),
                     "accuracy": {a: v["accuracy"] for a, v in metrics["test_time_scaling"].items()},
                     "example": recs[0]["output"][:300]}
    print(report["tts"], flush=True)

    report["resume"] = resume_check(div)
    print(report["resume"], flush=True)


def resume_check(model: Path) -> dict:
    spec = {"experiment": "resume", "seed": 0, "model": {"key": "d", "path": str(model)},
            "dataset": {"key": "own", "file_path": "tests/data/eval_items.json"},
            "eval": {"repetitions": {}, "repetition_multiplier": 3}, "backend": "hf",
            "sampling": {"max_new_tokens": 24, "temperature": 0.8, "top_p": 0.95, "batch_size": 3},
            "bootstrap": {"resamples": 100}}
    out = {}
    for dtype in ("auto", "float32"):
        def build(batch):
            return make_backend("hf", str(model), context=BackendContext(batch_size=batch),
                                options={"hf": {"dtype": dtype}})

        first = build(3)

        class Dies:
            name, tokenizer, prompts_per_call, calls = "hf", first.tokenizer, 3, 0

            def generate(self, requests, params):
                if self.calls == 2:
                    raise RuntimeError("preempted")
                self.calls += 1
                return first.generate(requests, params)

        work = WORK / f"resume-{dtype}"
        try:
            R.evaluate(spec, str(model), work / "g.jsonl", work / "m.json", work_dir=work / "w", backend=Dies())
        except RuntimeError:
            pass
        R.evaluate(spec, str(model), work / "g.jsonl", work / "m.json", work_dir=work / "w", backend=build(5))
        R.evaluate(spec, str(model), work / "f.jsonl", work / "fm.json", work_dir=work / "fw", backend=build(7))
        a, b = read_jsonl(work / "g.jsonl"), read_jsonl(work / "f.jsonl")
        out[dtype] = {"records": len(a), "identical": a == b, "same_outputs": sum(x == y for x, y in zip(a, b))}
    return out


if __name__ == "__main__":
    start = time.time()
    try:
        main()
    finally:
        report["seconds"] = round(time.time() - start, 1)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "gpu_eval.json").write_text(json.dumps(report, indent=1))
        print(json.dumps(report, indent=1))
