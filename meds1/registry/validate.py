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
        raise _to_error(errors[0], file=file, experiment=experiment, prefix=prefix)


def _to_error(err: jsonschema.ValidationError, *, file, experiment, prefix: str) -> MedS1Error:
    path = [str(p) for p in err.absolute_path]
    if err.validator == "anyOf" and err.context:  # e.g. extract: a name or a list of names
        enums = [e for e in err.context if e.validator == "enum"]
        best = max(enums, key=lambda e: len(list(e.relative_path))) if enums else None
        if best is not None:
            err = best
            path = path + [str(p) for p in best.relative_path]
    key = ".".join(p for p in [prefix, *path] if p)
    v = err.validator
    if v == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        unknown = sorted(set(err.instance) - set(allowed))[0]
        key = ".".join(p for p in [key, unknown] if p)
        return MedS1Error(f"unknown key '{unknown}'", file=file, experiment=experiment, key=key,
                          choices=allowed, value=unknown)
    if v == "enum":
        shown = ", ".join(json.dumps(c) for c in err.validator_value)
        return MedS1Error(f"{json.dumps(err.instance)} is not one of: {shown}", file=file, experiment=experiment,
                          key=key, choices=[str(c) for c in err.validator_value if c is not None], value=str(err.instance))
    if v == "required":
        missing = err.message.split(" is a required")[0].strip("'")
        return MedS1Error(f"missing required key '{missing}'", file=file, experiment=experiment, key=key or None)
    if v == "type":
        want = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
        return MedS1Error(f"must be {want}, got {json.dumps(err.instance)}", file=file, experiment=experiment, key=key)
    return MedS1Error(err.message, file=file, experiment=experiment, key=key)


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


def check_experiment_resolved(name: str, config: dict, file) -> None:
    """An experiment built with ``extends``/``same as``: the merged config must be complete and valid."""
    check(config, "results", ref="config", file=file, experiment=name, prefix="config")
