"""SFT pieces without training: chat examples, tokenizer override, effective batch, decay groups, length fitting,
launch commands."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch
import yaml
from datasets import Dataset

from meds1 import devices
from meds1.errors import MedS1Error
from meds1.sft import launch
from meds1.sft.chat import build_example, load_tokenizer
from meds1.sft.config import EffectiveBatch, TrainSettings, effective_batch
from meds1.sft.fit import fit_split, token_length
from meds1.sft.optim import param_groups

QUESTION = "A 60-year-old man has crushing chest pain. Which artery is occluded? A. LAD B. RCA C. LCx D. Left main"


# --- chat examples ------------------------------------------------------------------------------------------------

def test_build_example_is_conversational_prompt_completion():
    ex = build_example(QUESTION, "ST elevation in II, III, aVF.", "The answer is B.", fmt="huatuo")
    assert ex == {
        "prompt": [{"role": "user", "content": QUESTION}],
        "completion": [{"role": "assistant", "content":
                        "## Thinking\n\nST elevation in II, III, aVF.\n\n## Final Response\n\nThe answer is B."}],
    }


def test_build_example_system_prompts():
    nemotron = build_example(QUESTION, "cot", "B", fmt="nemotron")
    assert nemotron["prompt"][0] == {"role": "system", "content": "detailed thinking on"}
    own = build_example(QUESTION, "cot", "B", fmt="nemotron", system_prompt="You are a careful physician.")
    assert own["prompt"][0]["content"] == "You are a careful physician."
    assert [m["role"] for m in build_example(QUESTION, "", "B", fmt="qwen")["prompt"]] == ["user"]
    assert build_example(QUESTION, None, "The answer is B.", fmt="llama")["completion"][0]["content"] == \
        "<|start_header_id|>answer<|end_header_id|>\nAnswer: The answer is B."  # the seed's no-reasoning layout


def test_load_tokenizer_applies_chat_template_override(tiny_model_dir, tmp_path):
    template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    inline = load_tokenizer({"key": "tiny", "chat_template": template}, tiny_model_dir)
    text = inline.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text == "[user] hi\n"
    (tmp_path / "t.jinja").write_text(template)
    from_file = load_tokenizer({"key": "tiny", "chat_template": str(tmp_path / "t.jinja")}, tiny_model_dir)
    assert from_file.chat_template == template
    default = load_tokenizer({"key": "tiny"}, tiny_model_dir)
    assert "<|im_start|>" in default.chat_template


def test_load_tokenizer_rejects_a_template_that_is_neither_jinja_nor_file(tiny_model_dir):
    with pytest.raises(MedS1Error, match="models.tiny.chat_template"):
        load_tokenizer({"key": "tiny", "chat_template": "no/such/template.jinja"}, tiny_model_dir)


# --- effective batch ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gpus, expected", [
    (1, EffectiveBatch(per_device=4, grad_accum=8, num_gpus=1, total=32)),
    (2, EffectiveBatch(per_device=4, grad_accum=4, num_gpus=2, total=32)),
    (4, EffectiveBatch(per_device=4, grad_accum=2, num_gpus=4, total=32)),
])
def test_effective_batch_from_total(gpus, expected):
    assert effective_batch({"batch_size": 4, "total_batch_size": 32}, gpus) == expected


def test_effective_batch_caps_per_device_by_total_over_gpus():
    assert effective_batch({"batch_size": 8, "total_batch_size": 8}, 4) == EffectiveBatch(2, 1, 4, 8)


@pytest.mark.parametrize("gpus, total", [(1, 6), (2, 12), (4, 24)])
def test_effective_batch_without_total(gpus, total):
    batch = effective_batch({"batch_size": 2, "gradient_accumulation_steps": 3, "total_batch_size": None}, gpus)
    assert batch == EffectiveBatch(2, 3, gpus, total)
    assert batch.as_dict() == {"per_device": 2, "grad_accum": 3, "num_gpus": gpus, "total": total}


@pytest.mark.parametrize("params, gpus", [
    ({"batch_size": 4, "total_batch_size": 30}, 4),   # 30 is not a multiple of 4 x 4
    ({"batch_size": 4, "total_batch_size": 2}, 4),    # fewer examples than processes
    ({"batch_size": 0}, 1),
])
def test_effective_batch_errors_name_the_key(params, gpus):
    with pytest.raises(MedS1Error) as err:
        effective_batch(params, gpus, experiment="exp1")
    assert "exp1" in str(err.value) and "training_params." in str(err.value) and "\n" not in str(err.value)


# --- settings -----------------------------------------------------------------------------------------------------

def test_settings_defaults_and_model_max_length():
    spec = {"experiment": "e", "seed": 7, "model": {"max_length": 4096},
            "training_params": {"learning_rate": 2e-5, "optimizer": {"adam_beta2": 0.999, "no_decay_params": None}}}
    s = TrainSettings.from_spec(spec)
    assert (s.max_length, s.seed, s.learning_rate, s.adam_beta2, s.select, s.evals_per_epoch) == \
        (4096, 7, 2e-5, 0.999, "best", 4)
    assert s.no_decay_params == ["bias", "norm.weight", "layernorm.weight", "LayerNorm.weight"]
    assert (s.weights_dtype, s.keep_checkpoints, s.gradient_checkpointing) == ("float32", 2, "auto")
    assert TrainSettings.from_spec({**spec, "training_params": {"max_length": 256}}).max_length == 256


def test_settings_reject_unknown_select():
    with pytest.raises(MedS1Error, match="training_params.select.*did you mean 'best'"):
        TrainSettings.from_spec({"experiment": "e", "training_params": {"select": "bets"}})


# --- decay groups -------------------------------------------------------------------------------------------------

def test_rmsnorm_and_bias_are_excluded_from_weight_decay(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.model.layers[0].mlp.down_proj.bias = torch.nn.Parameter(torch.zeros(64))  # a bias to exclude too
    decay, keep = param_groups(model, 0.1)
    assert (decay["weight_decay"], keep["weight_decay"]) == (0.1, 0.0)
    assert set(keep["param_names"]) == {
        "model.norm.weight", "model.layers.0.mlp.down_proj.bias",
        *(f"model.layers.{i}.{n}.weight" for i in (0, 1) for n in ("input_layernorm", "post_attention_layernorm"))}
    assert "model.embed_tokens.weight" in decay["param_names"]
    assert "model.layers.1.self_attn.q_proj.weight" in decay["param_names"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(decay["param_names"]) | set(keep["param_names"]) == trainable
    assert not set(decay["param_names"]) & set(keep["param_names"])


def test_layernorm_module_names_and_custom_patterns():
    model = torch.nn.ModuleDict({"encoder": torch.nn.Linear(3, 3), "LayerNorm": torch.nn.LayerNorm(3)})
    (decay,) = [g for g in param_groups(model, 0.1) if g["weight_decay"]]
    assert decay["param_names"] == ["encoder.weight"]
    groups = param_groups(model, 0.1, no_decay=["encoder"])
    assert {g["weight_decay"]: g["param_names"] for g in groups} == {
        0.1: ["LayerNorm.weight", "LayerNorm.bias"], 0.0: ["encoder.weight", "encoder.bias"]}


# --- fitting long examples ----------------------------------------------------------------------------------------

def _row(i, question, cot, answer="The answer is B."):
    return {"id": f"r{i}", **build_example(question, cot, answer, fmt="huatuo"), "Complex_CoT": cot}


def test_fit_truncates_reasoning_only_and_counts(tiny_model_dir):
    tok = load_tokenizer({"key": "tiny"}, tiny_model_dir)
    long_cot = " ".join(f"Step {i}: double-check." for i in range(80))
    rows = [_row(0, QUESTION, "Short reasoning."), _row(1, QUESTION, long_cot),
            _row(2, QUESTION * 12, "Short reasoning.")]  # the question alone is longer than max_length
    fitted, report = fit_split(Dataset.from_list(rows), tok, max_length=96)
    assert (report.kept, report.truncated, report.dropped_too_long) == (2, 1, 1)
    assert (report.truncated_ids, report.dropped_ids) == (["r1"], ["r2"])
    assert fitted[0]["completion"] == rows[0]["completion"]  # fitting examples are untouched
    cut = fitted[1]
    assert cut["prompt"] == rows[1]["prompt"]  # never the question
    reply = cut["completion"][0]["content"]
    assert reply.startswith("## Thinking\n\nStep 0: double-check.")
    assert reply.endswith("\n\n## Final Response\n\nThe answer is B.")
    assert long_cot.startswith(reply[len("## Thinking\n\n"):reply.index("\n\n## Final")])
    assert 90 <= token_length(tok, cut["prompt"], cut["completion"]) <= 96  # as much reasoning as fits


# --- launch ---------------------------------------------------------------------------------------------------------

def test_launch_command_cpu_is_a_plain_process_that_asked_for_cpu():
    argv = ["--spec", "s.json", "--dataset", "d"]
    cmd = launch.launch_command(0, argv)
    assert cmd[1:] == ["-m", "meds1.sft.launch", *argv, "--cpu"]


def test_launch_command_gpus_start_one_process_per_gpu():
    cmd = launch.launch_command(4, ["--spec", "s.json"])
    assert cmd[0].endswith("accelerate") and cmd[1] == "launch"
    assert cmd[cmd.index("--num_processes") + 1] == "4"
    assert cmd[cmd.index("--config_file") + 1] == str(launch.GPU_LAUNCH_CONFIG)
    assert cmd[-4:] == ["-m", "meds1.sft.launch", "--spec", "s.json"]
    gpus = yaml.safe_load(launch.GPU_LAUNCH_CONFIG.read_text())
    cpu = yaml.safe_load(launch.CPU_LAUNCH_CONFIG.read_text())
    # the files only start processes; FSDP and precision come from the training settings (one place)
    assert gpus["distributed_type"] == "MULTI_GPU" and gpus["mixed_precision"] == "no" and not gpus["use_cpu"]
    assert cpu["distributed_type"] == "MULTI_GPU" and cpu["use_cpu"] is True
    assert "fsdp_config" not in gpus and "fsdp_config" not in cpu


def test_fsdp_is_full_shard_with_sharded_checkpoints(monkeypatch):
    from meds1.sft.fsdp import fsdp_arguments

    for var in ("ACCELERATE_USE_FSDP", "FSDP_CPU_RAM_EFFICIENT_LOADING"):
        monkeypatch.setenv(var, "false")  # restored after the test: fsdp_arguments sets them for the process
    args = fsdp_arguments(gradient_checkpointing=True)
    config = args["fsdp_config"]
    assert "full_shard" in args["fsdp"] and config["version"] == 2 and config["reshard_after_forward"] is True
    assert config["state_dict_type"] == "SHARDED_STATE_DICT"  # no full gather on rank 0 at a checkpoint
    assert config["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP" and "transformer_layer_cls_to_wrap" not in config
    assert config["activation_checkpointing"] is True and config["cpu_ram_efficient_loading"] is True
    assert os.environ["ACCELERATE_USE_FSDP"] == "true"  # transformers then loads weights on local rank 0 only
    assert fsdp_arguments(gradient_checkpointing=False)["fsdp_config"]["activation_checkpointing"] is False


def test_fsdp_refuses_a_torch_that_leaves_the_fused_head_unit_half_run(monkeypatch):
    from meds1.sft.fsdp import require_torch_for_fsdp

    monkeypatch.setattr(torch, "__version__", "2.11.0+cu130")
    with pytest.raises(MedS1Error, match=r"FSDP training needs torch>=2\.13, this is 2\.11\.0\+cu130"):
        require_torch_for_fsdp()
    monkeypatch.setattr(torch, "__version__", "2.13.0+cpu")
    require_torch_for_fsdp()


def test_sft_config_precision_and_checkpointing(tmp_path, monkeypatch):
    from meds1.sft.train import recompute_activations, sft_config

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    settings = TrainSettings.from_spec({"experiment": "e", "training_params": {"gradient_checkpointing": True,
                                                                               "keep_checkpoints": 3}})
    args = sft_config(settings, EffectiveBatch(1, 1, 1, 1), tmp_path, has_validation=True, report_to=[], run_name="e")
    assert (args.bf16, args.use_cpu, args.activation_checkpointing, args.save_total_limit) == (False, True, True, 3)
    assert not args.fsdp  # one plain process on CPU
    assert recompute_activations("auto", on_gpu=True) and not recompute_activations("auto", on_gpu=False)


def test_main_relaunches_through_accelerate_over_the_gpus_it_has(monkeypatch):
    calls = []
    monkeypatch.setattr(devices, "count_gpus", lambda: 2)
    monkeypatch.setattr(launch, "count_gpus", lambda: 2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(launch.subprocess, "run", lambda cmd, check: calls.append(cmd) or
                        subprocess.CompletedProcess(cmd, 0))
    argv = ["--spec", "{}", "--dataset", "d", "--model", "m", "--final", "f", "--metrics", "x", "--work", "w"]
    assert launch.main(argv) == 0
    assert calls[0][calls[0].index("--num_processes") + 1] == "2" and calls[0][-len(argv):] == argv


def test_main_without_gpu_stops_unless_cpu_is_asked_for(monkeypatch):
    monkeypatch.setattr(devices, "count_gpus", lambda: 0)
    monkeypatch.setattr(launch, "count_gpus", lambda: 0)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv(devices.ALLOW_CPU_ENV, raising=False)
    argv = ["--spec", '{"experiment": "e"}', "--dataset", "d", "--model", "m", "--final", "f", "--metrics", "x",
            "--work", "w"]
    with pytest.raises(MedS1Error, match="experiment 'e': the train job planned 1 GPU"):
        launch.main(argv)


def test_read_spec_accepts_file_or_text(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps({"experiment": "e"}))
    assert launch.read_spec(str(tmp_path / "spec.json")) == {"experiment": "e"}
    assert launch.read_spec('{"experiment": "f"}') == {"experiment": "f"}
    with pytest.raises(MedS1Error, match="cannot read train spec"):
        launch.read_spec(str(tmp_path / "missing.json"))


# --- wandb ----------------------------------------------------------------------------------------------------------

def test_wandb_reports_offline_grouped_by_experiment_unless_disabled(monkeypatch, tmp_path):
    from meds1.sft.train import configure_wandb

    for key in ("WANDB_MODE", "WANDB_RUN_GROUP", "WANDB_PROJECT", "WANDB_DIR"):
        monkeypatch.delenv(key, raising=False)
    assert configure_wandb({"experiment": "exp1", "wandb": {"project": "p"}}, tmp_path) == ["wandb"]
    assert (os.environ["WANDB_MODE"], os.environ["WANDB_RUN_GROUP"], os.environ["WANDB_PROJECT"]) == \
        ("offline", "exp1", "p")
    assert configure_wandb({"experiment": "exp1", "wandb": {"mode": "disabled"}}, tmp_path) == []
    monkeypatch.setenv("WANDB_MODE", "disabled")  # the environment (tests, CI) switches it off for every spec
    assert configure_wandb({"experiment": "exp1", "wandb": {"mode": "online"}}, tmp_path) == []


@pytest.mark.parametrize("key, value", [("warmup_ratio", 1.5), ("num_epochs", 0), ("evals_per_epoch", 0)])
def test_settings_reject_out_of_range_values(key, value):
    with pytest.raises(MedS1Error, match=f"experiment 'e': key 'training_params.{key}'"):
        TrainSettings.from_spec({"experiment": "e", "training_params": {key: value}})


# --- checkpoints ----------------------------------------------------------------------------------------------------

def test_resume_picks_the_latest_complete_checkpoint_of_the_same_run(tmp_path):
    from meds1.sft.checkpoints import complete_checkpoints, find_resume_checkpoint, prepare_work_dir

    for step, state in ((4, "{}"), (8, "{}"), (12, '{"half')):  # 12 was being written when the job died
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-16").mkdir()  # not even a state file yet
    prepare_work_dir(tmp_path, "run-a", resuming=True)
    assert [step for step, _ in complete_checkpoints(tmp_path)] == [4, 8]
    assert find_resume_checkpoint(tmp_path, "run-a") == tmp_path / "checkpoint-8"
    assert find_resume_checkpoint(tmp_path, "run-b") is None  # another spec/dataset: start fresh
    prepare_work_dir(tmp_path, "run-b", resuming=False)
    assert not list(tmp_path.glob("checkpoint-*"))
    assert json.loads((tmp_path / "run_fingerprint.json").read_text()) == {"fingerprint": "run-b"}


def test_run_training_dispatches_to_accelerate_or_in_process(monkeypatch, tmp_path):
    import meds1.sft.train as train_module

    spec = {"experiment": "e", "model": {"key": "tiny", "path": "models/tiny"}}
    paths = dict(dataset_dir="d", final_dir=tmp_path / "final", metrics_path=tmp_path / "m.json",
                 work_dir=tmp_path / "work")
    in_process = []
    monkeypatch.setattr(train_module, "train", lambda *a: in_process.append(a) or {"where": "here"})
    monkeypatch.setattr(devices, "count_gpus", lambda: 0)
    with pytest.raises(MedS1Error) as err:  # the rule planned a GPU; none here; CPU not asked for
        launch.run_training(spec, gpus=1, allow_cpu=False, **paths)
    assert "\n" not in str(err.value) and "planned 1 GPU(s) but finds none" in str(err.value)
    assert launch.run_training(spec, gpus=1, allow_cpu=True, **paths) == {"where": "here"}
    assert in_process[0][:2] == (spec, "d") and in_process[0][2] == "models/tiny"

    commands = []

    def fake_accelerate(cmd, check):
        commands.append(cmd)
        (tmp_path / "m.json").write_text('{"where": "workers"}')  # what the workers' rank 0 writes
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(devices, "count_gpus", lambda: 8)
    monkeypatch.setattr(launch.subprocess, "run", fake_accelerate)
    assert launch.run_training(spec, gpus=2, **paths) == {"where": "workers"}
    cmd = commands[0]
    assert cmd[cmd.index("--num_processes") + 1] == "2"  # the rule's 2 GPUs, not all 8 on the node
    assert json.loads((tmp_path / "work" / "train_spec.json").read_text()) == spec
    assert cmd[cmd.index("--spec") + 1] == str(tmp_path / "work" / "train_spec.json")
    monkeypatch.setattr(launch.subprocess, "run", lambda cmd, check: subprocess.CompletedProcess(cmd, 3))
    with pytest.raises(MedS1Error, match="exit code 3"):
        launch.run_training(spec, gpus=2, **paths)
