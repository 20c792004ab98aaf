#!/usr/bin/env bash
# README's test command (after scripts/fetch-models.sh): installs what the tests need, runs the checks
# (formatting, lints, types, stubs, module cycles: fast ones first), then every test: Rust unit and
# integration tests, then pytest.
#
#   scripts/test.sh [--full]
#
# --full (or LLAMA_TEST_FULL=1, as CI sets it) adds the expensive cases: every model file round-tripped
# and parsed against gguf-py, every tensor of the real models dequantized against gguf-py.
# Test models are found through LLAMA_TEST_MODELS (default ~/.cache/llama-test-models); tests whose
# model is absent are skipped with a message saying so. Whole-model tests run one at a time
# (--test-threads=1): each evaluates on a thread pool of its own, and two pools on two cores would
# spin against each other.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "--full" ] && export LLAMA_TEST_FULL=1
python3 -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# [ray]: Ray Serve, for tests/test_ray_serve.py (replicas behind one endpoint; skipped without it)
python3 -m pip install -q '.[test,ray]'
# llama.cpp itself (llama-cpp-python 0.3.36 built from source, ~6 min on 2 cores) for the tests that
# compare with it live: quantize byte for byte, our conversions run in llama.cpp, tokenizers. Without
# it those tests skip, saying so. -mno-amx-*: gcc's -march=native turns AMX on where CPUID shows it
# but the kernel does not enable it, and llama.cpp then crashes in its first decode.
if ! python3 -c "import llama_cpp" 2>/dev/null; then
  args=""
  if [ "$(uname -m)" = x86_64 ]; then
    amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    args="-DCMAKE_C_FLAGS='$amx' -DCMAKE_CXX_FLAGS='$amx'"
  fi
  CMAKE_ARGS="$args" python3 -m pip install -q llama-cpp-python==0.3.36 ||
    echo "llama-cpp-python could not be built: the tests that run llama.cpp skip" >&2
fi
# Every stage runs even when an earlier one failed, so one run shows everything; the exit status
# says whether all passed.
failed=()
bash scripts/lint.sh || failed+=(lint)
cargo test --workspace --no-fail-fast -q -- --test-threads=1 2>&1 | tail -n 400 || failed+=("cargo test")
python3 -m pytest -q -rs tests || failed+=(pytest)
if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "all checks and tests passed"
