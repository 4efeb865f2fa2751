"""GPU check of the hf backend's continuous batching: prints figures and writes $OUT/gpu_continuous.json.

    python bench/gpu_continuous_check.py          # from the repo root, on a CUDA machine (~1 min on an H200)
    python bench/gpu_continuous_check.py --cpu    # the same on CPU (a smoke test of the script)

Needs torch, transformers, tokenizers and pyyaml only (no trl, no datasets), so it runs on a bare GPU image.

a. greedy, float32: continuous batching (batch 4, prompts joining as rows end) == generate one prompt at a time
b. greedy, bfloat16: how many answers continuous batching shares with generate one at a time (rounding differs)
c. sampled, float32: per-request seeds give the same answers at batch 3 and at batch 8
d. throughput, bfloat16, a random 8-layer 1024-wide Llama, 64 prompts with caps of 8..256 new tokens (random weights
   rarely stop, so the caps stand in for answers of different lengths): continuous vs generate, both at batch 16
"""
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path[:0] = [".", "tests"]  # the tiny model of the test suite
import torch  # noqa: E402

from meds1.evaluate.backends import BackendContext, GenerationParams, Request, make_backend  # noqa: E402
from tiny_model import build_tiny_model  # noqa: E402

OUT = Path(os.environ.get("OUT", "/tmp/out"))
WORK = Path("/tmp/gpu_continuous")
DEVICE = "cpu" if "--cpu" in sys.argv else "cuda"


def diverse(tiny: Path, out: Path, **shape) -> Path:
    """The tiny model's tokenizer with random weights large enough for varied greedy outputs (optionally bigger)."""
    import shutil

    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(tiny)
    for key, value in shape.items():
        setattr(config, key, value)
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2 and "embed" not in name:
                param.normal_(0.0, 0.4 if not shape else 0.05)
    model.save_pretrained(out)
    for name in os.listdir(tiny):
        if name.startswith(("tokenizer", "chat_template", "special_tokens")):
            shutil.copy(tiny / name, out / name)
    return out


def backend(path: Path, batch: int, dtype: str, continuous: bool = True):
    return make_backend("hf", str(path), context=BackendContext(batch_size=batch),
                        options={"hf": {"dtype": dtype, "continuous_batching": "on" if continuous else "off"}})


def prompts(tokenizer, n: int, seed: int = 0) -> list[Request]:
    rng = random.Random(seed)
    words = ["fever", "cough", "pain", "rash", "which", "drug", "most", "likely", "cause", "the", "answer", "is"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 60))) for _ in range(n)]
    return [Request(tuple(tokenizer(t, add_special_tokens=False)["input_ids"]), seed=100 + i)
            for i, t in enumerate(texts)]


def correctness(model: Path, report: dict) -> None:
    greedy = GenerationParams(max_new_tokens=48)
    for dtype in ("float32", "bfloat16"):
        cont, alone = backend(model, 4, dtype), backend(model, 1, dtype, continuous=False)
        requests = prompts(cont.tokenizer, 24)
        batched = cont.generate(requests, greedy)
        single = [alone.generate([r], greedy)[0] for r in requests]
        same = sum(a == b for a, b in zip(batched, single))
        report[f"greedy_{dtype}_same_as_generate_alone"] = f"{same}/{len(requests)}"
        report[f"greedy_{dtype}_engine"] = cont.describe()["engine"]
    sampled = GenerationParams(max_new_tokens=32, temperature=0.8, top_p=0.95)
    requests = prompts(cont.tokenizer, 24, seed=1)
    three, eight = backend(model, 3, "float32").generate(requests, sampled), \
        backend(model, 8, "float32").generate(requests, sampled)
    report["sampled_float32_batch3_equals_batch8"] = three == eight


def throughput(model: Path, report: dict) -> None:
    rng = random.Random(2)
    caps = [rng.randint(8, 256) for _ in range(64)]
    params = GenerationParams(max_new_tokens=256)
    for continuous in (True, False):
        engine = backend(model, 16, "bfloat16", continuous)
        requests = [Request(r.prompt_ids, max_new_tokens=cap) for r, cap in zip(prompts(engine.tokenizer, 64, 3), caps)]
        engine.generate(requests[:2], GenerationParams(max_new_tokens=4))  # warm-up
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = engine.generate(requests, params)
        seconds = time.perf_counter() - start
        tokens = sum(g.n_output_tokens for g in out)
        name = "continuous" if continuous else "generate"
        report[f"throughput_{name}"] = {"seconds": round(seconds, 2), "tokens": tokens,
                                        "tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    if DEVICE == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"device": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu", "torch": torch.__version__}
    import transformers

    report["transformers"] = transformers.__version__
    tiny = build_tiny_model(WORK / "tiny")
    correctness(diverse(tiny, WORK / "diverse"), report)
    wide = dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16,
                num_key_value_heads=4, head_dim=64, max_position_embeddings=1024)
    throughput(diverse(tiny, WORK / "wide", **wide), report)
    fast, slow = report["throughput_continuous"]["tokens_per_s"], report["throughput_generate"]["tokens_per_s"]
    report["continuous_speedup"] = round(fast / slow, 2)
    print(json.dumps(report, indent=1))
    (OUT / "gpu_continuous.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
