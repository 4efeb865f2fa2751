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

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+=-]*$")


@lru_cache(maxsize=None)
def schema(name: str) -> dict:
    return json.loads(resources.files("meds1.schemas").joinpath(f"{name}.schema.json").read_text())


@lru_cache(maxsize=None)
def _validator(name: str, ref: str | None = None) -> jsonschema.Validator:
    root = schema(name)
    sub = root if ref is None else {"$ref": f"#/$defs/{ref}", "$defs": root["$defs"]}
    return jsonschema.Draft202012Validator(sub)


def load_json(path: Path, shown: str | None = None) -> Any:
    """Parse a JSON file; a syntax error names the file (as the user wrote it), the line and the column."""
    shown = shown or str(path)
    if not path.exists():
        raise MedS1Error("file not found", file=shown)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise MedS1Error(f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}", file=shown) from None


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
    if not SAFE_NAME.match(name) or ".." in name:
        raise MedS1Error("experiment name must be path-safe (letters, digits, _ . : + = -; no '/', '..' or spaces)",
                         file=file, experiment=name)
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
