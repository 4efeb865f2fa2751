"""The package's layers, as drawn in docs/internals.md, enforced: an import (top-level or inside a function, or a
module named in a string for importlib) that crosses a forbidden arrow fails this test.

Base (errors, options, plugins, io, devices, tokenizers, text) <- neutral (data, matcher) <- llm <- traces <- curation;
evaluate and sft sit beside curation; plots stand alone; stages/registry/plan/cli tie the stages together.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "meds1"
BASE = {"errors", "options", "plugins", "io", "devices", "tokenizers", "text"}

# layer -> the layers it may import (besides itself)
ALLOWED = {
    "errors": set(), "options": {"errors"}, "plugins": {"errors", "options"}, "io": {"errors"},
    "devices": {"errors"}, "tokenizers": {"errors"}, "text": set(),
    "data": BASE, "matcher": BASE,
    "llm": BASE,
    "traces": BASE | {"data", "matcher", "llm"},
    "curation": BASE | {"data", "matcher", "llm", "traces"},
    "evaluate": BASE | {"data", "matcher", "traces.formats", "traces.examples"},
    "sft": BASE | {"data", "traces"},
    "plots": BASE,
    "models": BASE,
    "plan": BASE | {"sft.config", "evaluate.settings", "curation.settings", "registry.entries"},
    "stages": BASE | {"registry", "curation.settings", "evaluate.settings", "sft.config", "plan", "data"},
    "registry": BASE | {"plots.outputs", "stages", "curation.settings", "evaluate.settings", "sft.config", "plan", "traces.apply",
                        "traces.formats", "schemas", "llm.settings"},
    "cli": None,  # the scripts' entry glue may import anything
}


# Command-line entry points (``python -m ...``) may also read the registry and use the CLI glue.
ENTRY_POINT_EXTRA = {"registry", "cli", "stages"}


def layer_of(module: str) -> str:
    """'meds1.curation.methods.s1' -> 'curation'; top-level modules are their own layer."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def allowed(source: str, target: str) -> bool:
    src, dst = layer_of(source), target.split(".")[1:]
    rules = ALLOWED.get(src)
    if rules is None or dst[0] == src:
        return True
    return any(dst[: len(rule.split("."))] == rule.split(".") for rule in rules)


def imports_of(path: Path, strings: bool = True) -> list[tuple[int, str]]:
    """(line, module) for every meds1 import in the file, wherever it is, plus 'meds1.x' strings (importlib)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("meds1.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("meds1") and not node.level:
            mods = [node.module] if node.module != "meds1" else [f"meds1.{a.name}" for a in node.names]
            found += [(node.lineno, m) for m in mods]
        elif strings and isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("meds1.") \
                and " " not in node.value and "/" not in node.value:
            found.append((node.lineno, node.value))
    return found


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_entry_point(path: Path) -> bool:
    return 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")


def test_no_import_crosses_a_forbidden_arrow():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        for line, target in imports_of(path, strings=source != "meds1.plugins"):  # plugins names packages to scan
            if is_entry_point(path) and target.split(".")[1] in ENTRY_POINT_EXTRA:
                continue
            if target.count(".") >= 1 and not allowed(source, target):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} {source} -> {target}")
    assert bad == [], "forbidden imports:\n" + "\n".join(bad)


def test_no_import_cycle_between_modules_of_traces():
    """extract <-> offline was a circle; modules of one package must form no cycle either."""
    graph = {}
    for path in sorted((PACKAGE / "traces").rglob("*.py")):
        graph[module_name(path)] = {t for _, t in imports_of(path) if t.startswith("meds1.traces")}
    def reach(start, node, seen):
        for nxt in graph.get(node, ()):
            if nxt == start:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if reach(start, nxt, seen):
                    return True
        return False
    cycles = [m for m in graph if reach(m, m, set())]
    assert cycles == [], cycles


def test_the_checker_sees_a_forbidden_arrow():
    assert not allowed("meds1.curation.methods.s1", "meds1.evaluate.matcher")
    assert not allowed("meds1.llm.offline", "meds1.traces.offline")
    assert allowed("meds1.curation.pipeline", "meds1.traces.apply")
    assert allowed("meds1.evaluate.tts", "meds1.traces.formats")
    assert not allowed("meds1.evaluate.tts", "meds1.traces.perturb")
