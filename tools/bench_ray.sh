#!/usr/bin/env bash
# docs/PERFORMANCE.md, "Replicas on Ray Serve": aggregate tokens/s of C concurrent streaming clients
# (python -m llama bench-serve) against one server process without Ray, and against `serve --ray` with 1
# and 2 replicas of 1 thread each; then the prefix-affinity hit rate (tools/ray_affinity.py) with the
# affinity router and with Serve's default routing. Each server is started, measured and stopped in turn
# (loopback only). Needs the [ray] extra and a quiet machine. The affinity runs print one JSON line each
# (tools/ray_affinity.py); the 4-replica servers are measured for routing only.
#
#   tools/bench_ray.sh [MODEL] [CLIENTS]     (default: qwen2.5-coder-0.5b-q4_k_m.gguf of the test models, 8)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-${LLAMA_TEST_MODELS:-$HOME/.cache/llama-test-models}/qwen2.5-coder-0.5b-q4_k_m.gguf}
clients=${2:-8}
alias=$(basename "$model" .gguf)
port=8321
py=${PYTHON:-python3}

wait_up() {  # until /v1/models answers (the model is loaded everywhere)
  for _ in $(seq 600); do
    curl -sf -m 5 "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1 && return 0
    kill -0 "$1" 2>/dev/null || { echo "server exited" >&2; return 1; }
    sleep 0.5
  done
  echo "server not up" >&2
  return 1
}

run() {  # NAME, then the server's command line
  local name=$1
  shift
  "$@" >/dev/null 2>"/tmp/bench_ray_$name.log" &
  local pid=$!
  wait_up "$pid"
  echo "== $name: $*"
  if [ "${BENCH:-1}" = 1 ]; then
    "$py" -m llama bench-serve --url "http://127.0.0.1:$port" --model-alias "$alias" --clients "$clients,$clients" \
      -n 128 -p 32 --quiet
  fi
  if [ "${AFFINITY:-}" = 1 ]; then
    for seed in 0 1; do
      "$py" tools/ray_affinity.py --url "http://127.0.0.1:$port" --conversations 16 --clients 2 --turns 5 \
        --sequential --background 2 --seed $seed
    done
    "$py" tools/ray_affinity.py --url "http://127.0.0.1:$port" --conversations 16 --clients 4 --turns 4
  fi
  kill -TERM "$pid"
  wait "$pid" || true
}

run plain_t1 "$py" -m llama serve -m "$model" --port $port -t 1 -np 8 -c 1024 --quiet
run plain_t2 "$py" -m llama serve -m "$model" --port $port -t 2 -np 8 -c 1024 --quiet
run ray_1x1 "$py" -m llama serve --ray -m "$model" --port $port --replicas 1 -t 1 -np 8 -c 1024 --quiet
AFFINITY=1 run ray_2x1 "$py" -m llama serve --ray -m "$model" --port $port --replicas 2 -t 1 -np 4 -c 1024 --quiet
AFFINITY=1 run ray_2x1_noaff "$py" -m llama serve --ray -m "$model" --port $port --replicas 2 -t 1 -np 4 -c 1024 \
  --no-affinity --quiet
# where the turns go with 4 replicas (4 x 1 thread on 2 cores: not a speed measurement)
BENCH=0 AFFINITY=1 run ray_4x1 "$py" -m llama serve --ray -m "$model" --port $port --replicas 4 -t 1 --num-cpus 0.5 \
  -np 4 -c 1024 --quiet
BENCH=0 AFFINITY=1 run ray_4x1_noaff "$py" -m llama serve --ray -m "$model" --port $port --replicas 4 -t 1 \
  --num-cpus 0.5 -np 4 -c 1024 --no-affinity --quiet
