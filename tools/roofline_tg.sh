#!/bin/bash
# Issue 17's roofline line in one sitting: tg128 of each model with the bytes it reads per token
# (tools/roofline.py) against the read bandwidth (tools/read_bandwidth.py) measured right before and
# right after that model's run (their mean: a neighbour on the host moves both together).
#   bash tools/roofline_tg.sh [MODEL_DIR] [PYTHON]
set -e
M=${1:-$HOME/.cache/llama-test-models}
PY=${2:-python}
here=$(dirname "$0")
bw() { $PY "$here/read_bandwidth.py" | awk '{print $1}'; }
for m in synth-1b-q4_0 synth-7b-q4_0 qwen2.5-coder-0.5b-q4_k_m gemma3-270m-q4_k_m smollm2-135m-instruct-q4_1 synth-1b-q8_0; do
  [ -f "$M/$m.gguf" ] || continue
  MB=$($PY "$here/roofline.py" "$M/$m.gguf" | head -1 | sed 's/.*matrices \([0-9.]*\) MB.*/\1/')
  R=3; [ $m = synth-7b-q4_0 ] && R=2
  B0=$(bw)
  TG=$($PY -m llama bench -m "$M/$m.gguf" -p 0 -n 128 -t 2 -r $R 2>&1 | tail -1 | awk '{print $2}')
  B1=$(bw)
  $PY -c "tg, mb, bw = $TG, $MB, ($B0 + $B1) / 2; print(f'$m: {mb} MB/token, tg128 {tg} tok/s = {tg * mb / 1e3:.2f} GB/s; read $B0/$B1 GB/s: {100 * tg * mb / 1e3 / bw:.1f} %')"
done
