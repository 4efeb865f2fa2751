"""Bad input reaching a job (dataset files, model folders): one clear line, no traceback, no output written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from workflow import make_workdir, snakemake, tiny_config

GOOD_ROW = {"id": "r1", "Question": "Q? A. x B. y", "Complex_CoT": "Because.", "Response": "The answer is A.",
            "options": {"A": "x", "B": "y"}, "answer_idx": "A", "answer": "x"}
GOOD_ITEM = {"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "A", "answer": "x"}


def registry(curate: bool) -> dict:
    cfg = {"model_key": "tiny", "curation": None, "training_params": None, "datasets": {"curate": None, "eval": "evalset"}}
    if curate:
        cfg |= {"curation": {"method": "all"}, "training_params": {"num_epochs": 1},
                "datasets": {"curate": "sft", "eval": "evalset"}}
    return {"experiments": {"x": {"config": cfg}}}


def run_bad(tmp_path, tiny_model_dir, *, sft=None, evalset=None, target="eval/x/metrics.json", config_patch=None):
    sft_file, eval_file = tmp_path / "sft.json", tmp_path / "eval.json"
    if sft is not None:
        sft_file.write_text(sft if isinstance(sft, str) else json.dumps(sft))
    eval_file.write_text(json.dumps(evalset if evalset is not None else {"S": [GOOD_ITEM]}))
    cfg = tiny_config(tiny_model_dir, sft_file=sft_file, eval_file=eval_file)
    if config_patch:
        config_patch(cfg)
    wd = make_workdir(tmp_path / "w", results=registry(target.startswith("curated")), config=cfg,
                      workflow={"curation_llm": "offline-rules", "experiments": ["x"]})
    out = snakemake(wd, target, timeout=300)
    text = out.stdout + out.stderr
    errors = sorted({l for l in text.splitlines() if l.startswith("error: ")})
    assert out.returncode != 0
    assert len(errors) == 1, text[-3000:]
    assert "Traceback (most recent call last)" not in text
    for folder in ("curated", "ckpts", "eval"):
        outputs = [p for p in (wd / folder).rglob("*") if p.is_file() and "work" not in p.parts] if (wd / folder).exists() else []
        assert outputs == [], outputs
    return errors[0]


@pytest.mark.parametrize("sft, words", [
    ([], ["dataset is empty"]),
    ([{k: v for k, v in GOOD_ROW.items() if k != "Complex_CoT"}], ["missing required column", "Complex_CoT"]),
    ([GOOD_ROW, GOOD_ROW], ["duplicated id 'r1'"]),
    ([GOOD_ROW | {"answer_idx": "E"}], ['answer_idx "E" is not among its options', "row 0"]),
    ('[{"id": 1,}]', ["invalid JSON at line 1, column 11"]),
])
def test_bad_training_file(tmp_path, tiny_model_dir, sft, words):
    line = run_bad(tmp_path, tiny_model_dir, sft=sft, target="curated/x/stats.json")
    assert str(tmp_path / "sft.json") in line
    for w in words:
        assert w in line, line


@pytest.mark.parametrize("evalset, words", [
    ({}, ["no items"]),
    ({"S": [GOOD_ITEM | {"answer_idx": "Z"}]}, ["answer_idx", "Z", "S"]),
    ({"S": [{k: v for k, v in GOOD_ITEM.items() if k != "options"}]}, ["options"]),
    ({"S": [GOOD_ITEM | {"id": "d"}, GOOD_ITEM | {"id": "d"}]}, ["duplicate", "d"]),
])
def test_bad_eval_file(tmp_path, tiny_model_dir, evalset, words):
    line = run_bad(tmp_path, tiny_model_dir, evalset=evalset)
    assert "eval.json" in line
    for w in words:
        assert w in line, line


def test_missing_dataset_file_names_it(tmp_path, tiny_model_dir):
    cfg_missing = lambda cfg: cfg["train_datasets"]["sft"].__setitem__("file_path", str(tmp_path / "nope.json"))
    sft_file, eval_file = tmp_path / "sft.json", tmp_path / "eval.json"
    eval_file.write_text(json.dumps({"S": [GOOD_ITEM]}))
    cfg = tiny_config(tiny_model_dir, sft_file=sft_file, eval_file=eval_file)
    cfg_missing(cfg)
    wd = make_workdir(tmp_path / "w", results=registry(True), config=cfg, workflow={"experiments": ["x"]})
    out = snakemake(wd, "curated/x/stats.json")
    assert out.returncode != 0 and "nope.json" in out.stderr and "Missing input files" in out.stderr


def test_missing_local_model_while_offline_says_how_to_fix(tmp_path, tiny_model_dir):
    def patch(cfg):
        cfg["models"]["tiny"]["local_path"] = str(tmp_path / "models" / "gone")
        del cfg["models"]["tiny"]["hf_path"]
    line = run_bad(tmp_path, tiny_model_dir, config_patch=patch)
    assert "gone" in line and "does not exist" in line and "hf_path" in line


def test_hub_model_while_offline_says_how_to_fix(tmp_path, tiny_model_dir):
    def patch(cfg):
        cfg["models"]["tiny"]["local_path"] = None
    line = run_bad(tmp_path, tiny_model_dir, config_patch=patch)
    assert "tiny/does-not-exist" in line and "HF_HUB_OFFLINE=1" in line and "local_path" in line
