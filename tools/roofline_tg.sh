#!/bin/bash
# Issue 17's roofline line in one sitting: the read bandwidth (tools/read_bandwidth.py), then
# tg128 of each model with the bytes it reads per token (tools/roofline.py) and their share.
#   bash tools/roofline_tg.sh [MODEL_DIR] [PYTHON]
set -e
M=${1:-$HOME/.cache/llama-test-models}
PY=${2:-python}
here=$(dirname "$0")
BW=$($PY "$here/read_bandwidth.py" | awk '{print $1}')
echo "read bandwidth (2 threads): $BW GB/s"
for m in synth-1b-q4_0 synth-7b-q4_0 qwen2.5-coder-0.5b-q4_k_m gemma3-270m-q4_k_m smollm2-135m-instruct-q4_1 synth-1b-q8_0; do
  [ -f "$M/$m.gguf" ] || continue
  MB=$($PY "$here/roofline.py" "$M/$m.gguf" | head -1 | sed 's/.*matrices \([0-9.]*\) MB.*/\1/')
  R=3; [ $m = synth-7b-q4_0 ] && R=2
  TG=$($PY -m llama bench -m "$M/$m.gguf" -p 0 -n 128 -t 2 -r $R 2>&1 | tail -1 | awk '{print $2}')
  $PY -c "tg, mb, bw = $TG, $MB, $BW; print(f'$m: {mb} MB/token, tg128 {tg} tok/s = {tg * mb / 1e3:.2f} GB/s = {100 * tg * mb / 1e3 / bw:.1f} %')"
done
