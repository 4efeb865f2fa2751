"""Evaluation items: load any supported dataset shape into canonical multiple-choice items, then select a subset.

Canonical item (docs/internals.md): ``{"id", "source", "question", "options": {"A": ...}, "answer_idx": "B",
"answer": "<option text>"}``. Supported inputs, chosen by the dataset entry of config.json:

- ``file_path`` to ``.json``/``.jsonl``: the huatuo-eval shape ``{source: [items]}`` or a flat list of items (with a
  ``source`` field, or the entry's ``source``/``key`` naming the one source); UTF-8 (a BOM is fine);
- ``file_path`` to ``.csv`` (one item a row, options as separate columns named by ``columns``), ``.parquet``, or a
  folder written by ``datasets.save_to_disk``;
- ``hf_path`` + ``hf_config`` + ``hf_split``: ``datasets.load_dataset`` (hub id or local folder).

``columns`` maps canonical names to the dataset's own (a list of columns for ``options`` makes an option list), and
``options_from`` names GPQA-style answer columns, the correct one first; those are shuffled with a seeded shuffle
per item so the correct answer is not always "A".

Example entry: ``{"key": "medmcqa", "hf_path": "openlifescienceai/medmcqa", "hf_split": "validation",
"columns": {"options": ["opa", "opb", "opc", "opd"], "answer_idx": "cop"}, "source": "MedMCQA_validation"}``
"""
from __future__ import annotations

import json
import random
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterable

from meds1.data.files import jsonl_objects, read_text
from meds1.errors import MedS1Error
from meds1.plugins import PluginRegistry

LETTERS = string.ascii_uppercase
CANONICAL = ("id", "source", "question", "options", "answer_idx", "answer")

# kind -> fn(entry, location) -> list of (source or None, raw row dict)
READERS: PluginRegistry = PluginRegistry("eval dataset reader")


# ----------------------------------------------------------------------------------------------------------- readers
def _group_shape_rows(obj: Any, label: str) -> list[tuple[str | None, dict]]:
    """Rows from parsed JSON: ``{source: [items]}`` or ``[items]`` (each optionally carrying ``source``)."""
    if isinstance(obj, Mapping):
        if not all(isinstance(v, list) for v in obj.values()):
            raise MedS1Error("expected {source: [items]} or a list of items", file=label)
        return [(str(src), row) for src, rows in obj.items() for row in rows]
    if isinstance(obj, list):
        return [(None, row) for row in obj]
    raise MedS1Error(f"expected {{source: [items]}} or a list of items, got {type(obj).__name__}", file=label)


@READERS.register("json")
def read_json_file(entry: dict, path: Path) -> list[tuple[str | None, dict]]:
    try:
        obj = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise MedS1Error(f"not valid JSON ({err})", file=path) from None
    return _group_shape_rows(obj, str(path))


@READERS.register("csv")
def read_csv_file(entry: dict, path: Path) -> list[tuple[str | None, dict]]:
    """One item a row; every cell is text (no NaN for empty cells), so answer letters and ids stay as written."""
    import io

    import pandas as pd

    try:
        frame = pd.read_csv(io.StringIO(read_text(path)), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise MedS1Error(f"not a readable CSV file ({first})", file=path) from None
    return [(None, row) for row in frame.to_dict(orient="records")]


@READERS.register("jsonl")
def read_jsonl_file(entry: dict, path: Path) -> list[tuple[str | None, dict]]:
    rows: list[tuple[str | None, dict]] = []
    for _, obj in jsonl_objects(path):
        # A line may itself be a {source: [items]} group (huatuo-eval shape split across lines).
        is_group = isinstance(obj, Mapping) and obj and all(isinstance(v, list) for v in obj.values())
        rows.extend(_group_shape_rows(obj, str(path)) if is_group else [(None, obj)])
    return rows


@READERS.register("parquet")
def read_parquet_file(entry: dict, path: Path) -> list[tuple[str | None, dict]]:
    import pandas as pd

    return [(None, row) for row in pd.read_parquet(path).to_dict(orient="records")]


@READERS.register("saved")
def read_saved_dataset(entry: dict, path: Path) -> list[tuple[str | None, dict]]:
    import datasets

    return [(None, dict(row)) for row in _pick_split(datasets.load_from_disk(str(path)), entry, str(path))]


@READERS.register("hub")
def read_hub_dataset(entry: dict, location: str) -> list[tuple[str | None, dict]]:
    import datasets

    try:
        loaded = datasets.load_dataset(location, entry.get("hf_config"), split=entry.get("hf_split"))
    except Exception as err:  # offline, unknown id, bad config: all reach the user as one line
        first = (str(err).strip().splitlines() or [""])[0]
        raise MedS1Error(f"cannot load dataset ({type(err).__name__}: {first})", file=location, key="hf_path") from None
    return [(None, dict(row)) for row in _pick_split(loaded, entry, location)]


def _pick_split(loaded, entry: dict, label: str):
    """A DatasetDict needs a split: the entry's ``hf_split``, else its only split."""
    if not hasattr(loaded, "keys"):  # already a Dataset
        return loaded
    split = entry.get("hf_split")
    if split is None and len(loaded) == 1:
        split = next(iter(loaded))
    if split not in loaded:
        raise MedS1Error(f"no split '{split}' (splits: {', '.join(loaded)})", file=label, key="hf_split",
                         choices=list(loaded), value=split)
    return loaded[split]


def _reader_for(entry: dict, base_dir: Path) -> tuple[str, Any, str]:
    """(reader kind, location passed to the reader, label used in error messages)."""
    if entry.get("file_path"):
        path = Path(entry["file_path"])
        path = path if path.is_absolute() else Path(base_dir) / path
        if not path.exists():
            raise MedS1Error("eval dataset file not found", file=path, key="file_path")
        if path.is_dir():
            return "saved", path, str(path)
        kind = path.suffix.lower().lstrip(".")
        if kind not in READERS:
            raise MedS1Error(f"unsupported eval dataset file type '.{kind}' (use .json, .jsonl, .csv, .parquet or "
                             "a saved dataset folder)", file=path, key="file_path")
        return kind, path, str(path)
    if entry.get("hf_path"):
        local = Path(base_dir) / entry["hf_path"]
        location = str(local) if local.exists() else entry["hf_path"]  # a local folder for load_dataset, or a hub id
        return "hub", location, entry["hf_path"]
    raise MedS1Error("eval dataset entry needs 'file_path' or 'hf_path'", key=entry.get("key") or "dataset")


# ---------------------------------------------------------------------------------------------- canonical items
class _RowError(Exception):
    """A problem with one row; turned into a MedS1Error naming file, source and row by the caller."""


def normalize_options(value: Any) -> dict[str, str]:
    """Options as ``{letter: text}``; lists (and JSON strings of lists/dicts) become letters A, B, C, ..."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise _RowError("'options' must be a mapping or a list, got a plain string") from None
    if hasattr(value, "tolist"):  # numpy arrays from parquet
        value = value.tolist()
    if isinstance(value, Mapping):
        # parquet structs hold every key seen in any row; absent options come back as None
        return {str(k).strip(): str(v) for k, v in value.items() if v is not None and str(v).strip() != ""}
    if isinstance(value, (list, tuple)):
        if len(value) > len(LETTERS):
            raise _RowError(f"{len(value)} options is more than {len(LETTERS)} letters")
        return {LETTERS[i]: str(v) for i, v in enumerate(value)}
    raise _RowError(f"'options' must be a mapping or a list, got {type(value).__name__}")


def normalize_answer_idx(raw: Any, options: dict[str, str], answer: Any) -> str:
    """The correct option's letter from a letter ('B', '(b)', 'B.'), a 0-based index, or the answer text."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        matches = [k for k, v in options.items() if answer is not None and v.strip() == str(answer).strip()]
        if len(matches) != 1:
            raise _RowError("no 'answer_idx' and 'answer' does not name exactly one option")
        return matches[0]
    if hasattr(raw, "item"):
        raw = raw.item()
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 0 <= raw < len(LETTERS):
            raise _RowError(f"answer_idx {raw} is not among options {', '.join(options)}")
        letter = LETTERS[raw]
    else:
        letter = str(raw).strip().strip("().:").strip()
        letter = letter.upper() if len(letter) == 1 else letter
    if letter not in options:
        raise _RowError(f"answer_idx '{raw}' is not among options {', '.join(options)}")
    return letter


def _apply_columns(row: dict, columns: Mapping) -> dict:
    """Rename dataset columns to canonical names; a list of columns becomes a list value (e.g. options)."""
    mapped = dict(row)
    for canonical, source_col in (columns or {}).items():
        cols = source_col if isinstance(source_col, list) else [source_col]
        missing = [c for c in cols if c not in row]
        if missing:
            raise _RowError(f"missing column(s) {', '.join(map(repr, missing))} for '{canonical}' "
                            f"(columns: {', '.join(map(str, row))})")
        mapped[canonical] = [row[c] for c in cols] if isinstance(source_col, list) else row[source_col]
    return mapped


def _shuffled_options(row: dict, columns: list[str], *, seed: int, item_id: str) -> tuple[dict[str, str], str]:
    """GPQA style: ``columns[0]`` holds the correct answer; shuffle all with a per-item seeded RNG."""
    missing = [c for c in columns if c not in row]
    if missing:
        raise _RowError(f"missing column(s) {', '.join(map(repr, missing))} named in 'options_from'")
    texts = [str(row[c]).strip() for c in columns]
    order = list(range(len(texts)))
    random.Random(f"{seed}:{item_id}").shuffle(order)
    options = {LETTERS[pos]: texts[i] for pos, i in enumerate(order)}
    return options, LETTERS[order.index(0)]


def to_canonical(row: dict, *, source: str, index: int, entry: dict, seed: int) -> dict:
    """One raw row -> canonical item (raises _RowError on bad data)."""
    if not isinstance(row, Mapping):
        raise _RowError(f"expected an object, got {type(row).__name__}")
    mapped = _apply_columns(row, entry.get("columns") or {})
    raw_id = mapped.get("id")
    item_id = str(raw_id) if raw_id not in (None, "") else f"{source}-{index}"
    if "question" not in mapped:
        raise _RowError(f"missing required column 'question' (columns: {', '.join(map(str, mapped))})")
    question = mapped["question"]
    if question is None or not str(question).strip():
        raise _RowError("the question is blank")
    if entry.get("options_from"):
        options, answer_idx = _shuffled_options(mapped, list(entry["options_from"]), seed=seed, item_id=item_id)
    else:
        if mapped.get("options") is None:
            raise _RowError(f"missing required column 'options' (columns: {', '.join(map(str, mapped))})")
        options = normalize_options(mapped["options"])
        if len(options) < 2:
            raise _RowError(f"needs at least 2 options, got {len(options)}")
        answer_idx = normalize_answer_idx(mapped.get("answer_idx"), options, mapped.get("answer"))
    return {"id": item_id, "source": source, "question": str(question).strip(), "options": options,
            "answer_idx": answer_idx, "answer": options[answer_idx]}


def _default_source(entry: dict, label: str) -> str:
    return str(entry.get("source") or entry.get("key") or Path(label).stem)


def load_eval_items(entry: dict, *, base_dir: str | Path = ".", seed: int = 0) -> list[dict]:
    """Load and validate a dataset entry as canonical eval items (file order, ids unique)."""
    kind, location, label = _reader_for(entry, Path(base_dir))
    raw = READERS.get(kind)(entry, location)
    if not raw:
        raise MedS1Error("eval dataset has no items", file=label)
    items, seen, per_source = [], {}, {}
    for group_source, row in raw:
        source_col = (entry.get("columns") or {}).get("source", "source")
        own = row.get(source_col) if isinstance(row, Mapping) else None
        source = str(group_source or own or _default_source(entry, label))
        index = per_source[source] = per_source.get(source, -1) + 1
        try:
            item = to_canonical(row, source=source, index=index, entry=entry, seed=seed)
        except _RowError as err:
            raise MedS1Error(f"source '{source}' row {index}: {err}", file=label) from None
        if item["id"] in seen:
            raise MedS1Error(f"source '{source}' row {index}: duplicated id '{item['id']}' (first seen in "
                             f"source '{seen[item['id']][0]}' row {seen[item['id']][1]})", file=label)
        seen[item["id"]] = (source, index)
        items.append(item)
    return items


# ------------------------------------------------------------------------------------------------------ selection
def select_items(items: list[dict], eval_sample: int | None = None, limit: int | None = None, seed: int = 0,
                 exclude_ids: Iterable[str] = ()) -> list[dict]:
    """Subset per source, keeping file order.

    ``exclude_ids``: drop these first (e.g. questions seen in curation). ``eval_sample``: a seeded random subset of
    that many per source (the same seed always picks the same questions). ``limit``: the first N per source, for quick
    runs (applied after ``eval_sample``).
    """
    excluded = {str(i) for i in exclude_ids}
    by_source: dict[str, list[int]] = {}
    for pos, item in enumerate(items):
        if item["id"] not in excluded:
            by_source.setdefault(item["source"], []).append(pos)
    keep: list[int] = []
    for source, positions in by_source.items():
        if eval_sample is not None and eval_sample < len(positions):
            positions = sorted(random.Random(f"{seed}:{source}").sample(positions, eval_sample))
        if limit is not None:
            positions = positions[:limit]
        keep.extend(positions)
    return [items[pos] for pos in sorted(keep)]


def probe_ids(*, stats=None, rows=None, dataset: str | None = None) -> list[str]:
    """The probe questions a curation used, to leave out of the eval of ``dataset`` (an eval_datasets key).

    curated/{exp}/stats.json ``"probes": {"dataset", "ids"}`` (every probe, used or not) when it is there and names
    ``dataset``; otherwise the ``probe_id`` column of curated/{exp}/rows.parquet (older curations).
    """
    import pandas as pd

    if stats is not None:
        probes = json.loads(Path(stats).read_text(encoding="utf-8")).get("probes")
        if probes is not None:
            same = dataset is None or probes.get("dataset") in (None, dataset)
            return sorted(str(i) for i in probes.get("ids") or []) if same else []
    if rows is None:
        return []
    table = pd.read_parquet(rows)
    return sorted(table["probe_id"].dropna().astype(str).unique()) if "probe_id" in table.columns else []
