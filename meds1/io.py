"""Crash-safe file output: everything is written under a unique temporary name and renamed when complete."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def sweep_leftovers(path: Path) -> list[Path]:
    """Remove temporary siblings of ``path`` left by an attempt that was killed (kill -9, preemption, power).

    Call it for a rule's OWN outputs only, before the job writes them (``meds1.cli.run_rule`` does): Snakemake lets
    one job at a time write an output, so a temporary sibling that exists then belongs to a dead attempt. Never call
    it for shared files (caches), which other jobs may be writing right now. Returns what was removed.
    """
    stale = list(path.parent.glob(f".{path.name}.tmp-*")) if path.parent.exists() else []
    for leftover in stale:
        _remove(leftover)
    return stale


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (file or folder); on success it replaces ``path``, on error it is removed.

    A kill -9 at any moment leaves either the old ``path`` or none, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # os.replace cannot replace a non-empty folder
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            _remove(tmp)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        _fsync(tmp)


def write_json(path, obj: Any, *, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False, ensure_ascii=False, default=_json_default) + "\n")


def read_json(path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def append_jsonl(path, record: dict) -> None:
    """Append one complete line and flush it to disk (used for resumable work files)."""
    line = json.dumps(record, ensure_ascii=False, default=_json_default) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path, *, tolerate_torn_tail: bool = True) -> list[dict]:
    """Read a JSONL file; a torn last line (crash mid-write) is dropped when ``tolerate_torn_tail``."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if tolerate_torn_tail and i == len(lines) - 1:
                break
            raise
    return out


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _json_default(obj):
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
