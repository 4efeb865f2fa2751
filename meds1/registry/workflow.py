"""workflow_config.yaml: which experiments run and the run-wide science settings, typed, with defaults in one place.

Threads, partitions, GPUs and walltime are not here: they belong to profiles (and the plan, ``python -m meds1.plan``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from meds1.options import opt


@dataclass(frozen=True)
class WorkflowSettings:
    registry: str = opt("results.json", "the experiment registry (read-only to the workflow)")
    model_config: str = opt("config.json", "models, datasets, LLM providers")
    experiments: list[str] = opt(["*"], "names or glob patterns built by `rule all`", minItems=1)
    baseline: str | None = opt(None, "deltas and paired significance are computed against this experiment")
    cache_dir: str = opt("cache", "content-addressed cache: LLM answers, embeddings, base-model answers")
    seed: int = opt(42, "one seed for sampling, splits, training and bootstrap")
    validation_fraction: float = opt(0.1, "share of selected rows held out for validation",
                                     exclusiveMinimum=0, exclusiveMaximum=1)
    curation_llm: str | None = opt(None, "model key of the curation LLM; null: config.json model_choices.curation")
    max_cost_usd: float | None = opt(None, "stop curation before LLM spending would exceed this", minimum=0)
    wandb_mode: Literal["offline", "online", "disabled"] = opt("offline", "wandb logging of training")
    wandb_project: str = opt("med-s1", "wandb project")
    training_defaults: dict = opt({}, "training_params every experiment starts from (its own block wins)")
    eval: dict = opt({}, "run-wide eval settings (meds1.evaluate.settings.EvalSettings)")
    figures: dict[str, list[str]] = opt({}, "which experiments feed which extra figure")
    plugins: list[str] = opt([], "extra plug-in modules: importable names or .py files (see docs/extending.md)")


def load_yaml_file(path, shown: str | None = None) -> dict:
    """Parse a YAML settings file; a syntax error or a key given twice is one line naming file, line and column."""
    import yaml

    from meds1.errors import MedS1Error

    shown = shown or str(path)

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
            for key in {k for k in keys if keys.count(k) > 1}:
                line = next(k.start_mark.line + 1 for k, _ in reversed(node.value)
                            if self.construct_object(k, deep=deep) == key)
                raise MedS1Error(f"key '{key}' is given twice (again at line {line}): the second would silently "
                                 "replace the first", file=shown)
            return super().construct_mapping(node, deep=deep)

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except FileNotFoundError:
        raise MedS1Error("file not found", file=shown) from None
    except UnicodeDecodeError:
        raise MedS1Error("not UTF-8 text: save it as UTF-8", file=shown) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise MedS1Error(f"invalid YAML{where}: {problem}", file=shown) from None
    if data is not None and not isinstance(data, dict):
        raise MedS1Error(f"must be a mapping of settings, got {type(data).__name__}", file=shown)
    return data or {}
