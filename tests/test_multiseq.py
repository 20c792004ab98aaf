"""The thin multi-sequence bindings (`Context.decode`, `seq_*`): two sequences in one batch give
each the logits of its lone run through `eval` (the core's tests/multiseq.rs checks this in depth;
synth-tiny's Q4_0 matmuls have no batch rule, so the bits are equal), and bad input raises."""

import numpy as np
import pytest

from conftest import model_path
from llama import _llama
from llama.errors import ContextOverflowError


def lone(model, tokens_chunks):
    ctx = _llama.Context(model, n_ctx=64, n_batch=64, n_threads=2)
    rows = []
    for chunk in tokens_chunks:
        out = np.empty((1, model.n_vocab()), dtype=np.float32)
        ctx.eval(chunk, ctx.kv_len(), out)
        rows.append(out[0].copy())
    return rows


def test_decode_two_sequences_equals_lone_runs():
    model = _llama.Model(model_path("synth-tiny-q4_0.gguf"))
    a, b = [1, 9038, 2501, 263, 931], [1, 450, 4996]
    a_next, b_next = 29892, 17354
    want_a = lone(model, [a, [a_next]])
    want_b = lone(model, [b, [b_next]])
    ctx = _llama.Context(model, n_ctx=64, n_batch=64, n_threads=2, n_seq_max=2)
    toks = a + b
    seqs = [0] * len(a) + [1] * len(b)
    pos = list(range(len(a))) + list(range(len(b)))
    flags = [i == len(a) - 1 or i == len(toks) - 1 for i in range(len(toks))]
    out = ctx.decode(toks, seqs, pos, flags)
    assert out.shape == (2, model.n_vocab())
    np.testing.assert_array_equal(out[0], want_a[0])
    np.testing.assert_array_equal(out[1], want_b[0])
    # one token each, sequence 1 first in the batch: rows in batch order
    out = ctx.decode([b_next, a_next], [1, 0], [len(b), len(a)], [True, True])
    np.testing.assert_array_equal(out[0], want_b[1])
    np.testing.assert_array_equal(out[1], want_a[1])
    assert ctx.seq_pos_max(0) == len(a) and ctx.seq_pos_max(1) == len(b)
    ctx.seq_rm(1)
    assert ctx.seq_pos_max(1) is None
    ctx.seq_cp(0, 1, 0, 3)
    assert ctx.seq_pos_max(1) == 2
    ctx.seq_keep(1)
    assert ctx.seq_pos_max(0) is None


def test_decode_errors():
    model = _llama.Model(model_path("synth-tiny-q4_0.gguf"))
    ctx = _llama.Context(model, n_ctx=8, n_batch=8, n_threads=1, n_seq_max=2)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ctx.decode([-1], [0], [0], [True])
    with pytest.raises(ValueError, match="n_seq_max"):
        ctx.decode([5], [2], [0], [True])
    with pytest.raises(ValueError, match="continues at position 0"):
        ctx.decode([5], [0], [3], [True])
    ctx.decode([5] * 8, [0] * 8, list(range(8)), [False] * 8)
    with pytest.raises(ContextOverflowError):
        ctx.decode([5], [1], [0], [True])
