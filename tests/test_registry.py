"""Registry: resolution ('same as', extends), strict validation with one-line errors, selection."""
from __future__ import annotations

import copy
import json

import pytest

from meds1.errors import MedS1Error
from meds1.registry import load_registry
from registry_gen import paper_config, registry

SFT, EV = "train.json", "eval.json"


def write(tmp_path, results, config=None):
    (tmp_path / "results.json").write_text(results if isinstance(results, str) else json.dumps(results))
    (tmp_path / "config.json").write_text(json.dumps(config or paper_config(SFT, EV)))
    return tmp_path


def load(tmp_path, results, config=None, workflow=None):
    return load_registry(workflow or {}, write(tmp_path, results, config))


def exp(model="llama3.1:8b", **config):
    return {"config": {"model_key": model, "curation": None, "training_params": None,
                       "datasets": {"curate": None, "eval": "ev"}, **config}}


TRAINED = {"config": {"model_key": "llama3.1:8b", "curation": {"method": "random", "n_samples": 10},
                      "training_params": {"learning_rate": 1e-5, "num_epochs": 2},
                      "datasets": {"curate": "tr", "eval": "ev"}}}


def error_of(tmp_path, results, **kw) -> str:
    with pytest.raises(MedS1Error) as info:
        load(tmp_path, results, **kw)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_same_as_chains_resolve_depth_three(tmp_path):
    reg = load(tmp_path, {"experiments": {
        "a": TRAINED,
        "b": {"config": {"model_key": "qwq:32B", "curation": {"method": "all"}, "training_params": "same as a",
                         "datasets": "same as a"}},
        "c": {"config": {"model_key": "qwq:32B", "curation": "same as b", "training_params": "same as b",
                         "datasets": {"curate": "tr", "eval": None}}},
    }})
    assert reg.experiments["c"].config["training_params"] == TRAINED["config"]["training_params"]
    assert reg.experiments["c"].config["curation"] == {"method": "all"}
    assert reg.experiments["b"].config["datasets"] == {"curate": "tr", "eval": "ev"}


def test_extends_deep_merges_and_overrides(tmp_path):
    child = {"config": {"extends": "a", "curation": {"n_samples": 99, "extract": ["step", "list"]},
                        "training_params": {"optimizer": {"adam_beta2": 0.99}}}}
    reg = load(tmp_path, {"experiments": {"a": TRAINED, "b": child}})
    cfg = reg.experiments["b"].config
    assert cfg["curation"] == {"method": "random", "n_samples": 99, "extract": ["step", "list"]}
    assert cfg["training_params"] == {"learning_rate": 1e-5, "num_epochs": 2, "optimizer": {"adam_beta2": 0.99}}
    assert reg.experiments["a"].config["curation"]["n_samples"] == 10  # parent untouched


def test_cycle_names_the_chain(tmp_path):
    a = copy.deepcopy(TRAINED)
    a["config"]["training_params"] = "same as b"
    b = {"config": {"extends": "a"}}
    text = error_of(tmp_path, {"experiments": {"a": a, "b": b}})
    assert "cycle" in text and "a -> b -> a" in text and "results.json" in text


def test_dangling_same_as(tmp_path):
    a = copy.deepcopy(TRAINED)
    a["config"]["datasets"] = "same as bse"
    text = error_of(tmp_path, {"experiments": {"base": exp(), "a": a}})
    assert "experiment 'a'" in text and "key 'datasets'" in text and "unknown experiment 'bse'" in text
    assert "did you mean 'base'" in text


@pytest.mark.parametrize("patch, key, words", [
    ({"model_key": "llama3.1:8"}, "config.model_key", ["unknown model key", "did you mean 'llama3.1:8b'"]),
    ({"curation": {"method": "rndom", "n_samples": 3}}, "config.curation.method", ["did you mean 'random'"]),
    ({"curation": {"method": "random", "n_samples": 3, "format": "huatou"}}, "config.curation.format", ["did you mean 'huatuo'"]),
    ({"curation": {"method": "random", "n_samples": 3, "extract": ["step", "sokratic"]}}, "config.curation.extract.1", ["did you mean 'socratic'"]),
    ({"curation": {"method": "random", "n_samples": 3, "perturbation": {"type": "shuffle", "rate": 0.5}}},
     "config.curation.perturbation.rate", ["0.5", "0.33"]),
    ({"curation": {"method": "random", "n_samples": 0}}, "config.curation.n_samples", ["minimum"]),
    ({"curation": {"method": "random"}}, "config.curation.n_samples", ["needs n_samples"]),
    ({"curation": {"method": "random", "n_samples": 5, "nsamples": 3}}, "config.curation.nsamples", ["unknown key", "did you mean 'n_samples'"]),
    ({"datasets": {"curate": "tr", "eval": "evl"}}, "config.datasets.eval", ["unknown dataset", "did you mean 'ev'"]),
    ({"training_params": {"learning_rate": "fast"}}, "config.training_params.learning_rate", ["must be number"]),
    ({"modle_key": "x"}, "config.modle_key", ["unknown key", "did you mean 'model_key'"]),
    ({"reasoning_approaches": ["reasoning_two_x"]}, "config.reasoning_approaches.0", ["does not match"]),
])
def test_bad_values_fail_with_one_line_naming_file_experiment_key(tmp_path, patch, key, words):
    bad = copy.deepcopy(TRAINED)
    bad["config"].update(patch)
    text = error_of(tmp_path, {"experiments": {"ok": exp(), "bad-exp": bad}})
    assert text.startswith("results.json: experiment 'bad-exp': key '" + key + "'"), text
    for w in words:
        assert w in text, text


@pytest.mark.parametrize("name", ["a/b", "../up", "has space", "..", "-dash-first"])
def test_experiment_names_must_be_path_safe(tmp_path, name):
    text = error_of(tmp_path, {"experiments": {name: exp()}})
    assert "path-safe" in text and f"experiment '{name}'" in text


def test_json_syntax_error_gives_line_and_column(tmp_path):
    text = error_of(tmp_path, '{"experiments": {\n  "a": {"config": {,}}\n}}')
    assert text.startswith("results.json: invalid JSON at line 2, column")


def test_legacy_results_are_ignored_with_a_notice(tmp_path, capsys):
    reg = load(tmp_path, {"experiments": {"a": {**exp(), "results": {"acc": 0.5}}}, "results": {"x": 1}})
    assert "a" in reg.experiments
    err = capsys.readouterr().err
    assert "legacy 'results' section is ignored" in err and "1 experiment(s)" in err


def test_seed_vocabulary_registry_of_75_resolves(tmp_path):
    reg = load(tmp_path, registry(75))
    assert len(reg.experiments) == 75
    used = json.dumps([e.config for e in reg.experiments.values()])
    for key in ("huatuo_format", "extract", "perturbation", "restore", "column", "cluster_percentage",
                "outlier_percentage", "intra_group_ranking", "specialty_weights", "total_batch_size", "no_decay_params",
                "prompting", "test_time_scaling", "reasoning_approaches", "eval_sample", "repetition_multiplier", "format"):
        assert f'"{key}"' in used, key
    # e0007 extends e0006 whose training_params are "same as e0005" -> ... -> e0001: a chain of depth >= 2
    assert reg.experiments["e0007"].config["training_params"] == reg.experiments["e0001"].config["training_params"]


def test_selection_by_names_and_globs(tmp_path):
    reg = load(tmp_path, registry(20), workflow={"experiments": ["e0001", "e001*"]})
    assert reg.selected() == ["e0001"] + [f"e{i:04d}" for i in range(10, 20)]
    with pytest.raises(MedS1Error, match=r"workflow_config.yaml \(or --config\): key 'experiments': 'nope\*' matches no experiment"):
        load(tmp_path, registry(3), workflow={"experiments": ["nope*"]})


def test_workflow_config_is_strict(tmp_path):
    with pytest.raises(MedS1Error, match=r"workflow_config.yaml \(or --config\): key 'eval.max_new_token': unknown key.*did you mean 'max_new_tokens'"):
        load(tmp_path, registry(2), workflow={"eval": {"max_new_token": 5}})
    with pytest.raises(MedS1Error, match="key 'baseline': unknown experiment 'e9'"):
        load(tmp_path, registry(2), workflow={"baseline": "e9"})


def test_config_json_is_strict(tmp_path):
    cfg = paper_config(SFT, EV)
    cfg["models"]["llama3.1:8b"]["max_lenght"] = 5
    with pytest.raises(MedS1Error, match="config.json: key 'models.llama3.1:8b.max_lenght': unknown key.*max_length"):
        load(tmp_path, registry(2), config=cfg)


def test_editing_one_experiment_changes_only_its_specs(tmp_path):
    before = load(tmp_path, registry(10))
    data = registry(10)
    data["experiments"]["e0009"]["config"]["curation"]["n_samples"] = 7
    after = load(tmp_path, data)
    changed = [n for n in before.experiments for st in ("curate", "train", "eval")
               if (before.experiments[n].trained or st == "eval") and before.spec_json(n, st) != after.spec_json(n, st)]
    assert set(changed) == {"e0009"}


def test_unknown_target_experiment(tmp_path):
    reg = load(tmp_path, registry(3))
    reg.check_targets(["eval/e0001/metrics.json", "results/plots/comparison.png"])
    with pytest.raises(MedS1Error, match="results.json: experiment 'e0x01': no such experiment.*did you mean"):
        reg.check_targets(["eval/e0x01/metrics.json"])
