"""Bad input refused before any job runs: one table of cases, each a one-line error naming file (and experiment and
key where there is one), no traceback, nothing written. Add a case by adding a row.

Two routes: ``REGISTRY_CASES`` load the three user files through ``load_registry`` (what the Snakefile does at parse
time); ``CLI_CASES`` run ``snakemake -n`` on a scratch copy of the workflow, the route users take.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from meds1.errors import MedS1Error
from meds1.registry import load_registry
from workflow import make_workdir, snakemake

CONFIG = {
    "model_choices": {"base": "m"},
    "models": {"m": {"hf_path": "org/m", "max_length": 512},
               "offline-rules": {"provider": "offline", "hf_path": "offline-rules"}},
    "train_datasets": {"tr": {"file_path": "train.json"}},
    "eval_datasets": {"ev": {"file_path": "eval.json"}, "env-ev": {"file_path": "${MEDS1_TEST_UNSET}/eval.json"}},
}
TRAINED = {"model_key": "m", "curation": {"method": "random", "n_samples": 4},
           "training_params": {"num_epochs": 1}, "datasets": {"curate": "tr", "eval": "ev"}}
BASE = {"model_key": "m", "curation": None, "training_params": None, "datasets": {"curate": None, "eval": "ev"}}


def results_text(experiments: dict) -> str:
    return json.dumps({"experiments": {n: {"config": c} for n, c in experiments.items()}}, indent=1)


def with_(cfg: dict, **patch) -> dict:
    out = copy.deepcopy(cfg)
    for dotted, value in patch.items():
        *path, last = dotted.split("__")
        node = out
        for p in path:
            node = node[p]
        node[last] = value
    return out


# (id, results.json text or dict of experiments, config.json dict, workflow dict, words expected in the one line)
REGISTRY_CASES = [
    ("duplicate-experiment", '{"experiments": {"a": {"config": %s},\n "a": {"config": %s}}}'
     % (json.dumps(BASE), json.dumps(TRAINED)), CONFIG, {}, ["results.json", 'key "a" is given twice', "lines 1, 2"]),
    ("duplicate-key-in-block", '{"experiments": {"a": {"config": {"model_key": "m", "curation": {"method": "random",\n'
     '"n_samples": 4,\n "n_samples": 5}, "datasets": {"curate": "tr", "eval": "ev"}}}}}', CONFIG, {},
     ['key "n_samples" is given twice', "lines 2, 3"]),
    ("nan", '{"experiments": {"a": {"config": {"model_key": "m", "curation": {"method": "random", "n_samples": NaN},'
     ' "datasets": {"curate": "tr", "eval": "ev"}}}}}', CONFIG, {}, ["NaN is not a number JSON allows", "line 1"]),
    ("infinity-epochs", results_text({"a": with_(TRAINED, training_params__num_epochs=float("inf"))}), CONFIG, {},
     ["Infinity is not a number JSON allows"]),
    ("fractional-n", {"a": with_(TRAINED, curation__n_samples=48.5)}, CONFIG, {},
     ["experiment 'a'", "config.curation.n_samples", "must be integer"]),
    ("zero-n", {"a": with_(TRAINED, curation__n_samples=0)}, CONFIG, {}, ["config.curation.n_samples", "minimum"]),
    ("bool-epochs", {"a": with_(TRAINED, training_params__num_epochs=True)}, CONFIG, {},
     ["config.training_params.num_epochs", "must be number"]),
    ("warmup-one", {"a": with_(TRAINED, training_params__warmup_ratio=1)}, CONFIG, {},
     ["config.training_params.warmup_ratio"]),
    ("unknown-method", {"a": with_(TRAINED, curation__method="randm")}, CONFIG, {},
     ["config.curation.method", "did you mean 'random'"]),
    ("option-of-other-method", {"a": with_(TRAINED, curation__column="Question")}, CONFIG, {},
     ["unknown key 'column' for method 'random'"]),
    ("unknown-extract", {"a": with_(TRAINED, curation__extract=["step", "sokratic"])}, CONFIG, {},
     ["config.curation.extract.1", "did you mean 'socratic'"]),
    ("bad-rate", {"a": with_(TRAINED, curation__perturbation={"type": "shuffle", "rate": 0.5})}, CONFIG, {},
     ["config.curation.perturbation.rate"]),
    ("restore-alone", {"a": with_(TRAINED, curation__restore=True)}, CONFIG, {}, ["restore", "no perturbation"]),
    ("unknown-format", {"a": with_(TRAINED, curation__format="huatou")}, CONFIG, {}, ["did you mean 'huatuo'"]),
    ("unknown-backend", {"a": with_(BASE, eval={"backend": "vlm"})}, CONFIG, {},
     ["config.eval.backend", "did you mean 'vllm'"]),
    ("bad-repetitions", {"a": with_(BASE, eval={"repetitions": {"MedQA": 0}})}, CONFIG, {},
     ["config.eval.repetitions.MedQA"]),
    ("repetitions-not-int", {"a": with_(BASE, eval={"repetitions": {"MedQA": "five"}})}, CONFIG, {},
     ["config.eval.repetitions.MedQA", "must be integer"]),
    ("name-newline", {"a\n": BASE}, CONFIG, {}, ["path-safe"]),
    ("name-too-long", {"x" * 300: BASE}, CONFIG, {}, ["300 characters", "at most 200"]),
    ("name-slash", {"a/b": BASE}, CONFIG, {}, ["path-safe"]),
    ("training-without-curation", {"a": with_(BASE, training_params={"num_epochs": 1})}, CONFIG, {},
     ["curation is null"]),
    ("curation-without-dataset", {"a": with_(TRAINED, datasets={"curate": None, "eval": "ev"})}, CONFIG, {},
     ["needs a training dataset"]),
    ("unknown-model", {"a": with_(BASE, model_key="mm")}, CONFIG, {}, ["unknown model key 'mm'", "did you mean 'm'"]),
    ("model-without-path", {"a": BASE}, with_(CONFIG, models__m={"max_length": 512}), {},
     ["config.json", "models.m", "neither hf_path nor local_path"]),
    ("train-data-with-an-eval-key", {"a": BASE}, with_(CONFIG, train_datasets__tr__options_from=["x", "y"]), {},
     ["config.json", "train_datasets.tr", "unknown key 'options_from'"]),
    ("eval-data-with-a-train-key", {"a": BASE}, with_(CONFIG, eval_datasets__ev__normalise="s1"), {},
     ["config.json", "eval_datasets.ev", "unknown key 'normalise'"]),
    ("env-var-unset", {"a": with_(BASE, datasets={"curate": None, "eval": "env-ev"})}, CONFIG, {},
     ["${MEDS1_TEST_UNSET} is not set"]),
    ("baseline-not-selected", {"a": BASE, "b": BASE}, CONFIG, {"experiments": ["a"], "baseline": "b"},
     ["baseline 'b' is not among the selected experiments"]),
    ("baseline-unknown", {"a": BASE}, CONFIG, {"baseline": "z"}, ["key 'baseline'", "unknown experiment 'z'"]),
    ("unknown-curation-llm", {"a": BASE}, CONFIG, {"curation_llm": "gemni"}, ["key 'curation_llm'", "unknown model"]),
    ("workflow-unknown-key", {"a": BASE}, CONFIG, {"eval": {"max_new_token": 5}},
     ["key 'eval.max_new_token'", "did you mean 'max_new_tokens'"]),
    ("workflow-float-seed", {"a": BASE}, CONFIG, {"seed": 4.5}, ["key 'seed'", "must be integer"]),
    ("workflow-nan", {"a": BASE}, CONFIG, {"validation_fraction": float("nan")}, ["validation_fraction", "finite"]),
    ("figures-unknown-exp", {"a": BASE}, CONFIG, {"figures": {"syntax": ["zz"]}}, ["figures.syntax", "unknown"]),
    ("figures-unknown-figure", {"a": BASE}, CONFIG, {"figures": {"sintax": ["a"]}},
     ["key 'figures.sintax'", "unknown figure", "did you mean 'syntax'"]),
    ("plugin-module-missing", {"a": BASE}, CONFIG, {"plugins": ["no_such_module_xyz"]},
     ["key 'plugins'", "cannot import plug-in module 'no_such_module_xyz'"]),
    ("config-unknown-key", {"a": BASE}, with_(CONFIG, models__m__max_lenght=5), {},
     ["config.json", "models.m.max_lenght", "did you mean 'max_length'"]),
    ("config-duplicate-model", None, '{"model_choices": {}, "models": {"m": {"hf_path": "a"},\n"m": {"hf_path": "b"}},'
     ' "train_datasets": {}, "eval_datasets": {}}', {}, ["config.json", 'key "m" is given twice']),
]


def write_files(tmp_path: Path, results, config) -> None:
    text = results if isinstance(results, str) else results_text(results if results is not None else {"a": BASE})
    (tmp_path / "results.json").write_text(text)
    (tmp_path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))


@pytest.mark.parametrize("case", REGISTRY_CASES, ids=[c[0] for c in REGISTRY_CASES])
def test_registry_refuses_bad_input_in_one_line(tmp_path, monkeypatch, case):
    _, results, config, workflow, words = case
    monkeypatch.delenv("MEDS1_TEST_UNSET", raising=False)
    write_files(tmp_path, results, config)
    with pytest.raises(MedS1Error) as info:
        load_registry(workflow, tmp_path)
    line = str(info.value)
    assert "\n" not in line
    for word in words:
        assert word in line, line


def test_whole_number_floats_are_integers(tmp_path):
    write_files(tmp_path, {"a": with_(TRAINED, curation__n_samples=48.0, training_params__batch_size=2.0)}, CONFIG)
    reg = load_registry({}, tmp_path)
    cur, train = reg.experiments["a"].curation_settings, reg.experiments["a"].train_settings
    assert (cur.n_samples, train.batch_size) == (48, 2) and isinstance(cur.n_samples, int)


def test_null_means_the_default(tmp_path):
    write_files(tmp_path, {"a": with_(TRAINED, training_params={"total_batch_size": None, "weight_decay": None})},
                CONFIG)
    train = load_registry({}, tmp_path).experiments["a"].train_settings
    assert train.total_batch_size is None and train.weight_decay == 0.1


def test_results_file_that_is_not_utf8_or_a_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    (tmp_path / "results.json").write_bytes(json.dumps({"experiments": {"a": {"config": BASE, "description": "caf\xe9"}}},
                                                        ensure_ascii=False).encode("latin-1"))
    with pytest.raises(MedS1Error, match=r"results.json: not UTF-8 text \(byte 0xe9"):
        load_registry({}, tmp_path)
    (tmp_path / "results.json").unlink()
    (tmp_path / "results.json").mkdir()
    with pytest.raises(MedS1Error, match="results.json: is a folder"):
        load_registry({}, tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: permissions cannot be tested as root")
def test_cache_folder_not_writable(tmp_path):
    write_files(tmp_path, {"a": BASE}, CONFIG)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(MedS1Error, match="key 'cache_dir'"):
        load_registry({"cache_dir": str(locked / "cache")}, tmp_path)


def test_cache_folder_that_is_a_file(tmp_path):
    write_files(tmp_path, {"a": BASE}, CONFIG)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(MedS1Error, match="key 'cache_dir'"):
        load_registry({"cache_dir": "afile/cache"}, tmp_path)


def test_identical_training_is_shared_not_repeated(tmp_path):
    tts = with_(TRAINED, test_time_scaling=True, reasoning_approaches=["reasoning", "budget_256"])
    write_files(tmp_path, {"a": TRAINED, "a-tts": tts, "b": with_(TRAINED, curation__n_samples=5)}, CONFIG)
    reg = load_registry({}, tmp_path)
    assert reg.experiments["a-tts"].trained_as == "a" and reg.experiments["b"].trained_as is None
    assert reg.stage_experiments("train") == ["a", "b"]
    from meds1.stages.eval import inputs

    assert inputs(reg, reg.experiments["a-tts"])["model"] == "ckpts/a/final"
    with pytest.raises(MedS1Error, match="shares its outputs: use ckpts/a/"):
        reg.check_targets(["ckpts/a-tts/final"])


# --------------------------------------------------------------------------------------------- through snakemake -n
DEMO_CONFIG = {**CONFIG, "train_datasets": {"tr": {"file_path": "train.json"}},
               "eval_datasets": {"ev": {"file_path": "eval.json"}}}

# (id, workflow_config.yaml text, experiments, command-line arguments, words in the one line)
CLI_CASES = [
    ("yaml-syntax", "experiments: [a,\nseed: 2\n", {"a": BASE}, [],
     ["workflow_config.yaml: invalid YAML at line"]),
    ("yaml-duplicate", "seed: 1\nseed: 2\n", {"a": BASE}, [], ["workflow_config.yaml", "key 'seed' is given twice"]),
    ("untrained-target", "experiments: [a]\n", {"a": BASE}, ["ckpts/a/final"],
     ["experiment 'a'", "has no train stage"]),
    ("unknown-target", "experiments: [a]\n", {"a": BASE}, ["eval/ab/metrics.json"],
     ["no such experiment", "did you mean 'a'"]),
    ("config-override-typo", "experiments: [a]\n", {"a": BASE}, ["--config", "eval={limt: 2}"],
     ["(or --config)", "eval.limt", "did you mean 'limit'"]),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_bad_input_in_one_line(tmp_path, case):
    _, workflow_text, experiments, args, words = case
    wd = make_workdir(tmp_path / "w", results={"experiments": {n: {"config": c} for n, c in experiments.items()}},
                      config=DEMO_CONFIG)
    (wd / "workflow_config.yaml").write_text(workflow_text)
    for name in ("train.json", "eval.json"):
        (wd / name).write_text("[]")
    out = snakemake(wd, "-n", *args, timeout=120)
    text = out.stdout + out.stderr
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert out.returncode != 0 and len(errors) == 1, text[-2000:]
    assert "Traceback" not in text
    for word in words:
        assert word in errors[0], errors[0]
    assert not any((wd / d).exists() for d in ("curated", "ckpts", "eval", "results"))


def test_valid_config_override_is_accepted(tmp_path):
    wd = make_workdir(tmp_path / "w", results={"experiments": {"a": {"config": BASE}}}, config=DEMO_CONFIG,
                      workflow={"experiments": ["a"]})
    (wd / "eval.json").write_text("[]")
    out = snakemake(wd, "-n", "--config", "eval={limit: 2}", timeout=120)
    assert out.returncode == 0, (out.stdout + out.stderr)[-2000:]
    assert yaml.safe_load((wd / "workflow_config.yaml").read_text()) == {"experiments": ["a"]}


def test_dataset_with_both_or_neither_source(tmp_path):
    for entry, word in (({"file_path": "a", "hf_path": "b"}, "gives both"), ({"columns": {}}, "gives none")):
        write_files(tmp_path, {"a": BASE}, with_(CONFIG, eval_datasets__ev=entry))
        with pytest.raises(MedS1Error, match=f"config.json: key 'eval_datasets.ev': needs exactly one of "
                                             f"hf_path / file_path \\({word}\\)"):
            load_registry({}, tmp_path)


def test_whole_number_eval_sample(tmp_path):
    write_files(tmp_path, {"a": with_(BASE, eval_sample=5.0)}, CONFIG)
    assert load_registry({}, tmp_path).spec("a", "eval")["eval_sample"] == 5


def test_model_format_is_a_plugin_name(tmp_path):
    write_files(tmp_path, {"a": BASE}, with_(CONFIG, models__m__format="huatou"))
    with pytest.raises(MedS1Error, match="config.json: key 'models.m.format': unknown trace format 'huatou'.*huatuo"):
        load_registry({}, tmp_path)
