"""The eval stage's settings, with defaults in one place.

The same dataclass validates workflow_config.yaml ``eval:`` (run-wide) and an experiment's ``eval`` block in
results.json (its own overrides): experiment > workflow > the defaults below. The re-score CLI
(``python -m meds1.evaluate.score``) takes its defaults from here too.
"""
from __future__ import annotations

from dataclasses import dataclass

from meds1.errors import MedS1Error
from meds1.options import opt
from meds1.plugins import EVAL_BACKENDS


@dataclass(frozen=True)
class EvalSettings:
    backend: str = opt("auto", "eval backend plug-in (hf, vllm), or auto: vllm on a GPU job (an error when vllm "
                               "cannot be imported), hf on CPU")
    backend_options: dict[str, dict] = opt({}, "per backend: {backend name: its options} (e.g. {vllm: "
                                               "{tensor_parallel_size: 4}}), validated by that backend's options")
    max_new_tokens: int = opt(2048, "new tokens per answer (with test-time scaling: the thinking budget of "
                                    "'reasoning' and 'reasoning_Nx')", minimum=1)
    answer_max_tokens: int = opt(1024, "test-time scaling: tokens for the answer after thinking ends (m1: 1024)",
                                 minimum=1)
    primary_approach: str = opt("reasoning", "test-time scaling: the approach whose accuracy is the headline "
                                             "(a run without test-time scaling has one approach, 'default')")
    temperature: float = opt(0.0, "run 0's temperature (0 = greedy)", minimum=0)
    repeat_temperature: float = opt(0.6, "temperature of repeated runs when temperature is 0", exclusiveMinimum=0)
    top_p: float = opt(0.9, "nucleus sampling for sampled runs", exclusiveMinimum=0, maximum=1)
    batch_size: int = opt(16, "prompts per hf generate call", minimum=1)
    limit: int | None = opt(None, "first N questions per source, for quick runs", minimum=1)
    bootstrap_resamples: int = opt(1000, "bootstrap resamples for CIs and the paired test", minimum=100)
    similarity_fallback: bool = opt(False, "matcher's nearest-option-text fallback (off: unparsed stays unparsed)")
    exclude_probe_questions: bool = opt(True, "leave out the probe questions a curation method chose rows with")
    repetitions: dict[str, int] = opt({}, "runs per item by source (the seed: GPQA 5, NEJMCRMC 10)")
    repetition_multiplier: int = opt(1, "multiplies every source's runs (the seed capped it at 10)",
                                     minimum=1, maximum=10)

    def check(self) -> None:
        from meds1.evaluate.tts import parse_approach

        parse_approach(self.primary_approach)
        if self.backend != "auto":
            EVAL_BACKENDS.get(self.backend, key="backend")
        for name, options in self.backend_options.items():
            plugin = EVAL_BACKENDS.get(name, key=f"backend_options.{name}")
            plugin.make_options(options, prefix=f"backend_options.{name}")
        for source, runs in self.repetitions.items():
            if runs < 1:
                raise MedS1Error(f"must be at least 1, got {runs}", key=f"repetitions.{source}")


DEFAULTS = EvalSettings()
