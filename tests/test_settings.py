"""One home for each default: the stage settings dataclasses. What the registry hands a job equals what the dataclass
gives on its own, and a hand-written spec (python -m meds1.sft.launch --spec ...) gets the same defaults."""
from __future__ import annotations

import dataclasses
import json

import pytest

from meds1.curation.settings import CurationSettings
from meds1.errors import MedS1Error
from meds1.evaluate.settings import EvalSettings
from meds1.options import build, defaults, opt, schema_of
from meds1.plugins import SELECTION_METHODS
from meds1.registry import load_registry
from meds1.sft.config import TrainSettings

CONFIG = {"model_choices": {}, "models": {"m": {"hf_path": "org/m", "max_length": 777}},
          "train_datasets": {"tr": {"file_path": "t.json"}}, "eval_datasets": {"ev": {"file_path": "e.json"}}}


def registry(tmp_path, curation: dict, workflow: dict | None = None):
    exp = {"model_key": "m", "curation": curation, "datasets": {"curate": "tr", "eval": "ev"}}
    (tmp_path / "results.json").write_text(json.dumps({"experiments": {"x": {"config": exp}}}))
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    return load_registry(workflow or {}, tmp_path)


def test_training_defaults_come_from_train_settings_only(tmp_path):
    spec = registry(tmp_path, {"method": "all"}).spec("x", "train")
    expected = dataclasses.asdict(TrainSettings(max_length=777, seed=42))
    assert spec["training_params"] == expected
    hand_written = {"experiment": "x", "seed": 42, "model": {"max_length": 777}, "training_params": {}}
    assert TrainSettings.from_spec(hand_written) == TrainSettings.from_spec(spec)


def test_workflow_training_defaults_sit_between(tmp_path):
    spec = registry(tmp_path, {"method": "all"}, {"training_defaults": {"learning_rate": 3e-6}}).spec("x", "train")
    assert spec["training_params"]["learning_rate"] == 3e-6


def test_eval_defaults_come_from_eval_settings_only(tmp_path):
    spec = registry(tmp_path, {"method": "all"}).spec("x", "eval")
    ev = EvalSettings()
    assert spec["sampling"] == {"max_new_tokens": ev.max_new_tokens, "temperature": ev.temperature,
                                "repeat_temperature": ev.repeat_temperature, "top_p": ev.top_p,
                                "batch_size": ev.batch_size, "answer_max_tokens": ev.answer_max_tokens}
    assert spec["backend"] == ev.backend and spec["bootstrap"]["resamples"] == ev.bootstrap_resamples
    assert spec["primary_approach"] == ev.primary_approach


@pytest.mark.parametrize("method", SELECTION_METHODS.names())
def test_method_option_defaults_come_from_the_method(tmp_path, method):
    plugin = SELECTION_METHODS.get(method)
    spec = registry(tmp_path, {"method": method, "n_samples": 3}).spec("x", "curate")
    assert spec["curation"]["options"] == (defaults(plugin.options) if plugin.options else {})


def test_schema_is_derived_from_the_dataclass():
    @dataclasses.dataclass(frozen=True)
    class Toy:
        n: int = opt(3, "how many", minimum=1)
        mode: str | None = opt(None, "a mode")

    schema = schema_of(Toy)
    assert schema["properties"]["n"] == {"type": "integer", "minimum": 1, "description": "how many"}
    assert schema["additionalProperties"] is False
    assert build(Toy, {"n": 4.0}).n == 4
    with pytest.raises(MedS1Error, match="key 'x.n': 0 is less than the minimum of 1"):
        build(Toy, {"n": 0}, prefix="x")


def test_curation_settings_spec_round_trips():
    cur = CurationSettings.from_block({"method": "embedding-diversity", "n_samples": 10, "column": "Question",
                                       "extract": "step"})
    again = CurationSettings.from_spec(cur.to_spec())
    assert again == cur and again.options.column == "Question" and again.extract_names() == ["step"]
