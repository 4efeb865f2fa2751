"""meds1.devices: one GPU counter (CUDA_VISIBLE_DEVICES and what torch can open) and the one-line stop of a GPU job
that finds fewer GPUs than it planned, unless the run asked for CPU."""
from __future__ import annotations

import pytest
import torch

from meds1 import devices
from meds1.errors import MedS1Error


@pytest.fixture
def gpus(monkeypatch):
    """Pretend torch sees ``n`` working CUDA devices."""
    def set_count(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(devices.ALLOW_CPU_ENV, raising=False)
    return set_count


@pytest.mark.parametrize("visible, torch_sees, expected", [
    (None, 4, 4),          # no restriction: what torch sees
    ("0,1", 4, 2),         # SLURM gave the job two
    ("", 4, 0),            # hidden on purpose
    ("-1", 4, 0),
    ("0,-1,2", 4, 1),      # CUDA stops at the first invalid id
    ("0", 0, 0),           # SLURM's fake GRES on a CPU node (CI): listed, but CUDA does not work
])
def test_count_gpus(gpus, monkeypatch, visible, torch_sees, expected):
    gpus(torch_sees)
    if visible is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert devices.count_gpus() == expected


def test_require_gpus_returns_the_planned_count_when_enough_work(gpus):
    gpus(8)
    assert devices.require_gpus(4, allow_cpu=False) == 4
    assert devices.require_gpus(0, allow_cpu=False) == 0  # the rule planned no GPU: CPU is its plan


def test_no_gpu_stops_with_one_line_unless_cpu_was_asked_for(gpus, monkeypatch, capsys):
    gpus(0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(MedS1Error) as err:
        devices.require_gpus(1, allow_cpu=False, experiment="exp1", job="train")
    text = str(err.value)
    assert "\n" not in text and text.startswith("experiment 'exp1': the train job planned 1 GPU(s) but finds none")
    assert "CUDA_VISIBLE_DEVICES='0'" in text and "MEDS1_ALLOW_CPU=1" in text and "profiles/local" in text
    assert devices.require_gpus(1, allow_cpu=True, experiment="exp1") == 0
    assert "running on CPU as this run asked" in capsys.readouterr().err


def test_too_few_gpus_stop_even_when_cpu_is_allowed(gpus, monkeypatch):
    gpus(8)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(MedS1Error, match=r"planned 4 GPU\(s\) but finds only 2"):
        devices.require_gpus(4, allow_cpu=True, experiment="exp1")


def test_cpu_is_asked_for_by_the_rule_resource_or_the_environment(monkeypatch):
    monkeypatch.delenv(devices.ALLOW_CPU_ENV, raising=False)
    assert not devices.cpu_allowed() and not devices.cpu_allowed(0)
    assert devices.cpu_allowed(1) and devices.cpu_allowed("true")
    monkeypatch.setenv(devices.ALLOW_CPU_ENV, "1")
    assert devices.cpu_allowed() and devices.cpu_allowed(0)  # 0 = the rule did not ask; the environment did
