"""Typed settings: a dataclass owns its defaults and validation; its JSON Schema is derived from its type hints.

Every settings block a user writes (a plug-in's options, ``training_params``, ``eval``, a curation block) is a
dataclass declared once. ``build(cls, data, ...)`` validates ``data`` against the schema derived from ``cls`` and
returns the instance, or raises ONE MedS1Error line naming file, experiment and key::

    @dataclass(frozen=True)
    class DiversityOptions:
        column: str = opt("Complex_CoT", "column to embed")
        cluster_percentage: float = opt(10, "k = this % of n_samples", exclusiveMinimum=0, maximum=100)

    build(DiversityOptions, {"column": "Question"}, file="results.json", experiment="x", prefix="config.curation")

Whole-number floats (``48.0``) are accepted where an integer is meant and become ints; NaN and infinities are refused.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from functools import lru_cache
from typing import Any, Literal, Union

import jsonschema

from meds1.errors import MedS1Error

MISSING = dataclasses.MISSING


def opt(default: Any = MISSING, doc: str = "", *, factory=None, **schema) -> Any:
    """A settings field: its default, one line of documentation and extra JSON Schema keywords (minimum, ...)."""
    meta = {"doc": doc, "schema": schema}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: json.loads(json.dumps(value)), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ------------------------------------------------------------------------------------------------- schema from hints
def type_schema(hint) -> dict:
    """JSON Schema for one type hint (int, float, str, bool, None, Literal, list, dict, Union, dataclass, Any)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return {}
    if hint is type(None) or hint is None:
        return {"type": "null"}
    if origin in (Union, types.UnionType):
        return {"anyOf": [type_schema(a) for a in args]}
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        return {"type": "array", **({"items": type_schema(args[0])} if args else {})}
    if origin is dict or hint is dict:
        return {"type": "object", **({"additionalProperties": type_schema(args[1])} if args else {})}
    if dataclasses.is_dataclass(hint):
        return schema_of(hint)
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if hint in simple:
        return {"type": simple[hint]}
    raise TypeError(f"no JSON Schema for type hint {hint!r}")


@lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


@lru_cache(maxsize=None)
def schema_of(cls) -> dict:
    """The JSON Schema of a settings dataclass: one property per field, no other keys, required = no default."""
    props, required = {}, []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        prop = {**type_schema(_hints(cls)[f.name]), **f.metadata.get("schema", {})}
        if f.metadata.get("doc"):
            prop["description"] = f.metadata["doc"]
        props[f.name] = prop
        if f.default is MISSING and f.default_factory is MISSING:
            required.append(f.name)
    return {"type": "object", "additionalProperties": False, "properties": props,
            **({"required": required} if required else {})}


def defaults(cls) -> dict:
    """Every field that has a default, with that default (a fresh copy)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


# ---------------------------------------------------------------------------------------------------------- building
def build(cls, data: dict | None, *, file=None, experiment=None, prefix: str = "", partial: bool = False,
          from_text: bool = False):
    """Validate ``data`` against ``cls`` and return an instance (defaults filled in).

    ``partial``: check types only (a block that overrides a parent may omit required keys); returns the checked dict.
    ``from_text``: numbers may arrive as strings ("2"), as Snakemake's ``--config`` passes nested values.
    """
    data = _drop_nulls(cls, {} if data is None else data)
    if from_text:
        data = _numbers_from_text(cls, data)
    validate(data, schema_of(cls), file=file, experiment=experiment, prefix=prefix, partial=partial)
    data = coerce(cls, data)
    if partial:
        return data
    try:
        instance = cls(**data)
    except MedS1Error as err:  # a cross-field check in __post_init__
        raise _located(err, file, experiment, prefix) from None
    check = getattr(instance, "check", None)
    if callable(check):
        try:
            check()
        except MedS1Error as err:
            raise _located(err, file, experiment, prefix) from None
    return instance


def _drop_nulls(cls, data: dict) -> dict:
    """``null`` for a field that has a default and does not take null means "the default" (seed files write it)."""
    if not isinstance(data, dict):
        return data
    props, fields = schema_of(cls)["properties"], {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for key, value in data.items():
        f = fields.get(key)
        has_default = f is not None and (f.default is not MISSING or f.default_factory is not MISSING)
        if value is None and has_default and not _takes_null(props.get(key, {})):
            continue
        nested = _dataclass_in(_hints(cls).get(key))
        out[key] = _drop_nulls(nested, value) if nested is not None and isinstance(value, dict) else value
    return out


def _numbers_from_text(cls, data: dict) -> dict:
    out = {}
    for key, value in data.items():
        kinds = _kinds(_hints(cls).get(key))
        if isinstance(value, str) and str not in kinds and (int in kinds or float in kinds):
            try:
                value = int(value) if int in kinds and value.strip().lstrip("+-").isdigit() else float(value)
            except ValueError:
                pass
        out[key] = value
    return out


def _kinds(hint) -> tuple:
    return typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)


def _dataclass_in(hint):
    kinds = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
    return next((k for k in kinds if dataclasses.is_dataclass(k)), None)


def _takes_null(prop: dict) -> bool:
    return prop.get("type") == "null" or any(_takes_null(p) for p in prop.get("anyOf", [])) or prop == {}


def _located(err: MedS1Error, file, experiment, prefix) -> MedS1Error:
    """The same error (its "did you mean" kept), now naming where the block came from."""
    err.key = ".".join(p for p in [prefix, err.key] if p) or None
    err.file, err.experiment = err.file or file, err.experiment or experiment
    return err


def coerce(cls, data: dict) -> dict:
    """Whole-number floats -> int where the field is an int; nested settings dataclasses built recursively."""
    hints, out = _hints(cls), dict(data)
    for name, value in data.items():
        hint = hints.get(name)
        if hint is None:
            continue
        out[name] = _coerce_value(hint, value)
    return out


def _coerce_value(hint, value):
    kinds = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
    if isinstance(value, float) and int in kinds and float not in kinds and value.is_integer():
        return int(value)
    for kind in kinds:
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            return kind(**coerce(kind, value))
    return value


def validate(instance, schema: dict, *, file=None, experiment=None, prefix: str = "", partial: bool = False) -> None:
    """Raise the first schema error (shallowest first) as a one-line MedS1Error; non-finite numbers are refused."""
    bad = _non_finite(instance)
    if bad is not None:
        key = ".".join(p for p in [prefix, bad] if p) or None
        raise MedS1Error("must be a finite number (NaN and Infinity are not allowed)", file=file,
                         experiment=experiment, key=key)
    errors = [e for e in _validator(schema).iter_errors(instance) if not (partial and e.validator == "required")]
    errors.sort(key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise to_error(errors[0], file=file, experiment=experiment, prefix=prefix)


_VALIDATORS: dict[int, tuple[dict, jsonschema.Validator]] = {}


def _validator(schema: dict) -> jsonschema.Validator:
    """One compiled validator per schema object (the schemas of settings classes are cached, so ids are stable)."""
    hit = _VALIDATORS.get(id(schema))
    if hit is None or hit[0] is not schema:
        hit = _VALIDATORS[id(schema)] = (schema, jsonschema.Draft202012Validator(schema))
    return hit[1]


def _non_finite(value, path: str = "") -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def to_error(err: jsonschema.ValidationError, *, file, experiment, prefix: str) -> MedS1Error:
    """One jsonschema error as a one-line MedS1Error with a "did you mean" where a name was mistyped."""
    path = [str(p) for p in err.absolute_path]
    if err.validator in ("anyOf", "oneOf") and err.context:  # e.g. extract: a name or a list of names
        best = max(err.context, key=lambda e: (len(list(e.relative_path)), e.validator == "enum"))
        if best.validator in ("enum", "additionalProperties", "minimum", "exclusiveMinimum", "maximum"):
            err, path = best, path + [str(p) for p in best.relative_path]
    key = ".".join(p for p in [prefix, *path] if p)
    where = {"file": file, "experiment": experiment}
    v = err.validator
    if v == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        unknown = sorted(set(err.instance) - set(allowed))[0]
        key = ".".join(p for p in [key, unknown] if p)
        return MedS1Error(f"unknown key '{unknown}' (known: {', '.join(allowed)})", **where, key=key,
                          choices=allowed, value=unknown)
    if v == "enum":
        shown = ", ".join(json.dumps(c) for c in err.validator_value)
        return MedS1Error(f"{json.dumps(err.instance)} is not one of: {shown}", **where, key=key,
                          choices=[str(c) for c in err.validator_value if c is not None], value=str(err.instance))
    if v == "required":
        missing = err.message.split(" is a required")[0].strip("'")
        return MedS1Error(f"missing required key '{missing}'", **where, key=key or None)
    if v == "type":
        want = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
        return MedS1Error(f"must be {want}, got {json.dumps(err.instance)}", **where, key=key)
    if v == "oneOf" and all(c.validator == "required" for c in err.context or []):
        keys = ["+".join(o.get("required", [])) for o in err.schema["oneOf"]]
        given = [k for k in keys if isinstance(err.instance, dict) and k in err.instance]
        what = "gives both" if len(given) > 1 else "gives none"
        return MedS1Error(f"needs exactly one of {' / '.join(keys)} ({what})", **where, key=key or None)
    if v in ("anyOf", "oneOf"):
        types_ = [c.validator_value for c in err.context or [] if c.validator == "type"]
        if types_:
            want = " or ".join(t if isinstance(t, str) else " or ".join(t) for t in types_)
            return MedS1Error(f"must be {want}, got {json.dumps(err.instance)}", **where, key=key)
        return MedS1Error(f"{json.dumps(err.instance)} is not a valid value here", **where, key=key)
    return MedS1Error(err.message, **where, key=key)
