#!/usr/bin/env python3
"""References for the quantize_file tests, from independent implementations.

  hf-gguf MODEL_DIR CONVERSIONS_JSON KIND OUT
      Writes the F16/F32 GGUF that llama.cpp's convert_hf_to_gguf made of an HF fixture model
      (entry "<model>-<KIND>.gguf" of the JSON: tensor order, types, scalar metadata), with gguf-py
      from the safetensors (q/k rows permuted as llama.cpp does) and the vocabulary from
      tokenizer.model via sentencepiece. Exits 4 if a tensor's sha256 differs from the JSON.
  synth OUT N_LAYER N_EMBD N_HEAD N_HEAD_KV N_FF N_VOCAB TYPE(f32|f16|bf16) TIED(0|1) SEED [N_EXPERT [ARCH]]
      A small random LLaMA-shaped GGUF (no vocabulary: quantizing does not need one), to drive
      the K-quant mixes, whose rules depend on the layer count, GQA, expert count and
      architecture, and need rows of 256. N_EXPERT > 0: MoE FFNs (ffn_gate_inp and the 3-D
      ffn_{gate,up,down}_exps, 2 experts used). ARCH (default llama) only changes the
      architecture name and the hparams keys llama.cpp requires for it (falcon: layer-norm eps).
  llama-quantize IN OUT FTYPE_ID PURE(0|1) THREADS [IMATRIX]
      llama.cpp's own quantizer, through llama-cpp-python's llama_model_quantize. With IMATRIX,
      what the llama-quantize program does with --imatrix: the file read as
      common/imatrix-loader.cpp + tools/quantize's load_imatrix do (GGUF sums / counts per expert,
      legacy sums / ncall), handed over as params.imatrix, and the quantize.imatrix.* keys as
      params.kv_overrides.
  imatrix MODEL OUT FORMAT(gguf|dat) SEED [SKIP_NAME]
      A random importance matrix for every ≥ 2-D weight of MODEL but token_embd (and SKIP_NAME),
      written as llama-imatrix writes it (GGUF: <name>.in_sum2 [n_mat][ne0], <name>.counts [n_mat],
      imatrix.* keys; dat: the legacy layout); MoE entries have an expert with no data.
  ggml-quantize TYPE_ID N_PER_ROW IN.f32 OUT [IMATRIX.f32]
      ggml_quantize_chunk (libggml-base of llama-cpp-python) on rows of f32, without an importance
      matrix or with the N_PER_ROW weights in IMATRIX.f32 (the same for every row, as llama-quantize
      passes them).
  grid-iq-model SRC OUT TYPE_ID TOKENS LOGITS
      SRC (a GGUF with a vocabulary) with every 2-D tensor whose rows are whole 256-blocks turned
      into ggml type TYPE_ID by ggml_quantize_chunk (with an all-ones importance matrix: the grid
      i-quants need one), written to OUT with gguf-py; then llama-cpp-python evaluates the comma-
      separated TOKENS on OUT (one batch, logits_all) and writes the logits [n_tokens][n_vocab]
      as float32 to LOGITS.

Exit code 3 = a needed package (gguf, sentencepiece, llama_cpp) is missing, so the caller skips.
"""
import ctypes
import glob
import hashlib
import json
import os
import struct
import sys


def need(mod):
    try:
        return __import__(mod)
    except ImportError:
        print(f"missing python package {mod}", file=sys.stderr)
        sys.exit(3)


def read_safetensors(path):
    np = need("numpy")
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    data = b[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        raw = np.frombuffer(data[lo:hi], dtype=np.uint8)
        dt = info["dtype"]
        if dt == "F32":
            a = raw.view(np.float32)
        elif dt == "F16":
            a = raw.view(np.float16).astype(np.float32)
        elif dt == "BF16":
            a = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"{path}: {name}: dtype {dt}")
        out[name] = a.reshape(info["shape"])
    return out


HF_TO_GGUF = {
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight", "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}


def gguf_name(hf):
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf in fixed:
        return fixed[hf]
    rest = hf[len("model.layers."):]
    layer, leaf = rest.split(".", 1)
    return f"blk.{layer}.{HF_TO_GGUF[leaf]}"


def permute(w, n_head):
    # convert_hf_to_gguf LlamaModel.permute: HF rotate-half rows → GGUF interleaved RoPE pairs.
    rows, cols = w.shape
    return w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def hf_gguf(model_dir, conv_json, kind, out):
    np = need("numpy")
    gguf = need("gguf")
    spm = need("sentencepiece")
    model = os.path.basename(os.path.normpath(model_dir))
    ref = json.load(open(conv_json))[f"{model}-{kind}.gguf"]
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    n_head = cfg["num_attention_heads"]
    n_head_kv = cfg.get("num_key_value_heads", n_head)
    tensors = {}
    for f in sorted(glob.glob(os.path.join(model_dir, "*.safetensors"))):
        for hf, a in read_safetensors(f).items():
            name = gguf_name(hf)
            if name.endswith("attn_q.weight"):
                a = permute(a, n_head)
            elif name.endswith("attn_k.weight"):
                a = permute(a, n_head_kv)
            tensors[name] = a

    sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
    toks, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        toks.append(sp.id_to_piece(i).encode())
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(gguf.TokenType.UNKNOWN)
        elif sp.is_control(i):
            types.append(gguf.TokenType.CONTROL)
        elif sp.is_byte(i):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    arrays = {"tokenizer.ggml.tokens": toks, "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types}

    w = gguf.GGUFWriter(out, ref["kv"]["general.architecture"])
    V = gguf.GGUFValueType
    for k, v in ref["kv"].items():
        if k == "general.architecture":
            continue  # written by the GGUFWriter constructor, first, as convert does
        if k in arrays:
            w.add_array(k, arrays[k])
        elif isinstance(v, bool):
            w.add_bool(k, v)
        elif isinstance(v, int):
            w.add_uint32(k, v)
        elif isinstance(v, float):
            w.add_float32(k, v)
        elif isinstance(v, str):
            w.add_string(k, v)
        else:
            raise SystemExit(f"unexpected metadata {k}: {v!r}")
    bad = []
    for name, (ty, shape, sha) in ref["tensors"].items():
        a = tensors[name]
        a = a.astype(np.float16 if ty == "F16" else np.float32)
        assert list(a.shape[::-1]) == shape, (name, a.shape, shape)
        if hashlib.sha256(a.tobytes()).hexdigest() != sha:
            bad.append(name)
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if bad:
        print(f"{out}: tensors differ from llama.cpp's conversion: {bad}", file=sys.stderr)
        sys.exit(4)


def synth(out, n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab, ty, tied, seed, n_expert=0, arch="llama"):
    np = need("numpy")
    gguf = need("gguf")
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(out, arch)
    w.add_name("synth-mix")
    w.add_context_length(256)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    if arch == "falcon":
        w.add_layer_norm_eps(1e-5)
    if n_expert:
        w.add_expert_count(n_expert)
        w.add_expert_used_count(2)
    w.add_file_type({"f32": 0, "f16": 1, "bf16": 32}[ty])
    w.add_vocab_size(n_vocab)
    w.add_quantization_version(2)

    def mat(name, rows, cols, n_mat=0):
        # Heavy-tailed values with a few outliers and an all-zero row, so scale searches and
        # clamps are exercised. n_mat > 0: a stack of n_mat matrices (experts).
        shape = (n_mat, rows, cols) if n_mat else (rows, cols)
        a = (rng.standard_t(4, size=shape) * 0.02).astype(np.float32)
        m = a.reshape(-1, rows, cols)
        m[:, rng.integers(0, rows), rng.integers(0, cols)] *= 40
        m[:, rng.integers(0, rows)] = 0
        if ty == "f16":
            w.add_tensor(name, a.astype(np.float16))
        elif ty == "bf16":
            b = (a.view(np.uint32) >> 16).astype(np.uint16)
            w.add_tensor(name, b, raw_shape=shape, raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            w.add_tensor(name, a)

    hd = n_embd // n_head
    mat("token_embd.weight", n_vocab, n_embd)
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", (1 + 0.1 * rng.standard_normal(n_embd)).astype(np.float32))
        mat(p + "attn_q.weight", n_embd, n_embd)
        mat(p + "attn_k.weight", n_head_kv * hd, n_embd)
        mat(p + "attn_v.weight", n_head_kv * hd, n_embd)
        mat(p + "attn_output.weight", n_embd, n_embd)
        w.add_tensor(p + "ffn_norm.weight", (1 + 0.1 * rng.standard_normal(n_embd)).astype(np.float32))
        if n_expert:
            w.add_tensor(p + "ffn_gate_inp.weight", rng.standard_normal((n_expert, n_embd)).astype(np.float32))
            mat(p + "ffn_gate_exps.weight", n_ff, n_embd, n_expert)
            mat(p + "ffn_up_exps.weight", n_ff, n_embd, n_expert)
            mat(p + "ffn_down_exps.weight", n_embd, n_ff, n_expert)
        else:
            mat(p + "ffn_gate.weight", n_ff, n_embd)
            mat(p + "ffn_up.weight", n_ff, n_embd)
            mat(p + "ffn_down.weight", n_embd, n_ff)
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    if not tied:
        mat("output.weight", n_vocab, n_embd)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def load_imatrix(path):
    """tools/quantize's load_imatrix: name → float32 weights, datasets, chunk count."""
    np = need("numpy")
    gguf = need("gguf")
    try:
        r = gguf.GGUFReader(path)
    except Exception:
        r = None
    if r is not None:
        def kv(k):
            f = r.fields.get(k)
            return None if f is None else f
        ds = kv("imatrix.datasets")
        datasets = [bytes(ds.parts[i]).decode() for i in ds.data] if ds is not None else []
        cc = kv("imatrix.chunk_count")
        chunk_count = int(cc.parts[cc.data[0]][0]) if cc is not None else 0
        t = {x.name: x for x in r.tensors}
        out = {}
        for name in t:
            if not name.endswith(".in_sum2"):
                continue
            base = name[: -len(".in_sum2")]
            sums = np.asarray(t[name].data, dtype=np.float32).reshape(-1)
            counts = np.asarray(t[base + ".counts"].data, dtype=np.float32).reshape(-1)
            ne0 = sums.size // counts.size
            e = np.empty_like(sums)
            for j, c in enumerate(counts):
                c = np.float32(np.int64(np.round(c)))  # std::lround, then (float)
                seg = slice(j * ne0, (j + 1) * ne0)
                e[seg] = sums[seg] / c if c > 0 else np.float32(1)
            out[base] = e
        return out, datasets, chunk_count
    b = open(path, "rb").read()
    pos = 0

    def i32():
        nonlocal pos
        v = struct.unpack_from("<i", b, pos)[0]
        pos += 4
        return v

    out = {}
    for _ in range(i32()):
        n = i32()
        name = b[pos:pos + n].split(b"\0")[0].decode()
        pos += n
        ncall, nval = i32(), i32()
        sums = np.frombuffer(b, dtype=np.float32, count=nval, offset=pos).copy()
        pos += 4 * nval
        out[name] = sums / np.float32(ncall) if ncall > 0 else sums
    datasets, chunk_count = [], 0
    if pos < len(b):
        chunk_count = i32()
        n = i32()
        if n > 0:
            datasets.append(b[pos:pos + n].split(b"\0")[0].decode())
    return out, datasets, chunk_count


def llama_quantize(inp, out, ftype, pure, threads, imatrix=None):
    np = need("numpy")
    llama_cpp = need("llama_cpp")
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.pure = bool(pure)
    p.nthread = threads
    keep = []
    if imatrix is not None:
        data, datasets, chunk_count = load_imatrix(imatrix)
        arr = (llama_cpp.llama_model_imatrix_data * (len(data) + 1))()
        for i, (name, v) in enumerate(data.items()):
            v = np.ascontiguousarray(v, dtype=np.float32)
            nb = name.encode()
            keep += [v, nb]
            arr[i].name = nb
            arr[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            arr[i].size = v.size
        p.imatrix = arr
        kvs = [("quantize.imatrix.file", imatrix)]
        if datasets:
            kvs.append(("quantize.imatrix.dataset", datasets[0]))
        kvs.append(("quantize.imatrix.entries_count", len(data)))
        if chunk_count > 0:
            kvs.append(("quantize.imatrix.chunks_count", chunk_count))
        ov = (llama_cpp.llama_model_kv_override * (len(kvs) + 1))()
        for o, (k, v) in zip(ov, kvs):
            o.key = k.encode()
            if isinstance(v, str):
                o.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR
                o.value.val_str = v.encode()[:127]
            else:
                o.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT
                o.value.val_i64 = v
        p.kv_overrides = ov
        keep += [arr, ov]
    rc = llama_cpp.llama_model_quantize(inp.encode(), out.encode(), ctypes.byref(p))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed with {rc}")


def make_imatrix(model, out, fmt, seed, skip=None):
    np = need("numpy")
    gguf = need("gguf")
    rng = np.random.default_rng(seed)
    r = gguf.GGUFReader(model)
    ents = {}
    for t in r.tensors:
        shape = [int(d) for d in t.shape]  # ggml order: ne0 first
        if len(shape) < 2 or t.name == "token_embd.weight" or t.name == skip or not t.name.endswith("weight"):
            continue
        ne0, n_mat = shape[0], (shape[2] if len(shape) > 2 else 1)
        counts = rng.integers(200, 5000, n_mat).astype(np.float32)
        if n_mat > 1:
            counts[1] = 0  # an expert no token reached
        sums = (10.0 ** rng.uniform(-2, 2, (n_mat, ne0))).astype(np.float32) * counts[:, None]
        sums[:, ::53] = 0  # columns that never saw an activation
        ents[t.name] = (sums, counts)
    names = sorted(ents)
    if fmt == "gguf":
        w = gguf.GGUFWriter(out, arch="")
        w.add_type("imatrix")
        w.add_array("imatrix.datasets", ["synthetic.txt"])
        w.add_uint32("imatrix.chunk_count", 17)
        w.add_uint32("imatrix.chunk_size", 512)
        for n in names:
            sums, counts = ents[n]
            w.add_tensor(n + ".in_sum2", sums)
            w.add_tensor(n + ".counts", counts.reshape(-1, 1))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return
    with open(out, "wb") as f:  # save_imatrix_legacy
        f.write(struct.pack("<i", len(names)))
        for n in names:
            sums, counts = ents[n]
            f.write(struct.pack("<i", len(n)) + n.encode())
            ncall = int((counts.max() + 511) // 512)
            f.write(struct.pack("<ii", ncall, sums.size))
            c = counts.copy()
            v = sums.copy()
            v[c == 0] = 1.0
            c[c == 0] = 1.0
            f.write(((v / c[:, None]) * np.float32(ncall)).astype(np.float32).tobytes())
        f.write(struct.pack("<i", 17))
        f.write(struct.pack("<i", len("synthetic.txt")) + b"synthetic.txt")


def ggml_quantize(type_id, n_per_row, inp, out, imatrix=None):
    np = need("numpy")
    llama_cpp = need("llama_cpp")
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    lib = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    x = np.fromfile(inp, dtype=np.float32)
    nrows = x.size // n_per_row
    dst = np.zeros(lib.ggml_row_size(type_id, n_per_row) * nrows, dtype=np.uint8)
    qw = None
    if imatrix is not None:
        qw = np.fromfile(imatrix, dtype=np.float32)
        assert qw.size == n_per_row, (qw.size, n_per_row)
    n = lib.ggml_quantize_chunk(type_id, x.ctypes.data, dst.ctypes.data, 0, nrows, n_per_row,
                                None if qw is None else qw.ctypes.data)
    assert n == dst.size, (n, dst.size)
    dst.tofile(out)


def grid_iq_model(src, out, type_id, tokens, logits_out):
    np = need("numpy")
    gguf = need("gguf")
    llama_cpp = need("llama_cpp")
    from gguf.quants import dequantize
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    lib = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(out, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        sub = f.types[1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, f.contents(), f.types[0], sub)
    for t in r.tensors:
        shape = [int(d) for d in t.shape]  # ggml order: ne0 first
        if len(shape) == 2 and shape[0] % 256 == 0:
            x = np.ascontiguousarray(dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1))
            n_per_row, nrows = shape[0], shape[1]
            ones = np.ones(n_per_row, dtype=np.float32)
            dst = np.zeros(lib.ggml_row_size(type_id, n_per_row) * nrows, dtype=np.uint8)
            n = lib.ggml_quantize_chunk(type_id, x.ctypes.data, dst.ctypes.data, 0, nrows, n_per_row,
                                        ones.ctypes.data)
            assert n == dst.size, (t.name, n, dst.size)
            w.add_tensor(t.name, dst, raw_shape=(nrows, dst.size // nrows),
                         raw_dtype=gguf.GGMLQuantizationType(type_id))
        else:
            # as stored: f32 data in its shape, other types as rows of bytes
            w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type if t.tensor_type != 0 else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    toks = [int(v) for v in tokens.split(",")]
    llm = llama_cpp.Llama(out, logits_all=True, verbose=False, n_ctx=64, n_batch=64, seed=0)
    llm.eval(toks)
    np.array(llm.scores[: len(toks)], dtype=np.float32).tofile(logits_out)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "hf-gguf":
        hf_gguf(*args)
    elif cmd == "synth":
        synth(args[0], *map(int, args[1:7]), args[7], int(args[8]), int(args[9]), *map(int, args[10:11]), *args[11:12])
    elif cmd == "llama-quantize":
        llama_quantize(args[0], args[1], int(args[2]), int(args[3]), int(args[4]), *args[5:6])
    elif cmd == "imatrix":
        make_imatrix(args[0], args[1], args[2], int(args[3]), *args[4:5])
    elif cmd == "ggml-quantize":
        ggml_quantize(int(args[0]), int(args[1]), args[2], args[3], *args[4:5])
    elif cmd == "grid-iq-model":
        grid_iq_model(args[0], args[1], int(args[2]), args[3], args[4])
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
