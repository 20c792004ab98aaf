#!/bin/bash
# Issue 17's roofline line in one sitting: tg128 of each model with the bytes it reads per token
# (tools/roofline.py) against the read bandwidth (tools/read_bandwidth.py) measured right before and
# right after that model's run (their mean: a neighbour on the host moves both together), over a
# 1 GiB buffer and over a buffer of the model's bytes per token (what the last-level cache can
# hold of it helps the read loop as much as the model).
#   bash tools/roofline_tg.sh [MODEL_DIR] [PYTHON]
set -e
M=${1:-$HOME/.cache/llama-test-models}
PY=${2:-python}
here=$(dirname "$0")
bw() { $PY "$here/read_bandwidth.py" "$@" | awk '{print $1}'; }
for m in synth-1b-q4_0 synth-7b-q4_0 qwen2.5-coder-0.5b-q4_k_m gemma3-270m-q4_k_m smollm2-135m-instruct-q4_1 synth-1b-q8_0; do
  [ -f "$M/$m.gguf" ] || continue
  MB=$($PY "$here/roofline.py" "$M/$m.gguf" | head -1 | sed 's/.*matrices \([0-9.]*\) MB.*/\1/')
  R=3; [ $m = synth-7b-q4_0 ] && R=2
  G0=$(bw); F0=$(bw --mb "$MB")
  TG=$($PY -m llama bench -m "$M/$m.gguf" -p 0 -n 128 -t 2 -r $R 2>&1 | tail -1 | awk '{print $2}')
  G1=$(bw); F1=$(bw --mb "$MB")
  $PY -c "
tg, mb, g, f = $TG, $MB, ($G0 + $G1) / 2, ($F0 + $F1) / 2
r = tg * mb / 1e3
print(f'$m: {mb} MB/token, tg128 {tg} tok/s = {r:.2f} GB/s; 1 GiB read $G0/$G1 GB/s: {100 * r / g:.1f} %;'
      f' {mb:.0f} MB read $F0/$F1 GB/s: {100 * r / f:.1f} %')"
done
