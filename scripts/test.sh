#!/usr/bin/env bash
# Installs what the tests need and runs every test: Rust unit/integration tests, then pytest.
# Test models are found through LLAMA_TEST_MODELS (default ~/.cache/llama-test-models); tests whose
# model is absent are skipped with a message saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --upgrade pip >/dev/null 2>&1 || true
python3 -m pip install -q '.[test]'
cargo test --workspace --no-fail-fast -q 2>&1 | tail -n 400
python3 -m pytest -q -rs tests
