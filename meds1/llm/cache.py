"""Persistent, content-addressed LLM response cache: one JSON file per request, ``<cache_dir>/llm/ab/abcd….json``.

The key is the sha256 of (provider, model, prompt, system, params), so two experiments that send the same request
share one answer and a rerun makes no calls. Each file is written under a unique temporary name and renamed, so two
processes writing the same key at once both leave a complete file. (Not ``meds1.io.atomic_path``: it sweeps other
writers' temporary files, which is right for a job's own outputs and wrong for a cache that parallel jobs share.) Files hold the
answer and its token counts only: never credentials.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

from meds1.io import read_json
from meds1.llm.base import LLMRequest, LLMResult

CACHE_VERSION = 1


def request_key(provider: str, model: str, request: LLMRequest) -> str:
    identity = {"provider": provider, "model": model, "prompt": request.prompt, "system": request.system,
                "params": request.params}
    blob = json.dumps(identity, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, cache_dir: str | Path):
        self.root = Path(cache_dir) / "llm"

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> LLMResult | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            entry = read_json(path)
            return LLMResult(text=entry["text"], input_tokens=entry["input_tokens"],
                             output_tokens=entry["output_tokens"], cached=True, provider=entry["provider"],
                             model=entry["model"], meta=entry.get("meta") or {})
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable entry: treat as a miss; the fresh answer overwrites it

    def put(self, key: str, task: str, result: LLMResult) -> None:
        _write_atomically(self.path(key), {
            "version": CACHE_VERSION, "key": key, "task": task, "provider": result.provider, "model": result.model,
            "text": result.text, "input_tokens": result.input_tokens, "output_tokens": result.output_tokens,
            "meta": result.meta, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })


def _write_atomically(path: Path, entry: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(entry, fh, ensure_ascii=False, indent=2)
            fh.flush()
            os.fsync(fh.fileno())  # a paid answer must survive a crash right after the call
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
