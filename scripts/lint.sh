#!/usr/bin/env bash
# The checks, fast ones first: rustfmt, ruff (lint and format), import cycles between modules
# (tools/module_cycles.py), clippy with warnings as errors, mypy over the package, and stubtest of
# the native module's stubs (python/llama/_llama.pyi) against the built module, and that the built
# module inlines every SIMD intrinsic (tools/check_inlined.py). Needs the package
# installed (pip install '.[test]' or maturin develop) so that `llama._llama` imports. Runs every
# check and exits non-zero when any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
failed=()
run() {
    echo "== $*"
    "$@" || failed+=("$*")
}
run cargo fmt --all -- --check
run "$PY" -m ruff check python tests tools
run "$PY" -m ruff format --check python tests tools
run "$PY" tools/module_cycles.py
run cargo clippy --workspace --all-targets --quiet -- -D warnings
run "$PY" -m mypy
# The installed package's stub against its built module (the checkout root holds no `llama`).
run "$PY" -m mypy.stubtest llama._llama
# Kernels whose intrinsics compiled as calls (a missing #[target_feature]): right values, 20-80x slower.
run "$PY" tools/check_inlined.py
if ((${#failed[@]})); then
    printf 'FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "lint: all checks passed"
