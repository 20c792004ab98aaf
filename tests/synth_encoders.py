"""Random-weight encoder GGUFs for families whose checkpoints need custom modelling code (no
transformers class to make a fixture from): written with gguf-py, an independent writer, as
llama.cpp's converter lays them out. Deterministic for a seed (numpy's PCG64 stream); the reference
(tools/make_encoder_reference.py) records each file's sha256 so a changed stream fails loudly."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from llama import _llama

DATA = Path(__file__).parent / "data" / "embed"


def _vocab_fields(tmp: Path) -> list:
    """The WordPiece vocabulary's tokenizer.* fields of the tiny BERT fixture, as converted."""
    import gguf

    src = tmp / "bert-tiny.gguf"
    _llama.convert(str(DATA / "bert-tiny"), "f32", str(src), None, True)
    r = gguf.GGUFReader(str(src))
    return [(name, f) for name, f in r.fields.items() if name.startswith("tokenizer.")]


def nomic_bert_gguf(dst: str | Path, wtype: str = "f32", seed: int = 0) -> None:
    """A 2-layer nomic-bert (n_embd 64, 4 heads, n_ff 96, rope base 1000, mean pooling) with the
    WordPiece vocabulary of tests/data/embed/bert-tiny; matrices in `wtype` (f32 or f16)."""
    import gguf

    n_embd, n_head, n_ff, n_layer, n_ctx = 64, 4, 96, 2, 2048
    rng = np.random.default_rng(seed)
    mat_type = np.float16 if wtype == "f16" else np.float32

    def mat(rows: int, cols: int, std: float = 0.08) -> np.ndarray:
        return rng.normal(0.0, std, (rows, cols)).astype(np.float32).astype(mat_type)

    def vec(n: int, mean: float = 0.0, std: float = 0.05) -> np.ndarray:
        return (mean + rng.normal(0.0, std, n)).astype(np.float32)

    with tempfile.TemporaryDirectory() as tmp:
        fields = _vocab_fields(Path(tmp))
        n_vocab = len(next(f for name, f in fields if name == "tokenizer.ggml.tokens").data)
        w = gguf.GGUFWriter(str(dst), "nomic-bert")
        w.add_name("synthetic nomic-bert")
        w.add_context_length(n_ctx)
        w.add_embedding_length(n_embd)
        w.add_feed_forward_length(n_ff)
        w.add_block_count(n_layer)
        w.add_head_count(n_head)
        w.add_layer_norm_eps(1e-12)
        w.add_causal_attention(False)
        w.add_pooling_type(gguf.PoolingType.MEAN)
        w.add_rope_freq_base(1000.0)
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if wtype == "f16" else gguf.LlamaFileType.ALL_F32)
        for name, f in fields:
            vt = f.types[0]
            w.add_key_value(name, f.contents(), vt, f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None)
        w.add_tensor("token_embd.weight", mat(n_vocab, n_embd, 0.5))
        w.add_tensor("token_types.weight", vec(2 * n_embd, 0.0, 0.1).reshape(2, n_embd))
        w.add_tensor("token_embd_norm.weight", vec(n_embd, 1.0))
        w.add_tensor("token_embd_norm.bias", vec(n_embd))
        for il in range(n_layer):
            b = f"blk.{il}."
            w.add_tensor(b + "attn_qkv.weight", mat(3 * n_embd, n_embd))
            w.add_tensor(b + "attn_output.weight", mat(n_embd, n_embd))
            w.add_tensor(b + "attn_output_norm.weight", vec(n_embd, 1.0))
            w.add_tensor(b + "attn_output_norm.bias", vec(n_embd))
            w.add_tensor(b + "ffn_up.weight", mat(n_ff, n_embd))
            w.add_tensor(b + "ffn_gate.weight", mat(n_ff, n_embd))
            w.add_tensor(b + "ffn_down.weight", mat(n_embd, n_ff))
            w.add_tensor(b + "layer_output_norm.weight", vec(n_embd, 1.0))
            w.add_tensor(b + "layer_output_norm.bias", vec(n_embd))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
