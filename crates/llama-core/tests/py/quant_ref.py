"""gguf-py reference side of the quant tests (crates/llama-core/tests/quant_*.rs).

Subcommands (all output goes to files or stdout, never compares anything itself):
  random OUTDIR SEED        for each type gguf-py can dequantize: random blocks with sane f16 scales,
                            written as OUTDIR/<type>.raw, and gguf-py's float32 result as <type>.f32
  quantize OUTDIR SEED      random float32 rows (<type>.src.f32) and gguf-py's quantized bytes
                            (<type>.q) for each type gguf-py can quantize
  model PATH                streams every tensor of a GGUF file to stdout: one JSON header line
                            {name, type, n_elements, offset, nbytes}, then gguf-py's dequantized
                            float32 data (n_elements * 4 bytes)
Exit code 3 means gguf-py is not importable (the Rust side then skips).
"""
import json
import os
import sys

try:
    import numpy as np
    import gguf
    from gguf import GGMLQuantizationType as T
    from gguf.quants import dequantize, quantize
except ImportError as e:  # pragma: no cover - environment dependent
    print(f"gguf-py unavailable: {e}", file=sys.stderr)
    sys.exit(3)

QK_K = 256
# (type, number of blocks, byte offsets of f16 scale fields inside a block)
DEQ_TYPES = [
    (T.F32, 0, []), (T.F16, 0, []), (T.BF16, 0, []),
    (T.Q4_0, 4096, [0]), (T.Q4_1, 4096, [0, 2]), (T.Q5_0, 4096, [0]), (T.Q5_1, 4096, [0, 2]),
    (T.Q8_0, 4096, [0]),
    (T.Q2_K, 512, [80, 82]), (T.Q3_K, 512, [108]), (T.Q4_K, 512, [0, 2]), (T.Q5_K, 512, [0, 2]),
    (T.Q6_K, 512, [208]),
]


def sane_f16(rng, n):
    """Finite f16 scales over many magnitudes, both signs, with zeros and subnormals mixed in."""
    mag = 10.0 ** rng.uniform(-7, 1, n)
    v = (rng.standard_normal(n) * mag).astype(np.float16)
    v[rng.random(n) < 0.02] = 0
    v[rng.random(n) < 0.02] = np.float16(-0.0)
    return v


def random_data(qtype, n_blocks, offs, rng):
    if qtype == T.F32:
        v = (rng.standard_normal(8192) * 10.0 ** rng.uniform(-40, 38, 8192)).astype(np.float32)
        v[:6] = [np.inf, -np.inf, 0.0, -0.0, 1e-45, -3.4e38]
        return v.view(np.uint8)
    if qtype in (T.F16, T.BF16):
        # every bit pattern but NaNs: all finite values, infinities, signed zeros, subnormals
        bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
        f = bits.view(np.float16) if qtype == T.F16 else (bits.astype(np.uint32) << 16).view(np.float32)
        return bits[~np.isnan(f)].view(np.uint8)
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in offs:
        raw[:, off:off + 2] = sane_f16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


def cmd_random(outdir, seed):
    rng = np.random.default_rng(seed)
    for qtype, n_blocks, offs in DEQ_TYPES:
        raw = random_data(qtype, n_blocks, offs, rng)
        out = dequantize(raw, qtype).astype(np.float32, copy=False)
        raw.tofile(os.path.join(outdir, f"{qtype.name}.raw"))
        np.ascontiguousarray(out).reshape(-1).tofile(os.path.join(outdir, f"{qtype.name}.f32"))


def cmd_quantize(outdir, seed):
    rng = np.random.default_rng(seed)
    for qtype in (T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        rows, cols = 256, 256
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        x *= (10.0 ** rng.uniform(-4, 3, (rows, 1))).astype(np.float32)
        x[0] = 0.0                      # all-zero row
        x[1] = 0.5                      # constant row
        x[2, ::3] = 0.0                 # sparse row
        x[3] = np.abs(x[3])             # one-signed rows
        x[4] = -np.abs(x[4])
        x[5, 7] = 1e4                   # one outlier
        if qtype in (T.F16, T.BF16):    # float specials: NaN payloads, ±Inf, overflow, subnormals, ties
            sp = np.array([0x7fc00000, 0xffc00001, 0x7f800001, 0x7fa12345, 0x7f800000, 0xff800000,
                           0x00000001, 0x80000001, 0x7f7fffff, 0x477ff000, 0x477fefff, 0x3f808000,
                           0x3f818000, 0x33800000, 0x33000001, 0x387fc000], dtype=np.uint32)
            if qtype == T.F16:          # numpy keeps NaN payload bits, ggml/F16C give a quiet NaN:
                sp = sp[4:]             # NaN encodings are checked on the Rust side instead
            x[6, :len(sp)] = sp.view(np.float32)
        q = quantize(x, qtype)
        x.tofile(os.path.join(outdir, f"{qtype.name}.src.f32"))
        np.ascontiguousarray(q).view(np.uint8).tofile(os.path.join(outdir, f"{qtype.name}.q"))


def cmd_model(path):
    r = gguf.GGUFReader(path)
    out = sys.stdout.buffer
    for t in r.tensors:
        n = int(np.prod(t.shape))
        data = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        hdr = {"name": t.name, "type": int(t.tensor_type), "n_elements": n,
               "offset": int(t.data_offset), "nbytes": int(t.n_bytes)}
        out.write((json.dumps(hdr) + "\n").encode())
        out.write(np.ascontiguousarray(data).reshape(-1).tobytes())
        out.flush()


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "random":
        cmd_random(sys.argv[2], int(sys.argv[3]))
    elif cmd == "quantize":
        cmd_quantize(sys.argv[2], int(sys.argv[3]))
    elif cmd == "model":
        cmd_model(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd}")
