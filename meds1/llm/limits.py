"""Limits that hold across every curate job sharing one cache folder: the request rate and the spending ceiling.

Twenty parallel curate jobs are twenty processes (perhaps on several nodes of one cluster file system); a limit kept
in memory would let them send 20x the rate and spend 20x the ceiling. So both live in ``<cache_dir>/llm_usage/``:

- ``ledger.jsonl``: append-only, one line per paid call (experiment, provider, model, tokens, cost, run). Spending
  of killed and resumed runs stays in it, so an experiment's cost is the sum of its lines.
- ``state.json``: the request pacer of each provider/model, the calls in flight (their cost estimates) and the
  ledger's running total; every change happens under ``state.lock`` (a ``filelock`` lock file).

The pacer is a token bucket whose capacity ``burst`` and refill rate keep every 60 s window at or under ``rpm``:
burst + 60 s x refill < rpm + 1. A request takes its token under the lock at the moment it is sent (never booked
ahead), so a process that wakes late cannot bunch requests: the bound holds for the real send times.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock

USAGE_DIR = "llm_usage"
PACE_MARGIN = 0.999   # refill at 99.9 % of the nominal rate: wake-up lateness can then never add a request
MAX_BURST = 10


class SharedState:
    """``state.json`` changed under one file lock; ``update()`` yields the dict and writes it back."""

    def __init__(self, cache_dir: str | Path):
        self.folder = Path(cache_dir) / USAGE_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path, self.ledger_path = self.folder / "state.json", self.folder / "ledger.jsonl"
        self.lock = FileLock(str(self.folder / "state.lock"))

    @contextlib.contextmanager
    def update(self) -> Iterator[dict]:
        with self.lock:
            state = self._read()
            self._sync_ledger(state)
            yield state
            self._write(state)

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # first use, or unreadable: the running total is rebuilt from the ledger below

    def _write(self, state: dict) -> None:
        tmp = self.path.with_name(f".state.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        os.replace(tmp, self.path)  # under the lock: readers see the old or the new state, never half of one

    def _sync_ledger(self, state: dict) -> None:
        """Add the ledger lines written since the last look (by any process) to the running total."""
        offset = state.get("ledger_offset", 0)
        size = self.ledger_path.stat().st_size if self.ledger_path.exists() else 0
        if size < offset:  # the ledger was replaced: count it again from the start
            offset, state["spent_usd"] = 0, 0.0
        if size == offset:
            return
        with open(self.ledger_path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read(size - offset)
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written is read next time
        for line in complete.splitlines():
            try:
                state["spent_usd"] = state.get("spent_usd", 0.0) + float(json.loads(line)["cost_usd"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn line from a killed writer costs nothing
        state["ledger_offset"] = offset + len(complete)

    def append_ledger(self, record: dict) -> None:
        """One paid call; call inside ``update()`` (the lock keeps lines whole across processes)."""
        with open(self.ledger_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")

    def ledger_lines(self) -> list[dict]:
        if not self.ledger_path.exists():
            return []
        out = []
        for line in self.ledger_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


# ---------------------------------------------------------------------------------------------------------- pacing
def bucket_for(rpm: float) -> tuple[float, float]:
    """(burst, refill per second) for ``rpm``: a small burst absorbs wake-up jitter without ever exceeding rpm."""
    burst = float(max(1, min(MAX_BURST, int(rpm) // 200)))
    return burst, max(rpm - burst + 1, 1e-9) * PACE_MARGIN / 60.0


@dataclass
class SharedPacer:
    """The request bucket of one provider/model, shared across processes: never more than ``rpm`` in 60 s."""

    state: SharedState
    name: str
    rpm: float
    clock: Callable[[], float] = time.time  # wall clock: the processes may not share a monotonic one

    def take(self) -> float:
        """Take a token if there is one now (returns 0: send now); else the seconds until there will be one."""
        burst, rate = bucket_for(self.rpm)
        with self.state.update() as state:
            now = self.clock()
            bucket = state.setdefault("pace", {}).get(self.name) or {"level": burst, "t": now}
            level = min(burst, bucket["level"] + rate * max(0.0, now - bucket["t"]))
            wait = 0.0 if level >= 1.0 else (1.0 - level) / rate
            state["pace"][self.name] = {"level": level - 1.0 if wait == 0.0 else level, "t": now}
        return wait


# -------------------------------------------------------------------------------------------------------- spending
class CeilingReached(Exception):
    """The next call could push the shared spending past the ceiling (details in the message)."""


@dataclass
class SharedSpending:
    """Spending of every job on this cache: the append-only ledger plus the estimates of calls in flight."""

    state: SharedState
    max_cost_usd: float | None
    reservation_ttl_s: float = 300.0  # a killed job's booking stops counting after this long

    def __post_init__(self):
        self.run = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def reserve(self, usd: float, what: str) -> str | None:
        """Book ``usd`` for a call about to be sent, or raise CeilingReached (nothing is booked then)."""
        if self.max_cost_usd is None:
            return None  # no ceiling: nothing to book (the paid call still joins the ledger in ``settle``)
        token = uuid.uuid4().hex
        with self.state.update() as state:
            now = time.time()
            held = {k: v for k, v in state.get("reserved", {}).items() if v["expires"] > now}
            spent, in_flight = state.get("spent_usd", 0.0), sum(v["usd"] for v in held.values())
            if self.max_cost_usd is not None and spent + in_flight + usd > self.max_cost_usd:
                state["reserved"] = held
                raise CeilingReached(f"spent ${spent:.6f} under this cache (all jobs), ${in_flight:.6f} in flight, "
                                     f"the next {what} call may cost ${usd:.6f}")
            held[token] = {"usd": usd, "expires": now + self.reservation_ttl_s}
            state["reserved"] = held
        return token

    def settle(self, token: str | None, record: dict | None) -> None:
        """Drop the booking; a paid call (``record``: experiment, provider, model, tokens, cost) joins the ledger."""
        with self.state.update() as state:
            state.get("reserved", {}).pop(token, None)
            if record is not None:
                self.state.append_ledger({**record, "run": self.run, "time": round(time.time(), 3)})

    def totals(self, **match) -> dict:
        """Sums over the ledger lines whose fields equal ``match`` (e.g. experiment=, provider=, model=)."""
        lines = [r for r in self.state.ledger_lines() if all(r.get(k) == v for k, v in match.items())]
        return {"runs": len({r.get("run") for r in lines}), "calls": sum(r.get("usable", True) for r in lines),
                "input_tokens": sum(int(r.get("input_tokens", 0)) for r in lines),
                "output_tokens": sum(int(r.get("output_tokens", 0)) for r in lines),
                "cost_usd": round(sum(float(r.get("cost_usd", 0.0)) for r in lines), 8)}
