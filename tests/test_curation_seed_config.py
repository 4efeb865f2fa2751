"""The seed system's config.json loads unchanged (only its cluster paths changed) next to a 75-experiment registry in
the seed's full vocabulary, and its roles reach the curate specs: ``base`` probes and measures, ``base_judge`` and
``specialty_labeler`` answer s1, ``pricing.rpm`` is the rate limit, an object ``chat_template`` is documentation."""
from __future__ import annotations

import json

import pytest

from meds1.registry import load_registry
from registry_gen import registry

NEMOTRON_LAYOUT = {"system": "<|start_header_id|>system<|end_header_id|>\n\ndetailed thinking {thinking}<|eot_id|>",
                   "user": "<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>",
                   "assistant": "<|start_header_id|>assistant<|end_header_id|>\n\n<think>{thinking}</think>{answer}"}


def seed_config(data_dir: str) -> dict:
    """config.json as the seed system wrote it (section 2 of the seed notes), paths pointing at ``data_dir``."""
    hf = {"qwen2.5:7b": "Qwen/Qwen2.5-7B-Instruct", "llama3.1:8b": "meta-llama/Llama-3.1-8B-Instruct",
          "qwq:32B": "Qwen/QwQ-32B", "huatuo:8b": "FreedomIntelligence/HuatuoGPT-o1-8B",
          "nemotron:8b": "nvidia/Llama-3.1-Nemotron-Nano-8B-v1"}
    models = {key: {"hf_path": path, "max_length": 128000} for key, path in hf.items()}
    models["nemotron:8b"] |= {"system_prompt": "detailed thinking {thinking}", "chat_template": NEMOTRON_LAYOUT}
    models["gpt4o-mini"] = {"hf_path": "gpt-4o-mini", "max_length": 128000, "pricing": {"input": 0.15, "output": 0.6}}
    models["gemini-2.0-flash"] = {"hf_path": "gemini-2.0-flash", "max_length": 128000,
                                  "base_url": "https://generativelanguage.googleapis.com/v1beta/openai/",
                                  "pricing": {"input": 0.1, "output": 0.4, "rpm": 2000}}
    return {
        "model_choices": {"base": "qwq:32B", "huatuo": "huatuo:8b", "nemotron": "nemotron:8b",
                          "specialty_labeler": "gemini-2.0-flash", "base_judge": "gemini-2.0-flash",
                          "curation": "gemini-2.0-flash"},
        "models": models,
        "train_datasets": {
            "huatuo-sft": {"hf_path": "FreedomIntelligence/medical-o1-reasoning-SFT", "hf_config": "en",
                           "hf_split": "train"},
            "s1-gemini-raw": {"hf_path": "qfq/geminiall_nona", "normalise": "s1"},
            "nejmcr": {"file_path": "${MED_S1_DIR}/data/nejmcr", "normalise": "nejmcr"}},
        "eval_datasets": {
            "huatuo-eval": {"file_path": "${MED_S1_DIR}/eval/data/eval_data.json"},
            "gpqa-diamond": {"hf_path": "Idavidrein/gpqa", "hf_config": "gpqa_diamond", "hf_split": "train"},
            "math500": {"hf_path": "simplescaling/openaimath", "hf_split": "test"},
            "aime24_nofigures": {"hf_path": "simplescaling/aime24_nofigures", "hf_split": "train"},
            "aime24_figures": {"hf_path": "simplescaling/aime24_figures", "hf_split": "train"}},
        "curation": {"llama_batch_size": 1024, "gemini_batch_size": 512, "initial_sample": 0},
    }


@pytest.fixture
def seed_registry(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MED_S1_DIR", str(tmp_path))
    (tmp_path / "eval" / "data").mkdir(parents=True)
    (tmp_path / "eval" / "data" / "eval_data.json").write_text("{}")
    experiments = json.loads(json.dumps(registry(75)).replace('"tr"', '"huatuo-sft"').replace('"ev"', '"huatuo-eval"'))
    (tmp_path / "config.json").write_text(json.dumps(seed_config(str(tmp_path)), indent=1))
    (tmp_path / "results.json").write_text(json.dumps(experiments, indent=1))
    reg = load_registry({"cache_dir": str(tmp_path / "cache")}, tmp_path)
    return reg, capsys


def test_the_seeds_config_loads_and_every_curate_spec_builds(seed_registry):
    reg, _ = seed_registry
    specs = {name: reg.spec(name, "curate") for name in reg.stage_experiments("curate")}
    assert len(specs) > 60
    s1 = next(s for s in specs.values() if s["curation"]["method"] == "s1")
    assert s1["base_model"]["key"] == "qwq:32B"                              # model_choices.base probes
    judge = s1["llm_roles"]["base_judge"]
    assert judge["model"] == "gemini-2.0-flash" and judge["rpm"] == 2000    # rpm read from pricing
    assert judge["pricing"] == {"input": 0.1, "output": 0.4} and s1["llm_roles"]["specialty_labeler"] == judge
    assert "base_url" not in judge  # the seed's OpenAI-compatible URL: unused by the seed's Gemini client too
    assert all("base_model" not in s for s in specs.values() if s["curation"]["method"] == "random")


def test_an_object_chat_template_is_documentation(seed_registry):
    from meds1.registry.entries import model_entry

    reg, capsys = seed_registry
    entry = model_entry(reg.config, "nemotron:8b")
    assert entry["chat_template"] is None and entry["system_prompt"] == "detailed thinking {thinking}"
    assert "models.nemotron:8b.chat_template is an object (documentation only)" in capsys.readouterr().err


def test_unknown_role_is_refused(tmp_path):
    cfg = seed_config(str(tmp_path))
    cfg["model_choices"]["eval_judge"] = "gemini-2.0-flash"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "results.json").write_text(json.dumps({"experiments": {}}))
    from meds1.errors import MedS1Error

    with pytest.raises(MedS1Error, match="config.json: key 'model_choices.eval_judge': unknown key"):
        load_registry({"experiments": ["*"]}, tmp_path)
