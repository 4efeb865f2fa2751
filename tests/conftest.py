"""Shared fixtures: offline environment, the tiny model, a scratch copy of the workflow."""
from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_configure(config):
    # Offline and quiet for every test and every subprocess they start.
    tmp = Path(os.environ.get("MEDS1_TEST_HOME") or (REPO / ".pytest-home"))
    tmp.mkdir(exist_ok=True)
    for key, value in {
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp / "hf"), "WANDB_MODE": "disabled", "WANDB_DIR": str(tmp / "wandb"),
        "WANDB_CACHE_DIR": str(tmp / "wandb"), "WANDB_CONFIG_DIR": str(tmp / "wandb"),
        "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": "0",
        "MEDS1_ALLOW_CPU": "1",  # CI has no GPU: GPU rules (train, eval) run on CPU, asked for (meds1.devices)
    }.items():
        os.environ.setdefault(key, value)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama + its own 1k-vocab tokenizer, built once per session."""
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


def pytest_collection_modifyitems(config, items):
    # A test that reads ../shared/data says so with the marker; the fixture is how it gets the folder.
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("shared_data"):
            item.add_marker(pytest.mark.shared_data)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real public data). Missing: CI fails (MEDS1_REQUIRE_SHARED_DATA=1), a bare clone skips."""
    if not SHARED_DATA.exists():
        message = f"shared data not found at {SHARED_DATA}"
        if os.environ.get("MEDS1_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message + " (CI requires it: MEDS1_REQUIRE_SHARED_DATA=1)")
        pytest.skip(message + " (test marked shared_data)")
    return SHARED_DATA


@pytest.fixture
def vllm(monkeypatch, request):
    """The fake ``vllm`` module (tests/fake_vllm/): vLLM's API and stopping rules, recording every call."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "fake_vllm"))
    sys.modules.pop("vllm", None)
    module = importlib.import_module("vllm")
    request.addfinalizer(lambda: sys.modules.pop("vllm", None))
    module.reset()
    return module
