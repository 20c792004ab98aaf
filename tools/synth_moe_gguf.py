#!/usr/bin/env python3
"""Write a Qwen3-MoE GGUF with random Q4_K_M-like weights: Qwen3-30B-A3B's layer shape (n_embd
2048, 32 heads / 4 KV heads of 128, 128 experts of width 768, 8 used per token, vocab 151936,
rope base 1e6) with fewer layers, for benchmarks (its text is noise; routing is random but
spreads over the experts as a trained router's does).

Usage: synth_moe_gguf.py OUT.gguf [--layers 12] [--seed 0]
       [--vocab .../llama.cpp/models/ggml-vocab-qwen2.gguf]

Needs the PyPI packages gguf and numpy. Tensors are written one at a time (quantized blocks made
directly from random bytes with sane scales: no f32 intermediate), so memory stays near the
largest tensor. The type mix follows llama-quantize's Q4_K_M rule: Q4_K everywhere, Q6_K for the
output matrix and for attn_v and ffn_down_exps of the "more bits" layers (the first and last
eighth and every third in between); the router (ffn_gate_inp) and the norms stay F32. The
tokenizer metadata is llama.cpp's Qwen2 vocab (151936 tokens, the size of the output matrix).
"""

import argparse

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader, GGUFValueType, GGUFWriter

N_EMBD, N_HEAD, N_HEAD_KV, HEAD_DIM = 2048, 32, 4, 128
N_EXPERT, N_USED, N_FF_EXP, N_FF, N_VOCAB = 128, 8, 768, 6144, 151936
DEFAULT_VOCAB = "/work/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf"


def q4_k(rng, shape, cols):
    """Random Q4_K blocks [*shape][cols/256][144]: d, dmin (f16), 12 scale bytes, 128 quant bytes."""
    nb = cols // 256
    d = np.abs(rng.standard_normal((*shape, nb, 2)) * 1e-4 + 2e-4).astype(np.float16)
    rest = rng.integers(0, 256, size=(*shape, nb, 140), dtype=np.uint8)
    return np.concatenate([d.view(np.uint8), rest], axis=-1).reshape(*shape, nb * 144)


def q6_k(rng, shape, cols):
    """Random Q6_K blocks [*shape][cols/256][210]: ql, qh, 16 i8 scales, d (f16)."""
    nb = cols // 256
    q = rng.integers(0, 256, size=(*shape, nb, 192), dtype=np.uint8)
    sc = rng.integers(-32, 32, size=(*shape, nb, 16), dtype=np.int8).view(np.uint8)
    d = (np.abs(rng.standard_normal((*shape, nb, 1))) * 1e-5 + 2e-5).astype(np.float16).view(np.uint8)
    return np.concatenate([q, sc, d], axis=-1).reshape(*shape, nb * 210)


def more_bits(il, n):
    """llama-quantize's use_more_bits(i_layer, n_layers)."""
    return il < n // 8 or il >= 7 * n // 8 or (il - n // 8) % 3 == 2


def plan(n_layer):
    """(name, ggml type, shape rows-first without cols, cols): the tensors in llama.cpp's order."""
    t = [("token_embd.weight", Q.Q4_K, (N_VOCAB,), N_EMBD)]
    for il in range(n_layer):
        p, mb = f"blk.{il}.", more_bits(il, n_layer)
        t += [
            (p + "attn_norm.weight", Q.F32, (), N_EMBD),
            (p + "attn_q.weight", Q.Q4_K, (N_HEAD * HEAD_DIM,), N_EMBD),
            (p + "attn_k.weight", Q.Q4_K, (N_HEAD_KV * HEAD_DIM,), N_EMBD),
            (p + "attn_v.weight", Q.Q6_K if mb else Q.Q4_K, (N_HEAD_KV * HEAD_DIM,), N_EMBD),
            (p + "attn_output.weight", Q.Q4_K, (N_EMBD,), N_HEAD * HEAD_DIM),
            (p + "attn_q_norm.weight", Q.F32, (), HEAD_DIM),
            (p + "attn_k_norm.weight", Q.F32, (), HEAD_DIM),
            (p + "ffn_norm.weight", Q.F32, (), N_EMBD),
            (p + "ffn_gate_inp.weight", Q.F32, (N_EXPERT,), N_EMBD),
            (p + "ffn_gate_exps.weight", Q.Q4_K, (N_EXPERT, N_FF_EXP), N_EMBD),
            (p + "ffn_up_exps.weight", Q.Q4_K, (N_EXPERT, N_FF_EXP), N_EMBD),
            (p + "ffn_down_exps.weight", Q.Q6_K if mb else Q.Q4_K, (N_EXPERT, N_EMBD), N_FF_EXP),
        ]
    t += [("output_norm.weight", Q.F32, (), N_EMBD), ("output.weight", Q.Q6_K, (N_VOCAB,), N_EMBD)]
    return t


def data(rng, name, ty, shape, cols):
    if ty == Q.Q4_K:
        return q4_k(rng, shape, cols)
    if ty == Q.Q6_K:
        return q6_k(rng, shape, cols)
    if shape == ():  # norms
        return (1.0 + 0.1 * rng.standard_normal(cols)).astype(np.float32)
    return (rng.standard_normal((*shape, cols)) * 0.02).astype(np.float32)  # router


def copy_vocab(w, path):
    """The tokenizer.* keys of a vocab GGUF."""
    r = GGUFReader(path)
    for f in r.fields.values():
        if not f.name.startswith("tokenizer."):
            continue
        vt = f.types[0]
        if vt == GGUFValueType.ARRAY:
            w.add_key_value(f.name, f.contents(), vt, sub_type=f.types[-1])
        else:
            w.add_key_value(f.name, f.contents(), vt)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab", default=DEFAULT_VOCAB, help="a GGUF holding a 151936-token vocab")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    arch = "qwen3moe"
    w = GGUFWriter(a.out, arch)
    w.add_name(f"synthetic-qwen3moe-{a.layers}l")
    w.add_block_count(a.layers)
    w.add_context_length(40960)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_rope_freq_base(1e6)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_expert_count(N_EXPERT)
    w.add_expert_used_count(N_USED)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_file_type(15)  # MOSTLY_Q4_K_M
    w.add_expert_feed_forward_length(N_FF_EXP)
    copy_vocab(w, a.vocab)

    tensors = plan(a.layers)
    for name, ty, shape, cols in tensors:
        if ty == Q.F32:
            w.add_tensor_info(name, (*shape, cols), np.dtype(np.float32), 4 * cols * int(np.prod(shape)))
        else:
            row = cols // 256 * (144 if ty == Q.Q4_K else 210)
            w.add_tensor_info(name, (*shape, row), np.dtype(np.uint8), row * int(np.prod(shape)), raw_dtype=ty)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, ty, shape, cols in tensors:
        w.write_tensor_data(data(rng, name, ty, shape, cols))
    w.close()


if __name__ == "__main__":
    main()
