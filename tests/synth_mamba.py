"""Random-weight Mamba GGUFs written with gguf-py, as llama.cpp's converter lays them out (tensor
names, ggml shapes, metadata keys): the recurrent-only model of the compatibility tests and of the
Mamba golden test (llama.cpp's answers on it: tools/gen_golden.py).

    python tests/synth_mamba.py DIR     writes DIR/mamba-random-f32.gguf and DIR/falcon-mamba-random-f32.gguf
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SPM_VOCAB = Path(__file__).parent / "data" / "vocab" / "ggml-vocab-llama-spm.gguf"
# name → whether dt, B and C are RMS-normalized (FalconMamba's `ssm.dt_b_c_rms`)
MODELS = {"mamba-random-f32": False, "falcon-mamba-random-f32": True}


def write_random_mamba(dst: Path, vocab_gguf: Path = SPM_VOCAB, dt_b_c_rms: bool = False) -> None:
    """A two-layer Mamba (d_model 32, d_inner 64, d_state 8, conv 4, dt rank 4) with random f32
    weights (norm weights, A and D jittered so that a missed one shows) and the vocabulary of
    `vocab_gguf`."""
    import gguf

    d_model, d_inner, d_state, d_conv, dt_rank, n_layer = 32, 64, 8, 4, 4, 2
    vocab = gguf.GGUFReader(str(vocab_gguf))
    w = gguf.GGUFWriter(str(dst), "mamba")
    for key, field in vocab.fields.items():
        if key.startswith("tokenizer."):
            kind = field.types[0]
            w.add_key_value(key, field.contents(), kind, field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    n_vocab = len(vocab.fields["tokenizer.ggml.tokens"].contents())
    w.add_context_length(1024)
    w.add_embedding_length(d_model)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(0)
    w.add_head_count(0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_ssm_conv_kernel(d_conv)
    w.add_ssm_inner_size(d_inner)
    w.add_ssm_state_size(d_state)
    w.add_ssm_time_step_rank(dt_rank)
    if dt_b_c_rms:
        w.add_ssm_dt_b_c_rms(True)
    w.add_file_type(0)
    rng = np.random.default_rng(7)

    def normal(*shape: int, scale: float) -> np.ndarray:  # numpy shape: ggml's reversed
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w.add_tensor("token_embd.weight", normal(n_vocab, d_model, scale=1.0))
    w.add_tensor("output_norm.weight", 1 + normal(d_model, scale=0.1))
    w.add_tensor("output.weight", normal(n_vocab, d_model, scale=1.0))
    for i in range(n_layer):
        blk = f"blk.{i}."
        w.add_tensor(blk + "attn_norm.weight", 1 + normal(d_model, scale=0.1))
        w.add_tensor(blk + "ssm_in.weight", normal(2 * d_inner, d_model, scale=0.5))
        w.add_tensor(blk + "ssm_conv1d.weight", normal(d_inner, d_conv, scale=0.5))
        w.add_tensor(blk + "ssm_conv1d.bias", normal(d_inner, scale=0.1))
        w.add_tensor(blk + "ssm_x.weight", normal(dt_rank + 2 * d_state, d_inner, scale=0.2))
        w.add_tensor(blk + "ssm_dt.weight", normal(d_inner, dt_rank, scale=0.5))
        w.add_tensor(blk + "ssm_dt.bias", normal(d_inner, scale=0.1))
        # A = -exp(A_log) with Mamba's A_log = log(1..d_state) init, jittered per channel
        a = np.tile(np.arange(1, d_state + 1, dtype=np.float32), (d_inner, 1))
        w.add_tensor(blk + "ssm_a", -(a * np.exp(normal(d_inner, d_state, scale=0.1))).astype(np.float32))
        w.add_tensor(blk + "ssm_d", 1 + normal(d_inner, scale=0.1))
        w.add_tensor(blk + "ssm_out.weight", normal(d_model, d_inner, scale=0.2))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_all(folder: Path) -> list[Path]:
    """Every model of MODELS into `folder` (as `<name>.gguf`)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rms in MODELS.items():
        write_random_mamba(folder / f"{name}.gguf", dt_b_c_rms=rms)
        paths.append(folder / f"{name}.gguf")
    return paths


if __name__ == "__main__":
    for p in write_all(Path(sys.argv[1])):
        print(p)
