"""Shared test helpers: where the test models and ../shared live, and skips that say why."""

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LLAMA_SHARED", REPO.parent / "shared"))
MODELS = Path(os.environ.get("LLAMA_TEST_MODELS", Path.home() / ".cache" / "llama-test-models"))

GOLDEN_MODELS = [
    "synth-tiny-q4_0",
    "synth-1b-q4_0",
    "synth-1b-q8_0",
    "qwen2.5-coder-0.5b-q4_k_m",
    "gemma3-270m-q4_k_m",
]


def model_path(name: str) -> str:
    """Path of a test model; skips the test (with the reason) when it is absent."""
    p = MODELS / name
    if not p.exists():
        pytest.skip(f"test model {p} is absent (run ../shared/tools/fetch-models.sh {MODELS})")
    return str(p)


def shared_path(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent (../shared is not beside this checkout)")
    return p


def golden(name: str) -> dict:
    return json.loads(shared_path("golden", f"{name}.json").read_text())
