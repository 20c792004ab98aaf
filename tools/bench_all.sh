#!/usr/bin/env bash
# The Issue-4 table: llama.py vs llama.cpp (llama-cpp-python) on the benchmark models, same
# process, same threads. Usage: tools/bench_all.sh [MODELS_DIR] [REPS]  (needs a quiet machine)
set -euo pipefail
dir=${1:-${LLAMA_TEST_MODELS:-$HOME/.cache/llama-test-models}}
reps=${2:-3}
for m in synth-7b-q4_0 synth-1b-q4_0 synth-1b-q8_0 qwen2.5-coder-0.5b-q4_k_m gemma3-270m-q4_k_m smollm2-135m-instruct-q4_1; do
  f="$dir/$m.gguf"
  [ -f "$f" ] || { echo "$m: missing (fetch-models.sh DIR --with-7b)"; continue; }
  python3 -m llama bench -m "$f" -p 512 -n 128 -t 2 -r "$reps" --compare-llama-cpp --json | tail -1 | sed "s/^/$m /"
done
