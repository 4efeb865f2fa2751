"""Strict validation of the three user files, with one-line errors naming file, experiment and key."""
from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from meds1.errors import MedS1Error
from meds1.options import to_error
from meds1.registry.resolve import same_as_target

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+=-]*")  # used with fullmatch: no trailing newline
MAX_NAME = 200  # experiment names are path components (plus suffixes) under a 255-byte file-system limit


@lru_cache(maxsize=None)
def schema(name: str) -> dict:
    return json.loads(resources.files("meds1.schemas").joinpath(f"{name}.schema.json").read_text())


@lru_cache(maxsize=None)
def _validator(name: str, ref: str | None = None) -> jsonschema.Validator:
    root = schema(name)
    sub = root if ref is None else {"$ref": f"#/$defs/{ref}", "$defs": root["$defs"]}
    return jsonschema.Draft202012Validator(sub)


def load_json(path: Path, shown: str | None = None) -> Any:
    """Parse a JSON file strictly: a syntax error names the file (as the user wrote it), line and column; a key
    given twice in one object, NaN/Infinity, a non-UTF-8 file or a folder are one-line errors too."""
    shown = shown or str(path)
    if not path.exists():
        raise MedS1Error("file not found", file=shown)
    if path.is_dir():
        raise MedS1Error("is a folder, not a JSON file", file=shown)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise MedS1Error(f"not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}): save it as "
                         "UTF-8", file=shown) from None
    except OSError as err:
        raise MedS1Error(f"cannot read ({err.strerror})", file=shown) from None
    return parse_json_text(text, shown)


def parse_json_text(text: str, shown: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(pairs, text, shown),
                          parse_constant=lambda name: _no_constant(name, text, shown))
    except json.JSONDecodeError as err:
        raise MedS1Error(f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}", file=shown) from None


def _unique_keys(pairs: list, text: str, shown: str) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            lines = _lines_of(rf'"{re.escape(key)}"\s*:', text)
            raise MedS1Error(f"key \"{key}\" is given twice in one object (lines {', '.join(map(str, lines))}): "
                             "the second would silently replace the first", file=shown)
        out[key] = value
    return out


def _no_constant(name: str, text: str, shown: str):
    lines = _lines_of(rf"(?<![\w\"]){re.escape(name)}(?![\w\"])", text)
    raise MedS1Error(f"{name} is not a number JSON allows (line {', '.join(map(str, lines)) or '?'})", file=shown)


def _lines_of(pattern: str, text: str) -> list[int]:
    return [text.count("\n", 0, m.start()) + 1 for m in re.finditer(pattern, text)]


def check(instance: Any, name: str, *, file, ref: str | None = None, experiment=None, prefix: str = "",
          partial: bool = False) -> None:
    """Validate against schema ``name`` (or its ``$defs/ref``); raise the first error as a one-line MedS1Error.

    ``partial``: a block that overrides an ``extends`` parent may omit required keys (checked once resolved).
    """
    errors = [e for e in _validator(name, ref).iter_errors(instance) if not (partial and e.validator == "required")]
    errors.sort(key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise to_error(errors[0], file=file, experiment=experiment, prefix=prefix)


def check_experiment_raw(name: str, entry: Any, file) -> None:
    """Structure of one raw registry entry; blocks given as ``"same as <exp>"`` are checked once resolved."""
    if not SAFE_NAME.fullmatch(name) or ".." in name:
        raise MedS1Error("experiment name must be path-safe (letters, digits, _ . : + = -; no '/', '..' or spaces)",
                         file=file, experiment=name.strip() or repr(name))
    if len(name) > MAX_NAME:
        raise MedS1Error(f"experiment name is {len(name)} characters; at most {MAX_NAME} (it becomes a folder name)",
                         file=file, experiment=name[:40] + "...")
    check(entry, "results", ref="experiment", file=file, experiment=name)
    config = entry["config"]
    blocks = schema("results")["$defs"]["config"]["properties"]
    for key, value in config.items():
        if key not in blocks:
            raise MedS1Error(f"unknown key '{key}'", file=file, experiment=name, key=f"config.{key}",
                             choices=blocks, value=key)
        if same_as_target(value) is None:
            check({key: value}, "results", ref="config", file=file, experiment=name, prefix="config",
                  partial="extends" in config)
