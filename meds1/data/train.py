"""Training datasets -> one pandas frame with canonical columns ``id, Question, Complex_CoT, Response`` (+ options).

A dataset entry (config.json ``train_datasets``) is either ``file_path`` (.json list, .jsonl, .parquet or a folder
written by ``datasets.save_to_disk``) or ``hf_path`` + ``hf_config`` + ``hf_split``; ``columns`` maps canonical names to
the dataset's own column names.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from meds1.errors import MedS1Error

REQUIRED = ("Question", "Complex_CoT", "Response")
OPTIONAL = ("id", "options", "answer_idx", "answer")


def _read_file(path: Path) -> pd.DataFrame:
    if path.is_dir():
        from datasets import load_from_disk

        ds = load_from_disk(str(path))
        ds = ds["train"] if hasattr(ds, "keys") else ds
        return ds.to_pandas()
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):  # {source: [rows]} like the eval sets
        data = [dict(r, source=src) for src, rows in data.items() for r in rows]
    return pd.DataFrame(data)


def _read_hub(entry: dict) -> pd.DataFrame:
    from datasets import load_dataset

    ds = load_dataset(entry["hf_path"], entry.get("hf_config"), split=entry.get("hf_split") or "train")
    return ds.to_pandas()


def read_raw(entry: dict) -> tuple[pd.DataFrame, str]:
    """The dataset as stored, and a name for error messages."""
    if "file_path" in entry:
        path = Path(entry["file_path"])
        if not path.exists():
            raise MedS1Error("dataset file not found", file=path, key=f"train_datasets.{entry.get('key')}.file_path")
        try:
            return _read_file(path), str(path)
        except (ValueError, json.JSONDecodeError) as err:
            raise MedS1Error(f"cannot read dataset: {err}", file=path) from None
    try:
        return _read_hub(entry), entry["hf_path"]
    except Exception as err:  # hub errors are many types; say which dataset and how to fix it
        raise MedS1Error(f"cannot load '{entry['hf_path']}' from the hub ({type(err).__name__}); "
                         "download it and set file_path", key=f"train_datasets.{entry.get('key')}") from None


def canonicalise(df: pd.DataFrame, entry: dict, where: str) -> pd.DataFrame:
    mapping = {src: canon for canon, src in (entry.get("columns") or {}).items()}
    df = df.rename(columns=mapping)
    if df.empty:
        raise MedS1Error("dataset is empty", file=where)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise MedS1Error(f"missing required column(s) {missing} (map them with 'columns' in config.json)",
                         file=where, key=f"train_datasets.{entry.get('key')}.columns")
    if "id" not in df.columns:
        df["id"] = [f"{entry.get('key', 'row')}-{i}" for i in range(len(df))]
    df["id"] = df["id"].astype(str)
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise MedS1Error(f"duplicated id '{dup.iloc[0]}'", file=where, key="id")
    _check_answers(df, where)
    for col in REQUIRED:
        df[col] = df[col].fillna("").astype(str)
    return df.reset_index(drop=True)


def _check_answers(df: pd.DataFrame, where: str) -> None:
    if "options" not in df.columns or "answer_idx" not in df.columns:
        return
    for i, (opts, idx) in enumerate(zip(df["options"], df["answer_idx"])):
        if isinstance(opts, dict) and idx not in opts:
            raise MedS1Error(f"row {i} (id {df['id'].iloc[i]}): answer_idx '{idx}' is not among its options "
                             f"{sorted(opts)}", file=where, key="answer_idx")


def load_train_dataset(entry: dict) -> pd.DataFrame:
    df, where = read_raw(entry)
    return canonicalise(df, entry, where)
