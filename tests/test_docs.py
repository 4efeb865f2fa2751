"""docs/internals.md stays true to the code: its layer table is the one tests/test_layering.py enforces, and every
key of every stage spec the registry hands out is documented under that stage."""
from __future__ import annotations

import re

import pytest

from meds1.registry import load_registry
from meds1.registry.workflow import load_yaml_file
from test_layering import ALLOWED, BASE
from workflow import REPO

INTERNALS = (REPO / "docs" / "internals.md").read_text(encoding="utf-8")


def layer_rows() -> list[tuple[list[str], set[str]]]:
    """(layers, what they may import) for every row of the Layers table whose rule starts with "base"."""
    blocks = INTERNALS.split("## Layers", 1)[1].split("\n\n")
    table = next(b for b in blocks if b.startswith("| layer"))
    rows = []
    for line in table.splitlines()[2:]:
        layers_cell, rule = [c.strip() for c in line.strip("|").split("|")]
        if rule.startswith("base"):
            rows.append((re.findall(r"`([\w.]+)`", layers_cell), BASE | set(re.findall(r"`([\w.]+)`", rule))))
    return rows


def test_the_layer_table_is_the_enforced_one():
    rows = layer_rows()
    assert len(rows) >= 8
    for layers, allowed in rows:
        for layer in layers:
            assert ALLOWED[layer] == allowed, layer
    documented = {layer for layers, _ in rows for layer in layers} | BASE | {"cli"}
    assert documented == set(ALLOWED)


@pytest.fixture(scope="module")
def repo_registry():
    return load_registry(load_yaml_file(REPO / "workflow_config.yaml"), REPO)


@pytest.mark.parametrize("experiment, stage, heading", [
    ("demo-random-shuffle", "curate", "**curate**"), ("medqa-1k-s1", "curate", "**curate**"),
    ("demo-random", "train", "**train**"), ("demo-random", "eval", "**eval**"), ("demo-base", "eval", "**eval**"),
])
def test_every_spec_key_is_documented(repo_registry, experiment, stage, heading):
    section = INTERNALS.split(heading, 1)[1].split("\n\n", 1)[0]
    spec = repo_registry.spec(experiment, stage)
    missing = [key for key in spec if f'"{key}"' not in section]
    assert missing == [], f"{stage} spec keys not in docs/internals.md: {missing}"
    for block in ("curation", "sampling", "eval"):
        if isinstance(spec.get(block), dict) and stage != "train":
            assert [k for k in spec[block] if f'"{k}"' not in section] == [], block
