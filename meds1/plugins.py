"""Plug-ins: selection methods, trace transforms, perturbations, trace formats, eval backends and stages.

A plug-in is ONE module (or one row of a table module) that declares, in one place, its name, a typed options
dataclass (defaults + validation, see ``meds1.options``) and what it needs. Nothing else in the code spells its name:
the registry lists names and needs from here, rules ask the registry.

    from meds1.plugins import SELECTION_METHODS

    @dataclass(frozen=True)
    class Options:
        column: str = opt("Question", "column to compare")

    @SELECTION_METHODS.register("my-method", options=Options, needs={"n_samples"})
    def select_my_method(df, cur, ctx):  # cur: the curation block; cur.options: an Options instance
        ...

Discovery is automatic and cheap: on first use a kind imports every module of its package (these modules keep heavy
imports such as torch or pandas inside their functions, so listing names at Snakefile parse time costs milliseconds),
then any module named by Python entry points in group ``meds1.plugins`` and by ``plugins:`` in workflow_config.yaml
(module names or ``.py`` files; see ``load_extra``).
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, TypeVar

from meds1.errors import MedS1Error

T = TypeVar("T")

# What a plug-in may need; the registry and the rules act on these words, never on plug-in names.
NEEDS = {
    "n_samples": "curation.n_samples must be set",
    "base_model": "runs the experiment's base model on the training questions (a GPU job on a cluster)",
    "probes": "reads probe questions (curation.probe_dataset, default a seeded sample of datasets.eval); "
              "the eval leaves them out",
    "embedder": "embeds text with config.json model_choices.embedder",
    "llm": "calls the curation LLM (model_choices.curation / workflow curation_llm)",
    "gpu": "must run on a GPU",
    "steps": "needs '## Step N' traces (the step transform is added when the extract chain does not end in one)",
    "makes_steps": "writes '## Step N' traces",
}


@dataclass(frozen=True, eq=False)
class Plugin(Generic[T]):
    kind: str
    name: str
    impl: T                                  # the function, class or data row that does the work
    options: type | None = None              # settings dataclass (meds1.options), None: takes no options
    needs: frozenset = frozenset()
    module: str = ""
    summary: str = ""                        # first line of the docstring: what `--help`-like listings show
    extra: dict = field(default_factory=dict)

    def make_options(self, data: dict | None, **where):
        """The plug-in's options from a user block (validated, defaults filled), or None when it takes none."""
        if self.options is None:
            if data:
                unknown = sorted(data)[0]
                raise MedS1Error(f"unknown key '{unknown}' ({self.kind} '{self.name}' takes no options)",
                                 **{k: v for k, v in where.items() if k != "prefix"},
                                 key=".".join(p for p in [where.get("prefix"), unknown] if p))
            return None
        from meds1.options import build

        return build(self.options, data, **where)

    def option_names(self) -> list[str]:
        from meds1.options import field_names

        return field_names(self.options) if self.options else []


class PluginKind(Generic[T]):
    """All plug-ins of one kind. ``register`` adds one; ``get`` returns it or a one-line error with "did you mean"."""

    def __init__(self, kind: str, package: str):
        self.kind, self.package = kind, package
        self._items: dict[str, Plugin[T]] = {}
        self._loaded = False

    # ---- declaring
    def register(self, name: str, *, options: type | None = None, needs=(), aliases=(), **extra) -> Callable[[T], T]:
        """Decorator: ``@KIND.register("name", options=Options, needs={"llm"})``."""
        def deco(impl: T) -> T:
            self.add(name, impl, options=options, needs=needs, aliases=aliases, **extra)
            return impl
        return deco

    def add(self, name: str, impl: T, *, options: type | None = None, needs=(), aliases=(), **extra) -> Plugin[T]:
        unknown = set(needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"{self.kind} '{name}': unknown needs {sorted(unknown)} (known: {sorted(NEEDS)})")
        given = extra.pop("doc", "")
        doc = (given or getattr(impl, "__doc__", None) or "").strip()
        plugin = Plugin(self.kind, name, impl, options, frozenset(needs), getattr(impl, "__module__", ""),
                        doc.splitlines()[0] if doc else "", dict(extra))
        for key in (name, *aliases):
            if key in self._items and self._items[key].impl is not impl:
                raise ValueError(f"{self.kind} '{key}' registered twice ({self._items[key].module}, {plugin.module})")
            self._items[key] = plugin
        return plugin

    # ---- looking up
    def get(self, name: str, **where) -> Plugin[T]:
        self.load()
        if name not in self._items:
            raise MedS1Error(f"unknown {self.kind} '{name}' (known: {', '.join(self.names())})", choices=self._items,
                             value=name, **where)
        return self._items[name]

    def names(self) -> list[str]:
        self.load()
        return sorted(self._items)

    def with_need(self, need: str) -> list[str]:
        return [n for n in self.names() if need in self._items[n].needs]

    def __contains__(self, name: str) -> bool:
        self.load()
        return name in self._items

    def __iter__(self) -> Iterator[Plugin[T]]:
        self.load()
        return iter(dict.fromkeys(self._items.values()))

    # ---- discovery
    def load(self) -> None:
        """Import the kind's own modules once (then entry points; extra modules come from ``load_extra``)."""
        if self._loaded:
            return
        self._loaded = True
        module = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")
        _load_entry_points()


SELECTION_METHODS: PluginKind = PluginKind("selection method", "meds1.curation.methods")
TRACE_TRANSFORMS: PluginKind = PluginKind("trace transform", "meds1.traces.transforms")
PERTURBATIONS: PluginKind = PluginKind("perturbation", "meds1.traces.perturbations")
TRACE_FORMATS: PluginKind = PluginKind("trace format", "meds1.traces.formats")
EVAL_BACKENDS: PluginKind = PluginKind("eval backend", "meds1.evaluate.backends")
STAGES: PluginKind = PluginKind("stage", "meds1.stages")

_entry_points_loaded = False


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group="meds1.plugins"):
        importlib.import_module(ep.value.split(":")[0])


def load_extra(modules: list[str] | None, base_dir: str | Path = ".") -> None:
    """Import user plug-in modules: importable names (``my_lab.methods``) or ``.py`` files relative to ``base_dir``.

    A module that cannot be imported is a one-line error naming it (workflow_config.yaml ``plugins``).
    """
    for entry in modules or []:
        try:
            if entry.endswith(".py"):
                _import_file(Path(base_dir) / entry)
            elif entry not in sys.modules:
                importlib.import_module(entry)
        except MedS1Error:
            raise
        except Exception as err:  # noqa: BLE001 - any import failure of a user's module becomes one line
            raise MedS1Error(f"cannot import plug-in module '{entry}' ({type(err).__name__}: {err})",
                             file="workflow_config.yaml", key="plugins") from None


def _import_file(path: Path) -> Any:
    name = f"meds1_user_plugin_{path.stem.replace('-', '_')}"
    if name in sys.modules:
        return sys.modules[name]
    if not path.is_file():
        raise FileNotFoundError(str(path))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def all_kinds() -> list[PluginKind]:
    return [SELECTION_METHODS, TRACE_TRANSFORMS, PERTURBATIONS, TRACE_FORMATS, EVAL_BACKENDS, STAGES]


class PluginRegistry(PluginKind):
    """A plug-in kind with no package of its own (e.g. the LLM providers, the reasoning approaches)."""

    def __init__(self, kind: str):
        super().__init__(kind, "")
        self._loaded = True

    def register(self, *names: str, **kw):
        return super().register(names[0], aliases=names[1:], **kw)

    def get(self, name: str, **where):
        return super().get(name, **where).impl
