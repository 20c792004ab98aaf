#!/usr/bin/env python3
"""Every quant type of issue 12, made from one source file and checked against llama.cpp.

    python tools/type_matrix.py SRC.gguf OUTDIR [--types q4_1,iq4_xs,...] [--bench] [--keep]

For each type, SRC's file of that type is written to OUTDIR/<stem>-<type>.gguf:

* types llama.cpp quantizes without an importance matrix (Q4_1, Q5_1, Q2_K, Q3_K, Q5_K, IQ3_S,
  IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4): llama.cpp's own quantizer (llama-cpp-python's
  ``llama_model_quantize``) with ``pure`` and ``allow_requantize``, as ``llama-quantize --pure
  --allow-requantize SRC OUT <ftype>`` does (Q3_K through ftype Q3_K_S, Q5_K through Q5_K_S, MXFP4
  through MXFP4_MOE: with ``pure`` each of these makes every weight the plain type). ``pure`` turns
  off llama.cpp's per-tensor mixture, so token_embd.weight and output.weight get the type too;
  only tensors whose rows are not whole blocks fall back (llama.cpp's tensor_type_fallback).
* types llama.cpp refuses to make without an importance matrix (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS,
  IQ2_S, IQ3_XXS): every 2-D tensor whose rows are whole blocks, token_embd.weight and
  output.weight included (as ``--pure`` does), is dequantized by gguf-py and quantized by
  ggml's ``ggml_quantize_chunk`` with an all-ones importance matrix (the weighting of a uniform
  imatrix); the rest is copied as stored, and gguf-py writes the file.

Then fixed prompts (token ids drawn from SRC's vocabulary by a seeded generator, BOS first) are
evaluated in one batch with every row's logits by OUR runtime (the ``llama`` package) and by
llama-cpp-python on the same file (n_ctx 128, 2 threads, f16 KV cache, no flash attention), and per
type the tool reports: top-1 agreement over all rows, the mean |Δ| over llama.cpp's top-10 logits
of each row, the max |Δ| over all logits, the fraction of bit-identical logits, and how many of 16
greedy tokens after the first prompt agree (common prefix). ``--bench`` adds ``python -m llama bench
-m FILE -p 512 -n 128 -t 2 -r 3 --compare-llama-cpp --json`` per type (``--bench-args`` overrides
the arguments after the file). Output: a markdown table on stdout and OUTDIR/type_matrix.json.
Files are deleted after each type unless ``--keep``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

# name → (ggml type id, llama ftype for llama_model_quantize or None = ggml_quantize_chunk path, block)
TYPES: dict[str, tuple[int, int | None, int]] = {
    "q4_1": (3, 3, 32),
    "q5_1": (7, 9, 32),
    "q2_k": (10, 10, 256),
    "q3_k": (11, 11, 256),  # LLAMA_FTYPE_MOSTLY_Q3_K_S: default type Q3_K
    "q5_k": (13, 16, 256),  # LLAMA_FTYPE_MOSTLY_Q5_K_S: default type Q5_K
    "iq1_s": (19, None, 256),
    "iq1_m": (29, None, 256),
    "iq2_xxs": (16, None, 256),
    "iq2_xs": (17, None, 256),
    "iq2_s": (22, None, 256),
    "iq3_xxs": (18, None, 256),  # llama.cpp's quantizer requires an imatrix for it
    "iq3_s": (21, 26, 256),
    "iq4_nl": (20, 25, 32),
    "iq4_xs": (23, 30, 256),
    "tq1_0": (34, 36, 256),
    "tq2_0": (35, 37, 256),
    "mxfp4": (39, 38, 32),  # LLAMA_FTYPE_MOSTLY_MXFP4_MOE: default type MXFP4
}

# issue 12's acceptance bounds
TOP1_MIN = 0.99
MEAN_TOP10_MAX = 0.02

N_CTX = 128
THREADS = 2
PROMPT_LENS = (7, 16, 33, 64)
PROMPT_SEED = 12
N_GREEDY = 16


def _lib():
    import llama_cpp

    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_void_p,
    ]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    return lib


def quantize_llama_cpp(src: str, out: str, ftype: int) -> None:
    """llama-quantize --pure --allow-requantize SRC OUT FTYPE, through llama-cpp-python."""
    import llama_cpp

    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.pure = True
    p.allow_requantize = True
    p.nthread = THREADS
    rc = llama_cpp.llama_model_quantize(src.encode(), out.encode(), ctypes.byref(p))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({ftype}) failed with {rc}")


def quantize_chunked(src: str, out: str, type_id: int, block: int) -> None:
    """Every 2-D tensor with whole-block rows → TYPE_ID by ggml_quantize_chunk (all-ones imatrix)."""
    import gguf
    import numpy as np
    from gguf.quants import dequantize

    lib = _lib()
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(out, r.fields["general.architecture"].contents())
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        sub = f.types[1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        if name == "general.file_type":
            continue  # no llama ftype names this file; llama.cpp reads the types per tensor
        w.add_key_value(name, f.contents(), f.types[0], sub)
    for t in r.tensors:
        shape = [int(d) for d in t.shape]  # ggml order: ne0 (the row) first
        if len(shape) == 2 and shape[0] % block == 0:
            x = np.ascontiguousarray(dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1))
            n_per_row, nrows = shape[0], shape[1]
            ones = np.ones(n_per_row, dtype=np.float32)
            row_size = lib.ggml_row_size(type_id, n_per_row)
            dst = np.zeros(row_size * nrows, dtype=np.uint8)
            # two row ranges at once: ctypes drops the GIL during the call
            half = (nrows + 1) // 2
            parts = [(0, half), (half, nrows - half)] if nrows > 1 else [(0, nrows)]

            def run(part, x=x, dst=dst, n_per_row=n_per_row, row_size=row_size, ones=ones):
                start, n = part
                return lib.ggml_quantize_chunk(
                    type_id,
                    x.ctypes.data + start * n_per_row * 4,
                    dst.ctypes.data + start * row_size,
                    0,
                    n,
                    n_per_row,
                    ones.ctypes.data,
                )

            with concurrent.futures.ThreadPoolExecutor(len(parts)) as ex:
                done = sum(ex.map(run, parts))
            assert done == dst.size, (t.name, done, dst.size)
            w.add_tensor(t.name, dst, raw_shape=(nrows, row_size), raw_dtype=gguf.GGMLQuantizationType(type_id))
        else:
            w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type if t.tensor_type != 0 else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_file(src: str, out: str, type_name: str) -> None:
    type_id, ftype, block = TYPES[type_name]
    if ftype is None:
        quantize_chunked(src, out, type_id, block)
    else:
        quantize_llama_cpp(src, out, ftype)


def prompts(src: str) -> list[list[int]]:
    """Fixed token-id prompts from SRC's vocabulary: BOS, then ids drawn by a seeded generator."""
    import gguf
    import numpy as np

    r = gguf.GGUFReader(src)
    n_vocab = len(r.fields["tokenizer.ggml.tokens"].data)
    bos_f = r.fields.get("tokenizer.ggml.bos_token_id")
    bos = int(bos_f.contents()) if bos_f is not None else 1
    rng = np.random.default_rng(PROMPT_SEED)
    # ids past the first few hundred: ordinary pieces, not control or byte tokens
    lo = min(300, n_vocab // 4)
    return [[bos] + [int(v) for v in rng.integers(lo, n_vocab, n - 1)] for n in PROMPT_LENS]


def _greedy(eval_fn, last_row, reset, prompt: list[int], n: int) -> list[int]:
    import numpy as np

    reset()
    eval_fn(prompt)
    out = []
    for _ in range(n):
        t = int(np.argmax(last_row()))
        out.append(t)
        eval_fn([t])
    return out


def eval_ours(path: str, ps: list[list[int]]) -> tuple[list[Any], list[int]]:
    import numpy as np

    import llama

    llm = llama.Llama(path, n_ctx=N_CTX, n_batch=N_CTX, n_threads=THREADS, logits_all=True, seed=0)
    rows = []
    for p in ps:
        llm.reset()
        llm.eval(p)
        rows.append(np.array(llm.scores[: len(p)], dtype=np.float32))
    greedy = _greedy(llm.eval, lambda: llm.scores[llm.n_tokens - 1], llm.reset, ps[0], N_GREEDY)
    llm.close()
    return rows, greedy


def eval_llama_cpp(path: str, ps: list[list[int]], repack: bool = True) -> tuple[list[Any], list[int]]:
    """llama.cpp's logits; repack=False loads with use_extra_bufts off (no CPU repacked layouts such as
    q2_K_8x8 or iq4_nl_8x8: llama.cpp's plain ggml_vec_dot kernels instead)."""
    import llama_cpp
    import llama_cpp.llama as llama_mod
    import numpy as np

    orig = llama_mod.llama_cpp.llama_model_default_params
    if not repack:

        def no_extra_bufts():
            p = orig()
            p.use_extra_bufts = False
            return p

        llama_mod.llama_cpp.llama_model_default_params = no_extra_bufts
    try:
        llm = llama_cpp.Llama(
            path,
            n_ctx=N_CTX,
            n_batch=N_CTX,
            n_ubatch=N_CTX,
            logits_all=True,
            n_threads=THREADS,
            flash_attn=False,
            verbose=False,
            seed=0,
        )
    finally:
        llama_mod.llama_cpp.llama_model_default_params = orig
    rows = []
    for p in ps:
        llm.reset()
        llm.eval(p)
        rows.append(np.array(llm.scores[: len(p)], dtype=np.float32))
    greedy = _greedy(llm.eval, lambda: llm.scores[llm.n_tokens - 1], llm.reset, ps[0], N_GREEDY)
    llm.close()
    return rows, greedy


@dataclass
class Result:
    type: str
    rows: int
    top1: float
    mean_top10: float
    max_abs: float
    identical: float
    greedy: int
    ok: bool
    flips: list[dict[str, Any]]
    file_bytes: int
    seconds: float
    bench: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def compare(ours: list[Any], ref: list[Any]) -> dict[str, float]:
    import numpy as np

    a = np.concatenate(ours)  # [rows][n_vocab]
    b = np.concatenate(ref)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.isfinite(a).all(), "our logits are not all finite"
    top1 = float(np.mean(a.argmax(1) == b.argmax(1)))
    top10 = np.argsort(-b, axis=1, kind="stable")[:, :10]
    mean_top10 = float(np.mean(np.abs(np.take_along_axis(a, top10, 1) - np.take_along_axis(b, top10, 1))))
    # rows whose top-1 differs: llama.cpp's gap between its best two logits says whether it is a near tie
    flips = []
    for i in np.nonzero(a.argmax(1) != b.argmax(1))[0]:
        top2 = np.sort(b[i])[-2:]
        flips.append(
            {
                "row": int(i),
                "ref_top": int(b[i].argmax()),
                "ours_top": int(a[i].argmax()),
                "ref_gap": float(top2[1] - top2[0]),
                "abs_delta_max_row": float(np.max(np.abs(a[i] - b[i]))),
            }
        )
    return {
        "flips": flips,
        "rows": int(a.shape[0]),
        "top1": top1,
        "mean_top10": mean_top10,
        "max_abs": float(np.max(np.abs(a - b))),
        "identical": float(np.mean(a.view(np.uint32) == b.view(np.uint32))),
    }


def run_type(
    src: str,
    outdir: str,
    type_name: str,
    keep: bool = False,
    bench_args: list[str] | None = None,
    reuse: bool = False,
    repack: bool = True,
) -> Result:
    """Make SRC's file of TYPE_NAME, compare our logits with llama.cpp's, optionally bench."""
    t0 = time.perf_counter()
    stem = os.path.splitext(os.path.basename(src))[0]
    out = os.path.join(outdir, f"{stem}-{type_name}.gguf")
    try:
        if not (reuse and os.path.exists(out)):
            make_file(src, out, type_name)
        size = os.path.getsize(out)
        ps = prompts(src)
        ours, g_ours = eval_ours(out, ps)
        ref, g_ref = eval_llama_cpp(out, ps, repack)
        m = compare(ours, ref)
        agree = 0
        while agree < len(g_ref) and g_ours[agree] == g_ref[agree]:
            agree += 1
        bench = None
        if bench_args is not None:
            cmd = [sys.executable, "-m", "llama", "bench", "-m", out, *bench_args]
            p = subprocess.run(cmd, capture_output=True, text=True, check=True)
            bench = json.loads(p.stdout.strip().splitlines()[-1])
            bench["stdout"] = p.stdout
        return Result(
            type=type_name,
            greedy=agree,
            ok=m["top1"] >= TOP1_MIN and m["mean_top10"] <= MEAN_TOP10_MAX,
            file_bytes=size,
            seconds=round(time.perf_counter() - t0, 1),
            bench=bench,
            **m,
        )
    finally:
        if not keep and os.path.exists(out):
            os.remove(out)


def table(results: list[Result]) -> str:
    bench = any(r.bench for r in results)
    head = "| type | file MB | rows | top-1 | mean \\|Δ\\| top-10 | max \\|Δ\\| | bit-identical | greedy /16 | bounds |"
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    if bench:
        head += " pp ratio | tg ratio |"
        sep += "---:|---:|"
    lines = [head, sep]
    for r in results:
        line = (
            f"| {r.type.upper()} | {r.file_bytes / 1e6:.1f} | {r.rows} | {100 * r.top1:.1f}% | {r.mean_top10:.4f} | "
            f"{r.max_abs:.4f} | {100 * r.identical:.1f}% | {r.greedy} | {'ok' if r.ok else 'FAIL'} |"
        )
        if bench:
            b = r.bench or {}
            ref = b.get("llama_cpp", {})
            ratios = []
            for kind in ("pp", "tg"):
                k = next((k for k in b if k.startswith(kind)), None)
                ratios.append(f"{b[k] / ref[k]:.2f}" if k and k in ref and ref[k] else "–")
            line += f" {ratios[0]} | {ratios[1]} |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("outdir")
    ap.add_argument("--types", default=",".join(TYPES), help="comma-separated (default: all)")
    ap.add_argument("--bench", action="store_true", help="also run `python -m llama bench --compare-llama-cpp`")
    ap.add_argument(
        "--bench-args",
        default="-p 512 -n 128 -t 2 -r 3 --compare-llama-cpp --json",
        help="arguments after `bench -m FILE`",
    )
    ap.add_argument("--keep", action="store_true", help="keep the quantized files")
    ap.add_argument(
        "--reuse", action="store_true", help="use OUTDIR's file of a type when it exists (made by --make-only)"
    )
    ap.add_argument(
        "--no-repack",
        action="store_true",
        help="reference: llama.cpp with use_extra_bufts off (its plain vec_dot kernels, no repacked GEMM)",
    )
    ap.add_argument("--make-only", action="store_true", help="only write the files (implies --keep)")
    a = ap.parse_args(argv)
    types = [t.strip().lower() for t in a.types.split(",") if t.strip()]
    bad = [t for t in types if t not in TYPES]
    if bad:
        ap.error(f"unknown types {bad}; known: {','.join(TYPES)}")
    os.makedirs(a.outdir, exist_ok=True)
    bench_args = a.bench_args.split() if a.bench else None
    results: list[Result] = []
    errors: dict[str, str] = {}
    js = os.path.join(a.outdir, "type_matrix.json")
    if a.make_only:
        stem = os.path.splitext(os.path.basename(a.src))[0]
        for t in types:
            out = os.path.join(a.outdir, f"{stem}-{t}.gguf")
            print(f"[{time.strftime('%H:%M:%S')}] making {out}", file=sys.stderr, flush=True)
            make_file(a.src, out + ".part", t)
            os.replace(out + ".part", out)
        return 0
    for t in types:
        print(f"[{time.strftime('%H:%M:%S')}] {t} ...", file=sys.stderr, flush=True)
        try:
            r = run_type(a.src, a.outdir, t, a.keep, bench_args, a.reuse, not a.no_repack)
        except Exception as e:  # one type failing must not hide the others
            errors[t] = f"{type(e).__name__}: {e}"
            print(f"  {t}: {errors[t]}", file=sys.stderr, flush=True)
            continue
        results.append(r)
        print(
            f"  top-1 {100 * r.top1:.1f}%  mean|Δ|top10 {r.mean_top10:.4f}  max|Δ| {r.max_abs:.4f}  "
            f"identical {100 * r.identical:.1f}%  greedy {r.greedy}/{N_GREEDY}  ({r.seconds} s)",
            file=sys.stderr,
            flush=True,
        )
        with open(js, "w") as f:  # rewritten after each type: a partial run still leaves its figures
            json.dump(
                {
                    "src": os.path.basename(a.src),
                    "prompt_lens": PROMPT_LENS,
                    "prompt_seed": PROMPT_SEED,
                    "n_ctx": N_CTX,
                    "threads": THREADS,
                    "bounds": {"top1_min": TOP1_MIN, "mean_top10_max": MEAN_TOP10_MAX},
                    "results": [x.as_dict() for x in results],
                    "errors": errors,
                },
                f,
                indent=1,
            )
    print(table(results))
    for t, e in errors.items():
        print(f"\n{t}: {e}")
    return 0 if not errors and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
