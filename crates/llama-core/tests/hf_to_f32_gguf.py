#!/usr/bin/env python3
"""Test helper: write an all-F32 GGUF of a tiny Hugging Face LLaMA checkpoint with gguf-py,
independently of our converter, so the forward pass can be checked against transformers' float32
logits (tests/transformers_ref.rs).

Usage: hf_to_f32_gguf.py HF_DIR OUT.gguf

Follows llama.cpp's convert_hf_to_gguf.py for LLaMA: tensor names blk.N.*, q/k rows permuted
from HF's rotate-half layout to interleaved pairs (reshape(n_head, 2, rows/n_head/2, cols)
.swapaxes(1, 2)), weights upcast to float32 exactly. Safetensors are parsed by hand (the format is
a JSON header + raw little-endian arrays) to avoid a dependency.
"""
import json
import os
import struct
import sys

import numpy as np
from gguf import GGUFWriter


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[a:b]
        dt = info["dtype"]
        if dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif dt == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"{path}: tensor {name} has unsupported dtype {dt}")
        out[name] = arr.reshape(info["shape"]).astype(np.float32)
    return out


def permute(w, n_head):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    cfg = json.load(open(os.path.join(src, "config.json")))
    tensors = {}
    for fn in sorted(os.listdir(src)):
        if fn.endswith(".safetensors"):
            tensors.update(read_safetensors(os.path.join(src, fn)))
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_head)
    n_embd = cfg["hidden_size"]
    head_dim = cfg.get("head_dim", n_embd // n_head)
    rope = cfg.get("rope_parameters") or {}
    theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))

    w = GGUFWriter(dst, "llama")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(n_embd)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_file_type(0)

    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    for name in sorted(tensors):
        t = tensors[name]
        if name in names:
            out = names[name]
        else:
            parts = name.split(".")
            if parts[:2] != ["model", "layers"] or ".".join(parts[3:]) not in per_layer:
                raise SystemExit(f"unexpected tensor {name}")
            out = f"blk.{parts[2]}.{per_layer['.'.join(parts[3:])]}"
            if out.endswith("attn_q.weight"):
                t = permute(t, n_head)
            elif out.endswith("attn_k.weight"):
                t = permute(t, n_kv)
        w.add_tensor(out, np.ascontiguousarray(t, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
