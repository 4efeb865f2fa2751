"""Training datasets -> one pandas frame with canonical columns ``id, Question, Complex_CoT, Response`` (+ MCQ columns).

    df = load_train_dataset({"key": "huatuo-sft", "file_path": "data/sft.json"})
    df.attrs["load_report"]   # {"rows_read": 25371, "rows": 25368, "dropped": {"empty Complex_CoT": 3}, ...}

A dataset entry (config.json ``train_datasets``) is ``file_path`` (.json, .jsonl, .csv, .parquet or a folder written by
``datasets.save_to_disk``) or ``hf_path`` + ``hf_config`` + ``hf_split``. ``columns`` maps canonical names to the
dataset's own names; ``normalise`` names a dataset normaliser (``meds1.data.normalise``: the seed's ``nejmcr``, ``s1``).
JSON may be a list of rows, ``{source: [rows]}``, or the seed's dict-of-columns layout (``{column: {row: value}}`` or
``{column: [values]}``, what ``pandas.DataFrame.to_json()`` writes).

Every loaded frame is in one deterministic order — sorted by Question, then by a hash of the row's content — so a
method sees the same rows in the same positions whatever the file order; rows without an ``id`` get one derived from
their content. Rows whose Question, Complex_CoT or Response is empty are dropped and counted (refused when they are
most of the file: that is a column-mapping mistake, not data). Bad data is one line naming file, row and column.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from meds1.data.files import jsonl_objects, read_text
from meds1.errors import MedS1Error

REQUIRED = ("Question", "Complex_CoT", "Response")
OPTIONAL = ("id", "options", "answer_idx", "answer")
MAX_EMPTY_SHARE = 0.5     # more empty rows than this in one column: refuse (a wrong mapping, not a few bad rows)
SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


# ------------------------------------------------------------------------------------------------------------ reading
def rows_from_json(data, path: Path) -> pd.DataFrame:
    """A list of rows, {source: [rows]}, or the dict-of-columns layout."""
    if isinstance(data, list):
        bad = next((i for i, r in enumerate(data) if not isinstance(r, dict)), None)
        if bad is not None:
            raise MedS1Error(f"row {bad}: expected an object, got {type(data[bad]).__name__}", file=path)
        return pd.DataFrame(data)
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()) \
            and all(isinstance(r, dict) for rows in data.values() for r in rows):
        return pd.DataFrame([dict(r, source=src) for src, rows in data.items() for r in rows])
    if isinstance(data, dict) and data and all(isinstance(v, (dict, list)) for v in data.values()):
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise MedS1Error(f"dict-of-columns JSON with columns of different lengths {sorted(lengths)}", file=path)
        frame = pd.DataFrame({col: (list(v.values()) if isinstance(v, dict) else v) for col, v in data.items()})
        return frame
    raise MedS1Error("unrecognised JSON layout: expected a list of rows, {source: [rows]} or {column: {row: value}}",
                     file=path)


def read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    for n, row in jsonl_objects(path):
        if not isinstance(row, dict):
            raise MedS1Error(f"line {n}: expected an object, got {type(row).__name__}", file=path)
        rows.append(row)
    return pd.DataFrame(rows)


def read_saved_dataset(path: Path) -> pd.DataFrame:
    from datasets import load_from_disk

    try:
        ds = load_from_disk(str(path))
    except FileNotFoundError:
        raise MedS1Error("folder is not a dataset saved with datasets.save_to_disk (no dataset_info.json / "
                         "dataset_dict.json); point file_path at a .json, .jsonl, .csv or .parquet file", file=path) \
            from None
    if hasattr(ds, "keys"):
        ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
    return ds.to_pandas()


def read_file(path: Path) -> pd.DataFrame:
    if path.is_dir():
        return read_saved_dataset(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    if suffix == ".json":
        text = read_text(path)
        try:
            return rows_from_json(json.loads(text), path)
        except json.JSONDecodeError as err:
            raise MedS1Error(f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}", file=path) from None
    raise MedS1Error(f"unsupported file type '{path.suffix}' (supported: {', '.join(SUFFIXES)} or a saved dataset "
                     "folder)", file=path)


def read_hub(entry: dict) -> pd.DataFrame:
    from datasets import load_dataset

    try:
        ds = load_dataset(entry["hf_path"], entry.get("hf_config"), split=entry.get("hf_split") or "train")
    except Exception as err:  # hub errors are many types (offline, gated, no such config): one line, how to fix
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise MedS1Error(f"cannot load '{entry['hf_path']}' from the hub ({type(err).__name__}: {first}); download "
                         "it and set file_path", file="config.json", key=f"train_datasets.{entry.get('key')}") \
            from None
    return ds.to_pandas()


def read_raw(entry: dict) -> tuple[pd.DataFrame, str]:
    """The dataset as stored, and a name for error messages."""
    if "file_path" not in entry:
        return read_hub(entry), entry["hf_path"]
    path = Path(entry["file_path"])
    if not path.exists():
        raise MedS1Error("dataset file not found", file=path, key=f"train_datasets.{entry.get('key')}.file_path")
    try:
        return read_file(path), str(path)
    except MedS1Error:
        raise
    except UnicodeDecodeError as err:
        raise MedS1Error(f"not UTF-8 text (offset {err.start}); save it as UTF-8", file=path) from None
    except (ValueError, OSError, pd.errors.ParserError) as err:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise MedS1Error(f"cannot read dataset ({type(err).__name__}: {first})", file=path) from None


# ------------------------------------------------------------------------------------------------------ canonical form
def text_cell(value, row: int, column: str, where: str) -> str:
    """A text cell as a string: None/NaN -> "", a one-element list -> its element (the seed's s1 data wraps traces)."""
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if len(value) > 1:
            raise MedS1Error(f"row {row}: column '{column}' holds a list of {len(value)} items, not a text (choose one "
                             "with a normaliser or a column mapping)", file=where, key=column)
        value = value[0] if value else ""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, (dict, list)):
        raise MedS1Error(f"row {row}: column '{column}' holds a {type(value).__name__}, not a text", file=where,
                         key=column)
    return str(value)


def option_map(value, row: int, where: str) -> dict | None:
    """MCQ options as {letter: text}: a dict (None entries dropped: parquet structs fill absent letters), a list
    (lettered A, B, ...) or a JSON string of either."""
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise MedS1Error(f"row {row}: column 'options' is not a JSON object or list", file=where,
                             key="options") from None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        value = {chr(ord("A") + i): v for i, v in enumerate(value)}
    if not isinstance(value, dict):
        raise MedS1Error(f"row {row}: column 'options' must map letters to texts, got {type(value).__name__}",
                         file=where, key="options")
    return {str(k): str(v) for k, v in value.items() if v is not None}


def check_answers(df: pd.DataFrame, where: str) -> None:
    """MCQ rows: answer_idx must be one of the row's option letters."""
    if "options" not in df.columns:
        return
    options = [option_map(v, i, where) for i, v in enumerate(df["options"])]
    df["options"] = options
    if "answer_idx" not in df.columns:
        return
    for i, (opts, idx) in enumerate(zip(options, df["answer_idx"])):
        if opts is None:
            continue
        if idx is None or str(idx).strip() not in opts:
            raise MedS1Error(f"row {i}: answer_idx {json.dumps(idx)} is not among its options {sorted(opts)}",
                             file=where, key="answer_idx")


def drop_empty(df: pd.DataFrame, where: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows with an empty or whitespace-only required text go; how many, by column (first empty column counts)."""
    empty = {c: df[c].str.strip() == "" for c in REQUIRED}
    for column, mask in empty.items():
        if mask.sum() > MAX_EMPTY_SHARE * len(df):
            raise MedS1Error(f"{int(mask.sum())} of {len(df)} rows have an empty '{column}': check the 'columns' "
                             "mapping in config.json", file=where, key=column)
    dropped, gone = {}, pd.Series(False, index=df.index)
    for column, mask in empty.items():
        new = mask & ~gone
        if new.any():
            dropped[f"empty {column}"] = int(new.sum())
        gone |= mask
    return df[~gone], dropped


def content_key(question: str, cot: str, response: str) -> str:
    return hashlib.sha256("\x1f".join((question, cot, response)).encode("utf-8")).hexdigest()


def in_content_order(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """Sort by Question, then by content hash; rows without an id get ``<key>-<hash prefix>`` (``-2``... for copies)."""
    df = df.assign(_content=[content_key(*t) for t in zip(df["Question"], df["Complex_CoT"], df["Response"])])
    df = df.sort_values(["Question", "_content"], kind="stable").reset_index(drop=True)
    given = df["id"] if "id" in df.columns else pd.Series([None] * len(df))
    seen: dict[str, int] = {}
    ids = []
    for h, own in zip(df["_content"], given):
        if own is not None and not (isinstance(own, float) and own != own) and str(own).strip():
            ids.append(str(own))
            continue
        seen[h] = seen.get(h, 0) + 1
        ids.append(f"{key}-{h[:12]}" + (f"-{seen[h]}" if seen[h] > 1 else ""))
    df["id"] = ids
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise MedS1Error(f"duplicated id '{dup.iloc[0]}'", key="id")
    return df.drop(columns="_content")


def canonicalise(df: pd.DataFrame, entry: dict, where: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Required text columns as strings, MCQ columns checked, empty rows dropped, content order and ids."""
    if df.empty:
        raise MedS1Error("dataset is empty", file=where)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise MedS1Error(f"missing required column(s) {missing} (columns: {', '.join(map(str, df.columns))}; map "
                         "them with 'columns' in config.json)", file=where,
                         key=f"train_datasets.{entry.get('key')}.columns")
    df = df.reset_index(drop=True)
    for col in REQUIRED:
        df[col] = [text_cell(v, i, col, where) for i, v in enumerate(df[col])]
    check_answers(df, where)
    df, dropped = drop_empty(df, where)
    try:
        return in_content_order(df, str(entry.get("key") or "row")), dropped
    except MedS1Error as err:
        raise MedS1Error(err.message, file=where, key=err.key) from None


def load_train_dataset(entry: dict, *, tokenizer_path: str | None = None) -> pd.DataFrame:
    """The dataset in canonical columns and content order; ``attrs["load_report"]`` says what was dropped.

    ``tokenizer_path``: the base model's tokenizer, for normalisers that filter by length (nejmcr)."""
    from meds1.data.normalise import normalise

    df, where = read_raw(entry)
    rows_read = len(df)
    df = df.rename(columns={src: canon for canon, src in (entry.get("columns") or {}).items()})
    df, dropped_by_normaliser = normalise(df, entry, where, tokenizer_path=tokenizer_path)
    df, dropped = canonicalise(df, entry, where)
    df.attrs["load_report"] = {"rows_read": rows_read, "rows": len(df), "dropped": {**dropped_by_normaliser, **dropped}}
    return df
