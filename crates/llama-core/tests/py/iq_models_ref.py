#!/usr/bin/env python3
"""llama.cpp side of tests/quant_iq_models.rs (never compares anything itself).

  model SRC OUT FTYPE_ID TOKENS
      llama.cpp's own quantizer (llama-cpp-python's llama_model_quantize, pure: every 2-D weight
      to the type, requantizing SRC) writes OUT, then llama.cpp evaluates the comma-separated
      TOKENS on OUT in one batch (n_ctx 64, logits_all, 2 threads) and writes every row's logits
      (float32, [n_tokens][n_vocab]) to OUT.logits.f32; the same for the first 5 tokens alone to
      OUT.logits5.f32.

Exit code 3 = llama_cpp (or numpy) is missing, so the caller skips.
"""
import ctypes
import sys

try:
    import numpy as np
    import llama_cpp
except ImportError as e:  # pragma: no cover - environment dependent
    print(f"missing python package: {e}", file=sys.stderr)
    sys.exit(3)


def model(src, out, ftype, tokens):
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.pure = True
    p.allow_requantize = True
    p.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), out.encode(), ctypes.byref(p))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed with {rc}")
    llm = llama_cpp.Llama(out, n_ctx=64, n_batch=64, n_ubatch=64, logits_all=True, n_threads=2,
                          flash_attn=False, verbose=False)
    toks = [int(t) for t in tokens.split(",")]
    llm.eval(toks)
    np.array(llm.scores[: len(toks)], dtype=np.float32).tofile(out + ".logits.f32")
    # a batch under 8 tokens (llama.cpp's row dots instead of its tiled GEMM for IQ4_XS)
    llm.reset()
    llm.eval(toks[:5])
    np.array(llm.scores[:5], dtype=np.float32).tofile(out + ".logits5.f32")


if __name__ == "__main__":
    if sys.argv[1] == "model":
        model(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
