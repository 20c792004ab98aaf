"""gguf-py reference side of the quant tests (crates/llama-core/tests/quant_*.rs).

Subcommands (all output goes to files or stdout, never compares anything itself):
  random OUTDIR SEED        for each type gguf-py can dequantize: random blocks with sane f16 scales,
                            written as OUTDIR/<type>.raw, and gguf-py's float32 result as <type>.f32
  quantize OUTDIR SEED      random float32 rows (<type>.src.f32) and gguf-py's quantized bytes
                            (<type>.q) for each type gguf-py can quantize
  llamacpp OUTDIR SEED      needs llama-cpp-python's bundled ggml (exit 4 if absent): random rows
                            (<type>.src.f32) through ggml's quantize_row_<type>_ref (<type>.q),
                            ggml's dequantize_row_<type> of those bytes (<type>.deq.f32), and
                            per row ggml_vec_dot_<type>_<partner> generic and SIMD (<type>.dot.f32,
                            2 floats a row) against activations quantized by ggml (<type>.act);
                            for mxfp4 and iq4_nl also the SIMD dot of each row's first 31
                            blocks (<type>.dot_odd.f32); iq4_nl.q is quantize_iq4_nl without imatrix
                            (what llama-quantize writes), iq4_nl.qref quantize_row_iq4_nl_ref
  gridiq OUTDIR SEED        needs llama-cpp-python's bundled ggml (exit 4 if absent): for each grid
                            i-quant (iq2_xxs, iq2_xs, iq2_s, iq3_xxs, iq3_s, iq1_s, iq1_m; ggml
                            makes them only with an imatrix, so random blocks with sane f16
                            scales as `random`), 64 rows of 1024 (<type>.q), ggml's
                            dequantize_row_<type> (<type>.deq.f32), Q8_K activations from
                            quantize_row_q8_K_ref (<type>.act) and per row
                            ggml_vec_dot_<type>_q8_K generic and SIMD (<type>.dot.f32, 2 floats);
                            and ggml_mul_mat of those rows with 16 float32 activation rows
                            (<type>.mm.src.f32 [16][1024]) computed by ggml-cpu, which takes its
                            tiled GEMM from 8 tokens on x86 (<type>.mm.out.f32 [16][64]), and
                            of the first 7 of them (vec_dot per pair: <type>.mm7.out.f32 [7][64])
  activations OUTDIR SEED   needs llama-cpp-python's bundled ggml on an AVX2 x86 CPU (exit 4
                            otherwise): random rows (<type>.src.f32, 1024 floats a row) through the
                            from_float that ggml-cpu really runs for q8_0/q8_1/q8_K activations
                            (ggml_get_type_traits_cpu(type)->from_float, the x86 SIMD quantizers),
                            bytes in <type>.act
  ops OUTDIR SEED           needs llama-cpp-python's bundled ggml: ggml_soft_max_ext (scale 1/8,
                            no mask) on rows of 256 scores whose tails are -inf (softmax.src.f32 /
                            softmax.out.f32), and ggml_swiglu_split on rows of 1000 and 4864
                            (swiglu<N>.x.f32, .g.f32, .out.f32), and ggml_norm (eps 1e-12) then
                            ggml_mul by w and ggml_add of b on rows of 384 and 1000 (norm<N>.x.f32,
                            .w.f32, .b.f32, .out.f32), computed by ggml-cpu
  rope OUTDIR SEED          needs llama-cpp-python's bundled ggml: ggml_rope_ext (NeoX) with YaRN
                            as llama.cpp sets it up for gpt-oss (freq_base 150000, factor 32,
                            trained context 4096, ext_factor 1, beta 32/1, attn_factor computed
                            as llama_context does), heads of 64 and 16 (rope<hd>.src.f32 [n_tok]
                            [4][hd], rope<hd>.pos.i32, rope<hd>.out.f32), and the attn_factor
                            (rope.attn_factor.f32)
  sinks OUTDIR SEED         needs llama-cpp-python's bundled ggml: ggml_soft_max_ext (scale 1/8,
                            no mask) with ggml_soft_max_add_sinks on [4 heads][8 rows][256] scores
                            with -inf tails (sinks.src.f32, sinks.sk.f32 [4], sinks.out.f32), and
                            the vector width of that ggml-cpu build (sinks.build: avx512 or avx2)
  sgemm OUTDIR SEED         needs llama-cpp-python's bundled ggml on an x86 CPU with AVX2 (exit 4
                            otherwise): ggml_mul_mat by ggml-cpu of F16 and F32 weights (random
                            rows of varied scales, <f16|f32>_<rows>x<cols>.w, raw) with float32
                            activations (<...>.x.f32 [16][cols]) for 16, 7, 2 and 1 tokens
                            (<...>.mm<n>.f32 [n][rows]); shapes 64x1024 (llamafile's tinyBLAS
                            from 2 tokens), 62x1024 (rows not a multiple of 4) and 64x1000 (a
                            row length that is a multiple of 8, not 16); the build's vector width
                            in sgemm.build (avx512 or avx2)
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
# IQ1_M has no f16 field: its scale's 4 nibbles are the top nibbles of the 4 u16s at bytes 48..56
IQ1M_SCALE = "iq1m"
# (type, number of blocks, byte offsets of f16 scale fields inside a block)
DEQ_TYPES = [
    (T.F32, 0, []), (T.F16, 0, []), (T.BF16, 0, []),
    (T.Q4_0, 4096, [0]), (T.Q4_1, 4096, [0, 2]), (T.Q5_0, 4096, [0]), (T.Q5_1, 4096, [0, 2]),
    (T.Q8_0, 4096, [0]),
    (T.Q2_K, 512, [80, 82]), (T.Q3_K, 512, [108]), (T.Q4_K, 512, [0, 2]), (T.Q5_K, 512, [0, 2]),
    (T.Q6_K, 512, [208]), (T.MXFP4, 4096, []),
    # grid i-quants: any index is valid, so random bytes with a sane f16 scale are real blocks
    (T.IQ2_XXS, 512, [0]), (T.IQ2_XS, 512, [0]), (T.IQ2_S, 512, [0]), (T.IQ3_XXS, 512, [0]),
    (T.IQ3_S, 512, [0]), (T.IQ1_S, 512, [0]), (T.IQ1_M, 512, [IQ1M_SCALE]),
    (T.IQ4_NL, 4096, [0]), (T.IQ4_XS, 512, [0]), (T.TQ1_0, 512, [52]), (T.TQ2_0, 512, [64]),
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
        if off == IQ1M_SCALE:
            d = sane_f16(rng, n_blocks).view(np.uint16)
            sc = raw[:, 48:56].copy().view(np.uint16)  # [n_blocks, 4]
            for k in range(4):
                sc[:, k] = (sc[:, k] & 0x0FFF) | (((d >> (4 * k)) & 0xF) << 12)
            raw[:, 48:56] = sc.view(np.uint8)
            continue
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
    for qtype in (T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.TQ1_0, T.TQ2_0):
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


LLAMACPP_TYPES = [  # (name, type_size, block, partner for vec_dot or None, has dequantize_row)
    ("q4_0", 18, 32, "q8_0", True), ("q4_1", 20, 32, "q8_1", True), ("q5_0", 22, 32, "q8_0", True),
    ("q5_1", 24, 32, "q8_1", True), ("q8_0", 34, 32, "q8_0", True), ("q8_1", 36, 32, None, False),
    ("q2_K", 84, 256, "q8_K", True), ("q3_K", 110, 256, "q8_K", True), ("q4_K", 144, 256, "q8_K", True),
    ("q5_K", 176, 256, "q8_K", True), ("q6_K", 210, 256, "q8_K", True), ("q8_K", 292, 256, None, True),
    ("mxfp4", 17, 32, "q8_0", True),
    ("iq4_nl", 18, 32, "q8_0", True), ("iq4_xs", 136, 256, "q8_K", True),
    ("tq1_0", 54, 256, "q8_K", True), ("tq2_0", 66, 256, "q8_K", True),
]
# Types whose <type>.q comes from llama-quantize's quantize_<type>(src, dst, nrow, n_per_row, NULL)
# rather than quantize_row_<type>_ref (which differs for them; its bytes go to <type>.qref).
QUANTIZE_CHUNK = {"iq4_nl"}
SIZES = {n: (ts, bs) for n, ts, bs, _, _ in LLAMACPP_TYPES}


def load_ggml():
    import ctypes
    import importlib.util
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        print("llama-cpp-python is not installed", file=sys.stderr)
        sys.exit(4)
    libdir = os.path.join(os.path.dirname(spec.origin), "lib")
    try:
        base = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
        cpu = ctypes.CDLL(os.path.join(libdir, "libggml-cpu.so"))
    except OSError as e:
        print(f"cannot load ggml from llama-cpp-python: {e}", file=sys.stderr)
        sys.exit(4)
    cpu.ggml_cpu_init()  # fills ggml-cpu's f16→f32 lookup table, which the dots read scales through
    return ctypes, base, cpu


def test_rows(rng, rows, cols):
    """Rows of many scales and shapes, with the special cases quantizers trip on."""
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    x *= (10.0 ** rng.uniform(-6, 4, (rows, 1))).astype(np.float32)
    x[0] = 0.0
    x[1] = 0.25
    x[2] = -3.0
    x[3] = np.abs(x[3])
    x[4] = -np.abs(x[4])
    x[5, ::2] = 0.0
    x[6, 3] = 1e5
    x[7] = rng.uniform(-1, 1, cols).astype(np.float32) * 1e-20   # tiny
    x[8] = rng.uniform(-1, 1, cols).astype(np.float32) * 1e20    # huge
    x[9] = np.round(rng.standard_normal(cols) * 4).astype(np.float32)  # many ties
    x[10, :cols // 2] = 0.0
    x[11] = rng.laplace(0, 0.02, cols).astype(np.float32)        # weight-like, heavy tails
    x[12] = 1.0
    x[12, 0] = -1.0
    return x


def cmd_llamacpp(outdir, seed):
    ctypes, base, cpu = load_ggml()
    rng = np.random.default_rng(seed)
    P = ctypes.c_void_p
    rows, cols = 128, 1024
    acts = {}
    for name, ts, bs, partner, has_deq in LLAMACPP_TYPES:
        x = test_rows(rng, rows, cols)
        q = np.zeros((rows, cols // bs * ts), dtype=np.uint8)
        f = getattr(base, f"quantize_row_{name}_ref")
        f.argtypes = [P, P, ctypes.c_int64]
        for r in range(rows):
            f(x[r].ctypes.data, q[r].ctypes.data, cols)
        if name in QUANTIZE_CHUNK:
            q.tofile(os.path.join(outdir, f"{name}.qref"))
            fc = getattr(base, f"quantize_{name}")
            fc.argtypes = [P, P, ctypes.c_int64, ctypes.c_int64, P]
            fc.restype = ctypes.c_size_t
            for r in range(rows):
                fc(x[r].ctypes.data, q[r].ctypes.data, 1, cols, None)
        x.tofile(os.path.join(outdir, f"{name}.src.f32"))
        q.tofile(os.path.join(outdir, f"{name}.q"))
        if has_deq:
            d = np.zeros((rows, cols), dtype=np.float32)
            g = getattr(base, f"dequantize_row_{name}")
            g.argtypes = [P, P, ctypes.c_int64]
            for r in range(rows):
                g(q[r].ctypes.data, d[r].ctypes.data, cols)
            d.tofile(os.path.join(outdir, f"{name}.deq.f32"))
        if partner:
            if partner not in acts:
                a = test_rows(rng, rows, cols)
                a[0] = rng.standard_normal(cols)   # keep activations mostly non-degenerate
                pts, pbs = SIZES[partner]
                aq = np.zeros((rows, cols // pbs * pts), dtype=np.uint8)
                fa = getattr(base, f"quantize_row_{partner}_ref")
                fa.argtypes = [P, P, ctypes.c_int64]
                for r in range(rows):
                    fa(a[r].ctypes.data, aq[r].ctypes.data, cols)
                acts[partner] = aq
            aq = acts[partner]
            aq.tofile(os.path.join(outdir, f"{name}.act"))
            dots = np.zeros((rows, 2), dtype=np.float32)
            s = ctypes.c_float()
            for k, fname in enumerate([f"ggml_vec_dot_{name}_{partner}_generic", f"ggml_vec_dot_{name}_{partner}"]):
                vd = getattr(cpu, fname)
                vd.argtypes = [ctypes.c_int, P, ctypes.c_size_t, P, ctypes.c_size_t, P, ctypes.c_size_t, ctypes.c_int]
                for r in range(rows):
                    vd(cols, ctypes.addressof(s), 0, q[r].ctypes.data, 0, aq[r].ctypes.data, 0, 1)
                    dots[r, k] = s.value
            dots.tofile(os.path.join(outdir, f"{name}.dot.f32"))
            if name in ("mxfp4", "iq4_nl"):
                # an odd number of blocks: the AVX2 dot takes blocks in pairs, the last one alone
                n_odd = cols - bs
                odd = np.zeros(rows, dtype=np.float32)
                for r in range(rows):
                    vd(n_odd, ctypes.addressof(s), 0, q[r].ctypes.data, 0, aq[r].ctypes.data, 0, 1)
                    odd[r] = s.value
                odd.tofile(os.path.join(outdir, f"{name}.dot_odd.f32"))


GRID_IQ = [("iq2_xxs", T.IQ2_XXS), ("iq2_xs", T.IQ2_XS), ("iq2_s", T.IQ2_S), ("iq3_xxs", T.IQ3_XXS),
           ("iq3_s", T.IQ3_S), ("iq1_s", T.IQ1_S), ("iq1_m", T.IQ1_M)]


def cmd_gridiq(outdir, seed):
    ctypes, base, cpu = load_ggml()
    rng = np.random.default_rng(seed)
    P = ctypes.c_void_p
    rows, cols = 64, 1024
    offs = {q: o for q, _, o in DEQ_TYPES}
    fa = base.quantize_row_q8_K_ref
    fa.argtypes = [P, P, ctypes.c_int64]
    for name, qtype in GRID_IQ:
        _, ts = gguf.GGML_QUANT_SIZES[qtype]
        q = random_data(qtype, rows * cols // QK_K, offs[qtype], rng).reshape(rows, -1)
        q.tofile(os.path.join(outdir, f"{name}.q"))
        d = np.zeros((rows, cols), dtype=np.float32)
        g = getattr(base, f"dequantize_row_{name}")
        g.argtypes = [P, P, ctypes.c_int64]
        for r in range(rows):
            g(q[r].ctypes.data, d[r].ctypes.data, cols)
        d.tofile(os.path.join(outdir, f"{name}.deq.f32"))
        a = test_rows(rng, rows, cols)
        a[0] = rng.standard_normal(cols)
        aq = np.zeros((rows, cols // QK_K * 292), dtype=np.uint8)
        for r in range(rows):
            fa(a[r].ctypes.data, aq[r].ctypes.data, cols)
        aq.tofile(os.path.join(outdir, f"{name}.act"))
        dots = np.zeros((rows, 2), dtype=np.float32)
        s = ctypes.c_float()
        for k, fname in enumerate([f"ggml_vec_dot_{name}_q8_K_generic", f"ggml_vec_dot_{name}_q8_K"]):
            vd = getattr(cpu, fname)
            vd.argtypes = [ctypes.c_int, P, ctypes.c_size_t, P, ctypes.c_size_t, P, ctypes.c_size_t, ctypes.c_int]
            for r in range(rows):
                vd(cols, ctypes.addressof(s), 0, q[r].ctypes.data, 0, aq[r].ctypes.data, 0, 1)
                dots[r, k] = s.value
        dots.tofile(os.path.join(outdir, f"{name}.dot.f32"))
        x = (rng.standard_normal((16, cols)) * rng.uniform(0.01, 10, (16, 1))).astype(np.float32)
        x.tofile(os.path.join(outdir, f"{name}.mm.src.f32"))
        mul_mat(ctypes, base, cpu, int(qtype), q, x).tofile(os.path.join(outdir, f"{name}.mm.out.f32"))
        mul_mat(ctypes, base, cpu, int(qtype), q, x[:7]).tofile(os.path.join(outdir, f"{name}.mm7.out.f32"))


def mul_mat(ctypes, base, cpu, type_id, w, x):
    """ggml_mul_mat(W, X) on ggml-cpu (1 thread): W [rows] byte rows of type_id, X [n][cols] float32;
    returns [n][rows] float32."""
    P = ctypes.c_void_p

    class InitParams(ctypes.Structure):
        _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", P), ("no_alloc", ctypes.c_bool)]

    base.ggml_init.restype = P
    base.ggml_init.argtypes = [InitParams]
    base.ggml_new_tensor_2d.restype = P
    base.ggml_new_tensor_2d.argtypes = [P, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    base.ggml_mul_mat.restype = P
    base.ggml_mul_mat.argtypes = [P, P, P]
    base.ggml_new_graph.restype = P
    base.ggml_new_graph.argtypes = [P]
    base.ggml_build_forward_expand.argtypes = [P, P]
    base.ggml_get_data.restype = P
    base.ggml_get_data.argtypes = [P]
    base.ggml_free.argtypes = [P]
    cpu.ggml_graph_compute_with_ctx.argtypes = [P, P, ctypes.c_int]
    rows, (n, cols) = w.shape[0], x.shape
    ctx = base.ggml_init(InitParams(256 << 20, None, False))
    tw = base.ggml_new_tensor_2d(ctx, type_id, cols, rows)
    ctypes.memmove(base.ggml_get_data(tw), np.ascontiguousarray(w).ctypes.data, w.nbytes)
    tx = base.ggml_new_tensor_2d(ctx, 0, cols, n)
    ctypes.memmove(base.ggml_get_data(tx), np.ascontiguousarray(x).ctypes.data, x.nbytes)
    out = base.ggml_mul_mat(ctx, tw, tx)
    gf = base.ggml_new_graph(ctx)
    base.ggml_build_forward_expand(gf, out)
    cpu.ggml_graph_compute_with_ctx(ctx, gf, 1)
    r = np.ctypeslib.as_array((ctypes.c_float * (n * rows)).from_address(base.ggml_get_data(out))).copy()
    base.ggml_free(ctx)
    return r.reshape(n, rows)


def cmd_sgemm(outdir, seed):
    ctypes, base, cpu = load_ggml()
    if cpu.ggml_cpu_has_avx512():
        build = "avx512"
    elif cpu.ggml_cpu_has_avx2() and cpu.ggml_cpu_has_fma() and cpu.ggml_cpu_has_f16c():
        build = "avx2"
    else:
        print("ggml-cpu is not an AVX2/AVX-512 build", file=sys.stderr)
        sys.exit(4)
    with open(os.path.join(outdir, "sgemm.build"), "w") as f:
        f.write(build)
    rng = np.random.default_rng(seed)
    for name, type_id, dtype in [("f16", 1, np.float16), ("f32", 0, np.float32)]:
        for rows, cols in [(64, 1024), (62, 1024), (64, 1000)]:
            stem = os.path.join(outdir, f"{name}_{rows}x{cols}")
            w = (rng.standard_normal((rows, cols)) * rng.uniform(0.01, 2, (rows, 1))).astype(dtype)
            w.tofile(stem + ".w")
            x = (rng.standard_normal((16, cols)) * rng.uniform(0.01, 10, (16, 1))).astype(np.float32)
            x.tofile(stem + ".x.f32")
            wb = w.view(np.uint8).reshape(rows, -1)
            for n in [16, 7, 2, 1]:
                mul_mat(ctypes, base, cpu, type_id, wb, x[:n]).tofile(f"{stem}.mm{n}.f32")


ACT_TYPES = [("q8_0", 8, 34, 32), ("q8_1", 9, 36, 32), ("q8_K", 15, 292, 256)]


def cmd_activations(outdir, seed):
    ctypes, base, cpu = load_ggml()
    if not cpu.ggml_cpu_has_avx2():
        print("ggml-cpu has no AVX2 path on this machine: not the reference", file=sys.stderr)
        sys.exit(4)

    class TraitsCpu(ctypes.Structure):
        _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p),
                    ("vec_dot_type", ctypes.c_int), ("nrows", ctypes.c_int64)]

    cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(TraitsCpu)
    cpu.ggml_get_type_traits_cpu.argtypes = [ctypes.c_int]
    FromFloat = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    rng = np.random.default_rng(seed)
    rows, cols = 64, 1024
    for name, tid, ts, bs in ACT_TYPES:
        f = FromFloat(cpu.ggml_get_type_traits_cpu(tid).contents.from_float)
        x = test_rows(rng, rows, cols)
        # Exact halves after scaling: amax 127 (or a signed max of ±127 for q8_K) makes the scale
        # 1, so n + 0.5 is a tie; and scaled copies where the multiplier is inexact.
        for r, scale in [(13, 1.0), (14, 1.0), (15, 0.37), (16, 3.1e-3), (17, -1.0)]:
            v = (rng.integers(-126, 126, cols) + 0.5 * rng.integers(0, 2, cols)).astype(np.float32)
            v[::bs] = 127.0 if r != 17 else -127.0
            if r == 14:
                v[1::bs] = -127.0   # the first extreme is positive, another one negative
            x[r] = v * np.float32(scale)
        x[18] = rng.standard_normal(cols).astype(np.float32) * np.float32(0.01)
        q = np.zeros((rows, cols // bs * ts), dtype=np.uint8)
        for r in range(rows):
            f(x[r].ctypes.data, q[r].ctypes.data, cols)
        x.tofile(os.path.join(outdir, f"{name}.src.f32"))
        q.tofile(os.path.join(outdir, f"{name}.act"))


def cmd_ops(outdir, seed):
    ctypes, base, cpu = load_ggml()
    P = ctypes.c_void_p

    class InitParams(ctypes.Structure):
        _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", P), ("no_alloc", ctypes.c_bool)]

    base.ggml_init.restype = P
    base.ggml_init.argtypes = [InitParams]
    base.ggml_new_tensor_2d.restype = P
    base.ggml_new_tensor_2d.argtypes = [P, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    base.ggml_soft_max_ext.restype = P
    base.ggml_soft_max_ext.argtypes = [P, P, P, ctypes.c_float, ctypes.c_float]
    base.ggml_swiglu_split.restype = P
    base.ggml_swiglu_split.argtypes = [P, P, P]
    base.ggml_norm.restype = P
    base.ggml_norm.argtypes = [P, P, ctypes.c_float]
    for f in (base.ggml_mul, base.ggml_add):
        f.restype = P
        f.argtypes = [P, P, P]
    base.ggml_new_graph.restype = P
    base.ggml_new_graph.argtypes = [P]
    base.ggml_build_forward_expand.argtypes = [P, P]
    base.ggml_free.argtypes = [P]
    cpu.ggml_graph_compute_with_ctx.argtypes = [P, P, ctypes.c_int]
    DATA_OFFSET = 248  # struct ggml_tensor: type, buffer, ne[4], nb[4], op, op_params[16], flags, src[10], view_src, view_offs, data

    def data(t, n):
        ptr = ctypes.c_void_p.from_address(t + DATA_OFFSET).value
        return np.ctypeslib.as_array((ctypes.c_float * n).from_address(ptr))

    def run(build, inputs, n_out):
        ctx = base.ggml_init(InitParams(256 << 20, None, False))
        ts = []
        for a in inputs:
            t = base.ggml_new_tensor_2d(ctx, 0, a.shape[1], a.shape[0])
            data(t, a.size)[:] = a.reshape(-1)
            ts.append(t)
        out = build(ctx, ts)
        gf = base.ggml_new_graph(ctx)
        base.ggml_build_forward_expand(gf, out)
        cpu.ggml_graph_compute_with_ctx(ctx, gf, 1)
        r = data(out, n_out).copy()
        base.ggml_free(ctx)
        return r

    rng = np.random.default_rng(seed)
    rows = 96
    x = (rng.standard_normal((rows, 256)) * rng.uniform(0.1, 300, (rows, 1))).astype(np.float32)
    for r in range(rows):
        x[r, (r * 37) % 256 + 1:] = -np.inf   # rows of every valid length, as under a causal mask
    x[0, :] = 0.0
    y = run(lambda ctx, t: base.ggml_soft_max_ext(ctx, t[0], None, 0.125, 0.0), [x], x.size)
    x.tofile(os.path.join(outdir, "softmax.src.f32"))
    y.astype(np.float32).tofile(os.path.join(outdir, "softmax.out.f32"))
    for n in (1000, 4864):
        a = (rng.standard_normal((8, n)) * 4).astype(np.float32)
        a[0, :40] = [-120, -104, -90, -88, -87.5, -30, -10, -1e-3, 0, 1e-3, 10, 30, 87, 88.5, 100, 120] * 2 + [-0.5] * 8
        g = rng.standard_normal((8, n)).astype(np.float32)
        y = run(lambda ctx, t: base.ggml_swiglu_split(ctx, t[0], t[1]), [a, g], a.size)
        a.tofile(os.path.join(outdir, f"swiglu{n}.x.f32"))
        g.tofile(os.path.join(outdir, f"swiglu{n}.g.f32"))
        y.astype(np.float32).tofile(os.path.join(outdir, f"swiglu{n}.out.f32"))
    for n in (384, 1000):
        a = (rng.standard_normal((8, n)) * rng.uniform(0.01, 50, (8, 1)) + rng.uniform(-5, 5, (8, 1))).astype(np.float32)
        w = rng.standard_normal((1, n)).astype(np.float32)
        b = rng.standard_normal((1, n)).astype(np.float32)
        norm = lambda ctx, t: base.ggml_add(ctx, base.ggml_mul(ctx, base.ggml_norm(ctx, t[0], 1e-12), t[1]), t[2])
        y = run(norm, [a, w, b], a.size)
        for name, v in (("x", a), ("w", w), ("b", b), ("out", y)):
            v.astype(np.float32).tofile(os.path.join(outdir, f"norm{n}.{name}.f32"))


def cmd_rope(outdir, seed):
    ctypes, base, cpu = load_ggml()
    P = ctypes.c_void_p

    class InitParams(ctypes.Structure):
        _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", P), ("no_alloc", ctypes.c_bool)]

    base.ggml_init.restype = P
    base.ggml_init.argtypes = [InitParams]
    base.ggml_new_tensor_1d.restype = P
    base.ggml_new_tensor_1d.argtypes = [P, ctypes.c_int, ctypes.c_int64]
    base.ggml_new_tensor_3d.restype = P
    base.ggml_new_tensor_3d.argtypes = [P, ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
    base.ggml_rope_ext.restype = P
    base.ggml_rope_ext.argtypes = [P, P, P, P, ctypes.c_int, ctypes.c_int, ctypes.c_int] + [ctypes.c_float] * 6
    base.ggml_new_graph.restype = P
    base.ggml_new_graph.argtypes = [P]
    base.ggml_build_forward_expand.argtypes = [P, P]
    base.ggml_free.argtypes = [P]
    cpu.ggml_graph_compute_with_ctx.argtypes = [P, P, ctypes.c_int]
    DATA_OFFSET = 248  # as in cmd_ops

    def ptr(t):
        return ctypes.c_void_p.from_address(t + DATA_OFFSET).value

    # llama_context's yarn_attn_factor (libllama has no FMA: plain f32 steps; logf from libm)
    libm = ctypes.CDLL("libm.so.6")
    libm.logf.restype = ctypes.c_float
    libm.logf.argtypes = [ctypes.c_float]
    f32 = np.float32
    freq_scale = f32(1.0) / f32(32.0)
    factor = f32(1.0) / freq_scale
    attn_factor = f32(f32(f32(0.1) * f32(1.0)) * f32(libm.logf(factor))) + f32(1.0)
    attn_factor = f32(attn_factor * f32(f32(1.0) / f32(f32(1.0) + f32(f32(0.1) * f32(libm.logf(factor))))))
    np.array([attn_factor], dtype=np.float32).tofile(os.path.join(outdir, "rope.attn_factor.f32"))
    rng = np.random.default_rng(seed)
    pos = np.concatenate([np.arange(40), rng.integers(40, 140000, 60)]).astype(np.int32)
    n_head, mode_neox = 4, 2
    for hd in (64, 16):
        x = rng.standard_normal((len(pos), n_head, hd)).astype(np.float32)
        ctx = base.ggml_init(InitParams(64 << 20, None, False))
        a = base.ggml_new_tensor_3d(ctx, 0, hd, n_head, len(pos))
        b = base.ggml_new_tensor_1d(ctx, 26, len(pos))  # GGML_TYPE_I32
        ctypes.memmove(ptr(a), x.ctypes.data, x.nbytes)
        ctypes.memmove(ptr(b), pos.ctypes.data, pos.nbytes)
        out = base.ggml_rope_ext(ctx, a, b, None, hd, mode_neox, 4096,
                                 150000.0, float(freq_scale), 1.0, float(attn_factor), 32.0, 1.0)
        gf = base.ggml_new_graph(ctx)
        base.ggml_build_forward_expand(gf, out)
        cpu.ggml_graph_compute_with_ctx(ctx, gf, 1)
        y = np.ctypeslib.as_array((ctypes.c_float * x.size).from_address(ptr(out))).copy()
        base.ggml_free(ctx)
        x.tofile(os.path.join(outdir, f"rope{hd}.src.f32"))
        pos.tofile(os.path.join(outdir, f"rope{hd}.pos.i32"))
        y.astype(np.float32).tofile(os.path.join(outdir, f"rope{hd}.out.f32"))


def cmd_sinks(outdir, seed):
    ctypes, base, cpu = load_ggml()
    P = ctypes.c_void_p

    class InitParams(ctypes.Structure):
        _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", P), ("no_alloc", ctypes.c_bool)]

    base.ggml_init.restype = P
    base.ggml_init.argtypes = [InitParams]
    base.ggml_new_tensor_1d.restype = P
    base.ggml_new_tensor_1d.argtypes = [P, ctypes.c_int, ctypes.c_int64]
    base.ggml_new_tensor_3d.restype = P
    base.ggml_new_tensor_3d.argtypes = [P, ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
    base.ggml_soft_max_ext.restype = P
    base.ggml_soft_max_ext.argtypes = [P, P, P, ctypes.c_float, ctypes.c_float]
    base.ggml_soft_max_add_sinks.argtypes = [P, P]
    base.ggml_new_graph.restype = P
    base.ggml_new_graph.argtypes = [P]
    base.ggml_build_forward_expand.argtypes = [P, P]
    base.ggml_free.argtypes = [P]
    cpu.ggml_graph_compute_with_ctx.argtypes = [P, P, ctypes.c_int]
    DATA_OFFSET = 248  # as in cmd_ops

    def ptr(t):
        return ctypes.c_void_p.from_address(t + DATA_OFFSET).value

    if cpu.ggml_cpu_has_avx512():  # (its vector softmax also needs AVX-512 DQ, which every such CPU has)
        build = "avx512"
    elif cpu.ggml_cpu_has_avx2() and cpu.ggml_cpu_has_fma():
        build = "avx2"
    else:
        print("ggml-cpu has neither vector softmax path", file=sys.stderr)
        sys.exit(4)
    rng = np.random.default_rng(seed)
    n_head, rows, n = 4, 8, 256
    x = (rng.standard_normal((n_head, rows, n)) * rng.uniform(0.5, 40, (n_head, rows, 1))).astype(np.float32)
    for h in range(n_head):
        for r in range(rows):
            x[h, r, (h * 61 + r * 29) % n + 1:] = -np.inf   # rows of many lengths, as under a causal mask
    sk = np.array([-2.0, 0.5, 3.0, 60.0], dtype=np.float32)  # the last one above every score
    ctx = base.ggml_init(InitParams(64 << 20, None, False))
    a = base.ggml_new_tensor_3d(ctx, 0, n, rows, n_head)
    t_sk = base.ggml_new_tensor_1d(ctx, 0, n_head)
    ctypes.memmove(ptr(a), x.ctypes.data, x.nbytes)
    ctypes.memmove(ptr(t_sk), sk.ctypes.data, sk.nbytes)
    out = base.ggml_soft_max_ext(ctx, a, None, 0.125, 0.0)
    base.ggml_soft_max_add_sinks(out, t_sk)
    gf = base.ggml_new_graph(ctx)
    base.ggml_build_forward_expand(gf, out)
    cpu.ggml_graph_compute_with_ctx(ctx, gf, 1)
    y = np.ctypeslib.as_array((ctypes.c_float * x.size).from_address(ptr(out))).copy()
    base.ggml_free(ctx)
    x.tofile(os.path.join(outdir, "sinks.src.f32"))
    sk.tofile(os.path.join(outdir, "sinks.sk.f32"))
    y.astype(np.float32).tofile(os.path.join(outdir, "sinks.out.f32"))
    with open(os.path.join(outdir, "sinks.build"), "w") as f:
        f.write(build)


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
    elif cmd == "llamacpp":
        cmd_llamacpp(sys.argv[2], int(sys.argv[3]))
    elif cmd == "sgemm":
        cmd_sgemm(sys.argv[2], int(sys.argv[3]))
    elif cmd == "gridiq":
        cmd_gridiq(sys.argv[2], int(sys.argv[3]))
    elif cmd == "activations":
        cmd_activations(sys.argv[2], int(sys.argv[3]))
    elif cmd == "ops":
        cmd_ops(sys.argv[2], int(sys.argv[3]))
    elif cmd == "rope":
        cmd_rope(sys.argv[2], int(sys.argv[3]))
    elif cmd == "sinks":
        cmd_sinks(sys.argv[2], int(sys.argv[3]))
    elif cmd == "model":
        cmd_model(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd}")
