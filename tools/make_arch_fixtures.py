#!/usr/bin/env python3
"""Test data for model families without downloads: tests/data/arch/<family>/.

Per family: a tiny random-weight model made by transformers itself (`from_config`, fixed seed,
saved in bfloat16 with safetensors) and a real tokenizer rebuilt from one of llama.cpp's vocab GGUFs
(vendor/llama.cpp/models/ggml-vocab-*.gguf of the llama-cpp-python sdist), plus:

    reference.json            transformers' float32 logits (model loaded back from the saved files):
                              token ids, top-10 per position, greedy continuation
    llamacpp-conversion.json  llama.cpp's convert_hf_to_gguf.py on the folder (f32 and f16): the exact
                              command, sha256 of each GGUF, metadata (huge arrays as length + sha256),
                              tensor names/shapes/types/sha256 of the data
    llamacpp.json             llama.cpp's answers (llama-cpp-python) on its f32 conversion for the same
                              token ids: top-10 per position, greedy continuation, agreement with
                              transformers' top-1

The GGUFs themselves go to --gguf-dir (not committed unless both together are under 8 MB).

    python tools/make_arch_fixtures.py [FAMILY ...]

Needs torch, transformers, safetensors, tokenizers, sentencepiece, numpy and llama-cpp-python; the
llama.cpp tree defaults to the sdist in /work/sdist (override with $LLAMA_CPP_DIR).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "data" / "arch"
LLAMA_CPP = Path(os.environ.get("LLAMA_CPP_DIR", "/work/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp"))
VOCABS = LLAMA_CPP / "models"
TEMPLATES = VOCABS / "templates"
SEED = 1234
N_GREEDY = 16
GGUF_COMMIT_LIMIT = 4 * 1024 * 1024  # none is this small: the GGUFs are remade, their sha256 checked
PROMPTS = [
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "Paris is the capital of France, Berlin is the capital of Germany, and Rome is",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,",
]

# Pre-tokenizer regexes of the tokenizer.json files llama.cpp's vocab GGUFs were made from.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN35_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass
class Family:
    """One folder: the transformers config, the vocab it uses and how its tokenizer behaves."""

    arch: str  # HF architectures[0]
    vocab: str  # ggml-vocab-<vocab>.gguf
    config: dict[str, Any]
    template: str | None  # models/templates/<template>.jinja
    split: str | None = None  # BPE pre-tokenizer regex (None: SentencePiece)
    normalizer: dict | None = None
    bos: str | None = None  # added in front by the tokenizer when set
    eos: str | None = None
    pad: str | None = None
    convert_args: list[str] = field(default_factory=list)  # extra arguments to convert_hf_to_gguf.py
    spm_dummy_prefix: bool = True  # SentencePiece adds "▁" in front (Gemma's does not)
    renames: dict[int, str] = field(default_factory=dict)  # reserved special tokens given this family's names
    vocab_note: str = ""
    note: str = ""


def tiny_config(model_type: str, **kw: Any) -> dict[str, Any]:
    """A tiny transformers config: 2 layers of width 16, 4 heads of 16 over 2 KV heads, FFN 48, RMS eps 1e-6,
    unless the family says otherwise."""
    base = {
        "hidden_size": 16,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "rms_norm_eps": 1e-6,
    }
    return {k: v for k, v in {"model_type": model_type, **base, **kw}.items() if v is not OMIT}


OMIT: Any = object()  # tiny_config(..., key=OMIT): the config has no such key


FAMILIES: dict[str, Family] = {
    "qwen3": Family(
        arch="Qwen3ForCausalLM",
        vocab="qwen2",
        template="Qwen-Qwen3-0.6B",
        split=QWEN2_SPLIT,
        normalizer={"type": "NFC"},
        eos="<|im_end|>",
        pad="<|endoftext|>",
        config=tiny_config(
            "qwen3",
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            max_position_embeddings=40960,
            tie_word_embeddings=True,
            bos_token_id=151643,
            eos_token_id=151645,
        ),
    ),
    "qwen3_moe": Family(
        arch="Qwen3MoeForCausalLM",
        vocab="qwen2",
        template="Qwen-Qwen3-0.6B",
        split=QWEN2_SPLIT,
        normalizer={"type": "NFC"},
        eos="<|im_end|>",
        pad="<|endoftext|>",
        config=tiny_config(
            "qwen3_moe",
            moe_intermediate_size=16,
            num_experts=8,
            num_experts_per_tok=2,
            norm_topk_prob=True,
            decoder_sparse_step=1,
            mlp_only_layers=[],
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            max_position_embeddings=40960,
            tie_word_embeddings=False,
            bos_token_id=151643,
            eos_token_id=151645,
        ),
        note="untied embeddings (as Qwen3-30B-A3B): the output matrix doubles the size",
    ),
    "llama": Family(
        arch="LlamaForCausalLM",
        vocab="llama-bpe",
        template="meta-llama-Llama-3.2-3B-Instruct",
        split=LLAMA3_SPLIT,
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        renames={128004: "<|finetune_right_pad_id|>", 128008: "<|eom_id|>", 128010: "<|python_tag|>"},
        config=tiny_config(
            "llama",
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 32.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
            max_position_embeddings=131072,
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
            bos_token_id=128000,
            eos_token_id=[128001, 128008, 128009],
        ),
        vocab_note="Llama 3's vocab with Llama 3.1's names for 128004/128008/128010 (as the 3.2 template uses)",
        note="Llama 3.2 style: llama3 rope scaling (head_dim 16 puts frequencies in all three bands), tied",
    ),
    "mistral": Family(
        arch="MistralForCausalLM",
        vocab="llama-spm",
        template="mistralai-Mistral-Nemo-Instruct-2407",
        bos="<s>",
        eos="</s>",
        config=tiny_config(
            "mistral",
            hidden_size=32,
            intermediate_size=64,
            head_dim=8,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            max_position_embeddings=32768,
            rms_norm_eps=1e-5,
            sliding_window=None,
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
        ),
        vocab_note="llama-spm is Llama 2's 32000-token SentencePiece vocab, the one Mistral 7B v0.1/v0.2 use",
        note="no sliding window (Mistral 7B v0.2 on); the template (no v0.x one in llama.cpp) is Mistral Nemo's",
    ),
    "phi3": Family(
        arch="Phi3ForCausalLM",
        vocab="phi-3",
        template="microsoft-Phi-3.5-mini-instruct",
        bos="<s>",
        eos="<|end|>",
        pad="<|endoftext|>",
        config=tiny_config(
            "phi3",
            head_dim=OMIT,  # Phi-3 configs derive it
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=2,
            rope_parameters={
                "rope_type": "longrope",
                "rope_theta": 10000.0,
                "partial_rotary_factor": 1.0,
                # head_dim 16: 8 factors each; the short ones are used for prompts within 4096 tokens
                "short_factor": [1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 8.0],
                "long_factor": [1.0, 1.5, 2.5, 4.0, 8.0, 16.0, 32.0, 48.0],
            },
            original_max_position_embeddings=4096,
            max_position_embeddings=131072,
            rms_norm_eps=1e-5,
            sliding_window=262144,
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=32000,
            pad_token_id=32000,
        ),
        note="Phi-3.5-mini style LongRoPE (max 131072 over 4096 original, so an attention factor too)",
    ),
    "gemma2": Family(
        arch="Gemma2ForCausalLM",
        vocab="llama-spm",
        template="google-gemma-2-2b-it",
        spm_dummy_prefix=False,
        bos="<s>",
        eos="</s>",
        config=tiny_config(
            "gemma2",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            query_pre_attn_scalar=16,
            hidden_activation="gelu_pytorch_tanh",
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            max_position_embeddings=8192,
            sliding_window=4,
            layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
            attn_logit_softcapping=5.0,
            final_logit_softcapping=10.0,
            tie_word_embeddings=True,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        ),
        vocab_note=(
            "Gemma's own 256000-token SentencePiece vocab is not among llama.cpp's vocab GGUFs (gemma-4's is a "
            "262144-token BPE one the Gemma 2 converter cannot read: it wants tokenizer.model); the closest is "
            "llama-spm (SentencePiece BPE with byte fallback, 32000 tokens), so the ids of <bos>/<eos>/<pad> "
            "are Llama's (1/2/0) and the template's <start_of_turn>/<end_of_turn> are plain text; no ▁ is "
            "prepended, as Gemma's tokenizer (and llama.cpp's Gemma 2 conversion, add_space_prefix false)"
        ),
        note=(
            "sliding window 4 (prompts are longer), softcapping tightened to attn 5 / final 10 so it matters "
            "with random weights; query_pre_attn_scalar = head_dim as in Gemma 2 2B/9B"
        ),
    ),
    "smollm3": Family(
        arch="SmolLM3ForCausalLM",
        vocab="llama-bpe",
        template="HuggingFaceTB-SmolLM3-3B",
        split=LLAMA3_SPLIT,
        bos="<|begin_of_text|>",
        eos="<|im_end|>",
        pad="<|finetune_right_pad_id|>",
        renames={128004: "<|finetune_right_pad_id|>", 128011: "<|im_start|>", 128012: "<|im_end|>"},
        config=tiny_config(
            "smollm3",
            num_hidden_layers=4,
            no_rope_layers=[1, 1, 1, 0],
            no_rope_layer_interval=4,
            rope_parameters={"rope_type": "default", "rope_theta": 5000000.0},
            max_position_embeddings=65536,
            tie_word_embeddings=True,
            bos_token_id=128000,
            eos_token_id=128012,
            pad_token_id=128004,
        ),
        vocab_note=(
            "SmolLM3's vocab is Llama 3's with reserved tokens 128011/128012 named <|im_start|>/<|im_end|> "
            "and 128004 <|finetune_right_pad_id|> (Llama 3.1's name)"
        ),
        note="4 layers, the 4th without RoPE (no_rope_layers [1, 1, 1, 0])",
    ),
    "gpt_oss": Family(
        arch="GptOssForCausalLM",
        vocab="llama-bpe",
        template="openai-gpt-oss-120b",
        split=LLAMA3_SPLIT,
        bos="<|begin_of_text|>",
        eos="<|return|>",
        pad="<|finetune_right_pad_id|>",
        renames={
            128004: "<|finetune_right_pad_id|>",
            128011: "<|start|>",
            128012: "<|message|>",
            128013: "<|end|>",
            128014: "<|channel|>",
            128015: "<|return|>",
            128016: "<|call|>",
            128017: "<|constrain|>",
        },
        config=tiny_config(
            "gpt_oss",
            intermediate_size=32,
            num_local_experts=8,
            num_experts_per_tok=2,
            sliding_window=4,
            layer_types=["sliding_attention", "full_attention"],
            rope_parameters={
                "rope_type": "yarn",
                "rope_theta": 150000.0,
                "factor": 32.0,
                "beta_fast": 32.0,
                "beta_slow": 1.0,
                "truncate": False,
                "original_max_position_embeddings": 4096,
            },
            max_position_embeddings=131072,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            bos_token_id=128000,
            eos_token_id=128015,
            pad_token_id=128004,
        ),
        vocab_note=(
            "gpt-oss's o200k_harmony vocab (201088 tokens) is not among llama.cpp's vocab GGUFs; the closest is "
            "llama-bpe (Llama 3's, tiktoken cl100k-based with the same style of regex), with the harmony "
            "special tokens <|start|> <|message|> <|end|> <|channel|> <|return|> <|call|> <|constrain|> "
            "given to reserved tokens 128011-128017 so the chat template renders into single tokens; the "
            "tokenizer adds Llama 3's BOS (gpt-oss's does not: llama.cpp's converter needs the llama-bpe hash)"
        ),
        note=(
            "sliding window 4 on layer 0, full attention on layer 1, YaRN rope, attention sinks, 8 experts / 2. "
            "No MXFP4: llama.cpp's converter only repacks experts that are MXFP4 in the checkpoint (_blocks/"
            "_scales); bf16 experts are written as F32/F16 ('not in MXFP4, performance may be degraded')"
        ),
    ),
    "qwen3_5": Family(
        arch="Qwen3_5ForCausalLM",
        vocab="qwen35",
        template="Qwen3.5-4B",
        split=QWEN35_SPLIT,  # no NFC normalizer (Qwen3.5's tokenizer has none: e + U+0301 stays two)
        eos="<|im_end|>",
        pad="<|endoftext|>",
        config=tiny_config(
            "qwen3_5_text",
            num_hidden_layers=4,
            head_dim=32,
            linear_conv_kernel_dim=4,
            linear_key_head_dim=8,
            linear_value_head_dim=8,
            linear_num_key_heads=2,
            linear_num_value_heads=4,
            layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"],
            # 8 rotary dims; the M-RoPE sections (equal positions for text) scaled down from [11, 11, 10]
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000000.0,
                "partial_rotary_factor": 0.25,
                "mrope_section": [2, 1, 1],
                "mrope_interleaved": True,
            },
            max_position_embeddings=262144,
            tie_word_embeddings=True,
            bos_token_id=151643,
            eos_token_id=151645,
        ),
        vocab_note=(
            "ggml-vocab-qwen35.gguf holds the 151936 Qwen2 tokens with Qwen3.5's pre-tokenizer (\\p{M} joins "
            "letters); Qwen3.5's own vocab has 248320 tokens"
        ),
        convert_args=["--no-mtp"],
        note=(
            "3 gated-DeltaNet layers then 1 full (gated) attention layer, partial rotary 0.25; tied. "
            "transformers' Qwen3_5ForCausalLM has no MTP head, so llama.cpp's converter runs with --no-mtp "
            "(without it: AssertionError, opt_num_mtp_layers != 0)"
        ),
    ),
}


# ---------------------------------------------------------------------------------------------
# Tokenizers rebuilt from llama.cpp's vocab GGUFs


def gguf_module():
    sys.path.insert(0, str(LLAMA_CPP / "gguf-py"))
    import gguf

    return gguf


def read_vocab(name: str) -> dict[str, Any]:
    reader = gguf_module().GGUFReader(VOCABS / f"ggml-vocab-{name}.gguf")
    return {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.")}


def _pb_varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _pb_int(f: int, v: int) -> bytes:
    return _pb_varint(f << 3) + _pb_varint(v)


def _pb_bytes(f: int, b: bytes) -> bytes:
    return _pb_varint(f << 3 | 2) + _pb_varint(len(b)) + b


def _pb_float(f: int, x: float) -> bytes:
    return _pb_varint(f << 3 | 5) + struct.pack("<f", x)


def sentencepiece_model(tokens: list[str], scores: list[float], types: list[int], dummy_prefix: bool) -> bytes:
    """A SentencePiece ModelProto (BPE, byte fallback, identity normalizer with a dummy prefix) written
    field by field (sentencepiece_model.proto), so protobuf is not needed. GGUF token types are
    SentencePiece's piece types."""
    out = bytearray()
    for t, s, y in zip(tokens, scores, types):
        out += _pb_bytes(1, _pb_bytes(1, t.encode()) + _pb_float(2, s) + _pb_int(3, y))
    # TrainerSpec: model_type=BPE, vocab_size, byte_fallback, unk/bos/eos/pad ids
    trainer = _pb_int(3, 2) + _pb_int(4, len(tokens)) + _pb_int(35, 1)
    trainer += _pb_int(40, 0) + _pb_int(41, 1) + _pb_int(42, 2) + _pb_int(43, -1)
    # NormalizerSpec: name, add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces
    normalizer = _pb_bytes(1, b"identity") + _pb_int(3, int(dummy_prefix)) + _pb_int(4, 0) + _pb_int(5, 1)
    out += _pb_bytes(2, trainer) + _pb_bytes(3, normalizer)
    return bytes(out)


def write_tokenizer(fam: Family, folder: Path) -> dict[str, Any]:
    """tokenizer.json + tokenizer_config.json (+ tokenizer.model for SentencePiece vocabs)."""
    v = read_vocab(fam.vocab)
    tokens = list(v["tokenizer.ggml.tokens"])
    types = list(v["tokenizer.ggml.token_type"])
    for i, name in fam.renames.items():
        tokens[i] = name
    template = (TEMPLATES / f"{fam.template}.jinja").read_text() if fam.template else None
    cfg: dict[str, Any] = {
        "bos_token": fam.bos,
        "eos_token": fam.eos,
        "pad_token": fam.pad,
        "add_bos_token": fam.bos is not None,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": fam.config["max_position_embeddings"],
    }
    if fam.split is None:
        write_spm_tokenizer(tokens, list(v["tokenizer.ggml.scores"]), types, fam, folder, cfg)
    else:
        write_bpe_tokenizer(tokens, types, list(v["tokenizer.ggml.merges"]), fam, folder, cfg)
    if template is not None:
        cfg["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    return {"vocab_gguf": f"ggml-vocab-{fam.vocab}.gguf", "n_tokens": len(tokens), "template": fam.template}


def write_bpe_tokenizer(tokens, types, merges, fam: Family, folder: Path, cfg: dict) -> None:
    vocab, added = {}, []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty == 5 and t == f"[PAD{i}]":
            continue  # llama.cpp's padding up to config.vocab_size
        if ty in (3, 4):
            added.append({"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False})
            added[-1].update({"normalized": False, "special": ty == 3})
        else:
            vocab[t] = i
    post = None
    if fam.bos is not None:
        bos_id = tokens.index(fam.bos)
        post = {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": fam.bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": fam.bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": fam.bos, "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {fam.bos: {"id": fam.bos, "ids": [bos_id], "tokens": [fam.bos]}},
        }
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": fam.normalizer,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": fam.split}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
            ],
        },
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [m.split(" ", 1) for m in merges],
        },
    }
    (folder / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"


def write_spm_tokenizer(tokens, scores, types, fam: Family, folder: Path, cfg: dict) -> None:
    """tokenizer.model (what llama.cpp's converter reads) and its tokenizer.json as transformers builds
    it (LlamaTokenizer: BPE with byte fallback, merges ordered by piece score). Tokens past
    the SentencePiece model's (Phi-3's <|endoftext|>, <|assistant|>, ...) are added tokens, as in Phi-3."""
    from transformers import AddedToken, LlamaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    # phi-3: its 32000 SentencePiece pieces, then 11 added tokens and llama.cpp's [PAD{i}] up to 32064
    n_spm = next((i for i, ty in enumerate(types) if ty in (3, 4) and i > 2), len(tokens))
    # <unk> <s> </s> as a SentencePiece model has them (phi-3's GGUF types them control/user-defined)
    spm_types = [2, 3, 3, *types[3:n_spm]]
    spm = sentencepiece_model(tokens[:n_spm], scores[:n_spm], spm_types, fam.spm_dummy_prefix)
    (folder / "tokenizer.model").write_bytes(spm)
    vocab = {t: i for i, t in enumerate(tokens[:n_spm])}
    merges = generate_merges(vocab, dict(zip(tokens[:n_spm], scores[:n_spm])))
    tok = LlamaTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token="<unk>",
        bos_token=fam.bos,
        eos_token=fam.eos,
        pad_token=fam.pad,
        add_bos_token=True,
        add_eos_token=False,
        legacy=False,
        add_prefix_space=fam.spm_dummy_prefix,
    )
    control = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens[:n_spm], spm_types) if ty == 3]
    tok.add_tokens(control, special_tokens=True)
    extra = [AddedToken(t, special=True, normalized=False) for t in tokens[n_spm:] if not t.startswith("[PAD")]
    if extra:
        tok.add_tokens(extra, special_tokens=True)
    tok.save_pretrained(folder)
    saved = json.loads((folder / "tokenizer_config.json").read_text())
    cfg.update({k: saved[k] for k in ("added_tokens_decoder",) if k in saved})
    # Llama 2's own tokenizer.json: a "▁" always prepended (Metaspace's "first" does not add one to a
    # text that starts with a space, SentencePiece and llama.cpp do), read as is by transformers.
    tj = json.loads((folder / "tokenizer.json").read_text())
    normalizers = [{"type": "Prepend", "prepend": "▁"}] if fam.spm_dummy_prefix else []
    normalizers.append({"type": "Replace", "pattern": {"String": " "}, "content": "▁"})
    tj["normalizer"] = {"type": "Sequence", "normalizers": normalizers}
    tj["pre_tokenizer"] = None
    (folder / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    (folder / "special_tokens_map.json").unlink(missing_ok=True)


def check_tokenizer(fam: Family, folder: Path) -> dict[str, Any]:
    """Our tokenizer.json against llama.cpp's own tokenizer tests for the vocab (.inp/.out)."""
    from tokenizers import Tokenizer

    inp = VOCABS / f"ggml-vocab-{fam.vocab}.gguf.inp"
    if not inp.is_file():
        return {"checked": False, "why": "llama.cpp has no tokenizer tests for this vocab"}
    if not fam.spm_dummy_prefix:
        return {
            "checked": False,
            "why": "llama.cpp's tests for this vocab assume the ▁ prefix this tokenizer does not add",
        }
    texts = inp.read_text().split("\n__ggml_vocab_test__\n")
    texts[-1] = texts[-1].removesuffix("\n__ggml_vocab_test__\n")
    expected = (VOCABS / f"ggml-vocab-{fam.vocab}.gguf.out").read_text().split("\n")
    tk = Tokenizer.from_file(str(folder / "tokenizer.json"))
    bad = [
        t for t, e in zip(texts, expected) if tk.encode(t, add_special_tokens=False).ids != [int(x) for x in e.split()]
    ]
    return {"checked": True, "cases": len(texts), "differ": len(bad), "differ_texts": bad[:5]}


# ---------------------------------------------------------------------------------------------
# The model and transformers' answers


def make_model(fam: Family, folder: Path, n_tokens: int) -> dict[str, Any]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg_dict = dict(fam.config)
    model_type = cfg_dict.pop("model_type")
    cfg_dict["vocab_size"] = max(n_tokens, cfg_dict.get("vocab_size", 0))
    cfg = AutoConfig.for_model(model_type, **cfg_dict)
    cfg.architectures = [fam.arch]
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    assert type(model).__name__ == fam.arch, type(model).__name__
    scale_weights(model)
    model = model.to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "generation_config.json").unlink(missing_ok=True)
    return {"dtype": "bfloat16", "seed": SEED, "n_params": sum(p.numel() for p in model.parameters())}


def scale_weights(model) -> None:
    """Random weights at a scale where activations stay O(1) and logits spread over several units:
    matrices N(0, 1/fan_in), embeddings N(0, 1), norm weights and biases jittered so that a missed
    one shows. Everything else (DeltaNet's A_log/dt_bias, sinks) keeps transformers' init."""
    import torch

    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "embed_tokens" in name or name == "lm_head.weight":
                p.copy_(torch.randn(p.shape, generator=g))
            elif p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
            elif "norm" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias") and "dt_bias" not in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def top10(row: np.ndarray) -> list:
    idx = np.argsort(-row, kind="stable")[:10]
    return [[int(i), float(row[i])] for i in idx]


def transformers_reference(folder: Path) -> dict[str, Any]:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).float().eval()
    cases = []
    for prompt in PROMPTS:
        ids = tok(prompt)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].numpy()
            gen = model.generate(
                torch.tensor([ids]), max_new_tokens=N_GREEDY, do_sample=False, eos_token_id=None, pad_token_id=0
            )
        last = logits[-1].astype(np.float64)
        lse = float(np.log(np.exp(last - last.max()).sum()) + last.max())
        cases.append(
            {
                "prompt": prompt,
                "tokens": [int(t) for t in ids],
                "top10": [top10(r) for r in logits],
                "last_logits_stats": {"mean": float(last.mean()), "std": float(last.std()), "logsumexp": lse},
                "greedy": [int(t) for t in gen[0, len(ids) :]],
            }
        )
    return {
        "reference": f"transformers {transformers.__version__}, torch {torch.__version__}, float32 (weights bf16)",
        "n_vocab": int(model.config.vocab_size),
        "cases": cases,
    }


# ---------------------------------------------------------------------------------------------
# llama.cpp: its conversion and its answers


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert(folder: Path, out: Path, outtype: str, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, str(LLAMA_CPP / "convert_hf_to_gguf.py"), str(folder), "--outtype", outtype, *extra]
    cmd += ["--outfile", str(out)]
    shown = f"python {LLAMA_CPP}/convert_hf_to_gguf.py tests/data/arch/{folder.name} --outtype {outtype} "
    shown += "".join(f"{a} " for a in extra) + f"--outfile {out.name}"
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    warnings = sorted({ln.split(":", 2)[-1].strip() for ln in r.stderr.splitlines() if ln.startswith("WARNING")})
    if r.returncode != 0:
        return {"command": shown, "error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"}
    return {"command": shown, "file": out.name, "size": out.stat().st_size, "sha256": sha256(out), "warnings": warnings}


def dump_gguf(path: Path) -> dict[str, Any]:
    """Metadata and tensor table of a GGUF: values as they are except arrays longer than 64, which are
    given as length, first 8 and sha256 of their JSON; each tensor's name, shape (ggml order), type and
    data sha256."""
    gguf = gguf_module()
    r = gguf.GGUFReader(path)
    kv = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        v = f.contents()
        if isinstance(v, list) and len(v) > 64:
            js = json.dumps(v, ensure_ascii=False)
            v = {"len": len(v), "head": v[:8], "sha256": hashlib.sha256(js.encode()).hexdigest()}
        elif isinstance(v, str) and len(v) > 512:
            v = {"len": len(v), "head": v[:64], "sha256": hashlib.sha256(v.encode()).hexdigest()}
        kv[k] = {"type": f.types[0].name if f.types else None, "value": v}
    tensors = [
        {
            "name": t.name,
            "shape": [int(x) for x in t.shape],
            "type": t.tensor_type.name,
            "sha256": hashlib.sha256(np.ascontiguousarray(t.data).tobytes()).hexdigest(),
        }
        for t in r.tensors
    ]
    return {"metadata": kv, "tensors": tensors}


def llamacpp_answers(gguf_path: Path, ref: dict[str, Any]) -> dict[str, Any]:
    import llama_cpp

    out: dict[str, Any] = {
        "reference": f"llama.cpp via llama-cpp-python {llama_cpp.__version__} on the f32 conversion",
        "isa": host_isa(),
    }
    try:
        llm = llama_cpp.Llama(
            str(gguf_path), n_ctx=256, n_batch=256, n_ubatch=256, logits_all=True, n_threads=1, verbose=False
        )
    except Exception as e:  # noqa: BLE001 - recorded, not raised
        out["error"] = f"{type(e).__name__}: {e}"
        return out
    out["n_vocab"] = llm.n_vocab()
    out["cases"] = []
    agree = total = greedy_same = same_ids = 0
    for case in ref["cases"]:
        toks = case["tokens"]
        llm.reset()
        llm.eval(toks)
        scores = np.array(llm.scores[: len(toks)], dtype=np.float32)
        greedy = []
        while True:
            t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            greedy.append(t)
            if len(greedy) == N_GREEDY:
                break
            llm.eval([t])
        tops = [top10(r) for r in scores]
        same_ids += llm.tokenize(case["prompt"].encode(), add_bos=True, special=False) == toks
        a = sum(x[0][0] == y[0][0] for x, y in zip(tops, case["top10"]))
        agree, total = agree + a, total + len(toks)
        d = max(abs(x[0][1] - y[0][1]) for x, y in zip(tops, case["top10"]))
        greedy_same += greedy == case["greedy"]
        out["cases"].append(
            {"tokens": toks, "top10": tops, "greedy": greedy, "top1_agree": a, "max_top1_logit_diff": round(d, 6)}
        )
    out["agreement_with_transformers"] = {
        "top1": f"{agree}/{total}",
        "greedy_same": f"{greedy_same}/{len(ref['cases'])}",
        "llamacpp_tokenizes_prompts_alike": f"{same_ids}/{len(ref['cases'])}",
    }
    del llm
    return out


def llamacpp_answers_in_subprocess(gguf_path: Path, folder: Path) -> dict[str, Any]:
    """llama.cpp aborts the process on a graph it cannot build (GGML_ASSERT): run it apart."""
    out = gguf_path.with_suffix(".answers.json")
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--llamacpp-answers", str(gguf_path), str(folder / "reference.json"), str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode == 0 and out.is_file():
        return json.loads(out.read_text())
    import llama_cpp

    asserts = [ln.strip() for ln in r.stderr.splitlines() if "GGML_ASSERT" in ln or "error" in ln.lower()]
    return {
        "reference": f"llama.cpp via llama-cpp-python {llama_cpp.__version__} on the f32 conversion",
        "isa": host_isa(),
        "error": f"exit status {r.returncode}: " + (asserts[0] if asserts else r.stderr.strip()[-300:]),
    }


def host_isa() -> str:
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
    if "avx512f" in flags and "avx512_vnni" in flags and "avx512bw" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags else "other"


# ---------------------------------------------------------------------------------------------


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def make(name: str, gguf_dir: Path) -> dict[str, Any]:
    fam = FAMILIES[name]
    folder = OUT / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    status: dict[str, Any] = {"family": name, "arch": fam.arch}

    def step(what: str, fn: Callable[[], Any]) -> Any:
        print(f"[{name}] {what}", flush=True)
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - a family that cannot be made is recorded and skipped
            traceback.print_exc()
            status["error"] = f"{what}: {type(e).__name__}: {e}"
            raise

    try:
        tokinfo = step("tokenizer", lambda: write_tokenizer(fam, folder))
        status["tokenizer"] = tokinfo
        status["tokenizer_check"] = step("tokenizer check", lambda: check_tokenizer(fam, folder))
        status["model"] = step("model", lambda: make_model(fam, folder, tokinfo["n_tokens"]))
        ref = step("transformers reference", lambda: transformers_reference(folder))
        write_json(folder / "reference.json", ref)
    except Exception:  # noqa: BLE001
        write_readme(fam, folder, status)
        return status

    work = gguf_dir / name
    work.mkdir(parents=True, exist_ok=True)
    conv: dict[str, Any] = {"llama_cpp": str(LLAMA_CPP), "conversions": {}}
    for outtype in ("f32", "f16"):
        c = step(
            f"convert {outtype}", lambda t=outtype: convert(folder, work / f"{name}-{t}.gguf", t, fam.convert_args)
        )
        conv["conversions"][outtype] = c
    f32 = conv["conversions"]["f32"]
    if "error" in f32:
        status["error"] = f"llama.cpp's converter: {f32['error']}"
    else:
        conv["gguf_f32"] = dump_gguf(work / f32["file"])
        f16 = conv["conversions"]["f16"]
        if "error" not in f16:
            conv["gguf_f16_tensors"] = [
                {k: t[k] for k in ("name", "type", "sha256")} for t in dump_gguf(work / f16["file"])["tensors"]
            ]
            total = f32["size"] + f16["size"]
            conv["committed"] = total <= GGUF_COMMIT_LIMIT
            if conv["committed"]:
                for c in (f32, f16):
                    shutil.copy(work / c["file"], folder / c["file"])
        write_json(folder / "llamacpp-conversion.json", conv)
        cpp = step("llama.cpp answers", lambda: llamacpp_answers_in_subprocess(work / f32["file"], folder))
        write_json(folder / "llamacpp.json", cpp)
        status["llamacpp"] = cpp.get("agreement_with_transformers", cpp.get("error"))
    if "error" in f32:
        write_json(folder / "llamacpp-conversion.json", conv)
    status["size"] = folder_size(folder)
    write_readme(fam, folder, status)
    status["size"] = folder_size(folder)
    return status


def write_readme(fam: Family, folder: Path, status: dict[str, Any]) -> None:
    cfg = fam.config
    lines = [
        f"# {folder.name}: {fam.arch}",
        "",
        f"Made by `python tools/make_arch_fixtures.py {folder.name}` (seed {SEED}).",
        "",
        f"- model: random weights from `AutoModelForCausalLM.from_config`, saved in **bfloat16**; "
        f"hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers" + (f"; {fam.note}" if fam.note else ""),
        f"- tokenizer: rebuilt from llama.cpp's `models/ggml-vocab-{fam.vocab}.gguf`"
        + (f" ({fam.vocab_note})" if fam.vocab_note else "")
        + (f"; chat template `models/templates/{fam.template}.jinja`" if fam.template else ""),
    ]
    chk = status.get("tokenizer_check")
    if chk and not chk.get("checked"):
        lines.append(f"- tokenizer.json not checked against llama.cpp's tokenizer tests: {chk['why']}")
    elif chk:
        lines.append(
            f"- tokenizer.json against llama.cpp's tokenizer tests for that vocab: "
            f"{chk['cases'] - chk['differ']}/{chk['cases']} identical"
        )
    if "error" in status:
        lines += ["", "## Not complete", "", f"    {status['error']}"]
    elif "llamacpp" in status:
        lines.append(f"- llama.cpp on its f32 conversion vs transformers: {status['llamacpp']}")
    (folder / "README.md").write_text("\n".join(lines) + "\n")


TOP_README = """# Architecture fixtures

Tiny random-weight models of the families llama.py is to support, made without downloads by
`python tools/make_arch_fixtures.py [FAMILY ...]` (all families by default; deterministic: fixed
seeds). Each folder `<family>/` holds:

- `config.json`, `model.safetensors`: the model as transformers makes it (`from_config`, seed 1234,
  weights rescaled so logits spread over several units), saved in bfloat16;
- `tokenizer.json`, `tokenizer_config.json` (with the family's chat template from llama.cpp's
  `models/templates/`), and `tokenizer.model` for SentencePiece vocabs: a real tokenizer rebuilt from
  one of llama.cpp's vocab GGUFs (`models/ggml-vocab-*.gguf`), checked against llama.cpp's tokenizer
  tests for that vocab (`.inp`/`.out`; the count is in the family's README);
- `reference.json`: transformers' float32 answers (the bf16 weights loaded back and `.float()`) for 4
  prompts: token ids, top-10 (id, logit) per position, statistics of the last position's logits
  (mean, std, logsumexp; the full rows are too large with these vocabularies), greedy continuation
  of 16 tokens;
- `llamacpp-conversion.json`: llama.cpp's `convert_hf_to_gguf.py` on the folder with `--outtype f32`
  and `--outtype f16`: the exact commands, size and sha256 of each GGUF, the f32 GGUF's metadata
  (arrays longer than 64 as length + first 8 + sha256 of their JSON) and tensor table (name, ggml
  shape, type, sha256 of the data), the f16 GGUF's tensor names/types/sha256. The GGUFs are not
  committed (no family's pair is under 4 MB); the script writes them to /tmp/llama-py-arch-fixtures;
- `llamacpp.json`: llama.cpp's answers (llama-cpp-python, native build, ISA recorded) on the f32
  conversion for the same token ids: top-10 per position (one batch, logits_all) and greedy
  continuation of 16 tokens (one token at a time through the KV cache), and the agreement of its
  top-1 and greedy tokens with transformers';
- `README.md`: what is particular to the family (vocab substitutions, settings chosen to exercise
  its features) or why it could not be made.

Regenerating gives the same files byte for byte (same seeds, same GGUF sha256) with the same
torch/transformers/llama.cpp versions. Most of the size is the real tokenizers (tokenizer.json of
128k-152k-token vocabularies, 6-8 MB each; qwen3 and qwen3_moe share one) and the embedding matrices.
One near tie: in smollm3 one position's top-2 logits are 0.0003 apart and swap between transformers
and llama.cpp (92/93).

| family | architecture | vocab | size | llama.cpp vs transformers: top-1, greedy 16, prompts tokenized alike |
|---|---|---|---|---|
"""


def write_top_readme() -> None:
    rows = []
    for name, fam in FAMILIES.items():
        folder = OUT / name
        if not folder.is_dir():
            continue
        cpp = folder / "llamacpp.json"
        readme = (folder / "README.md").read_text() if (folder / "README.md").is_file() else ""
        if "## Not complete" in readme:
            result = "not complete: " + readme.split("## Not complete", 1)[1].strip().splitlines()[0].strip()
        elif cpp.is_file():
            d = json.loads(cpp.read_text())
            a = d.get("agreement_with_transformers")
            result = (
                f"{a['top1']}, {a['greedy_same']}, {a.get('llamacpp_tokenizes_prompts_alike', '-')}"
                if a
                else f"llama.cpp error: {d.get('error')}"
            )
        else:
            result = "?"
        rows.append(f"| {name} | {fam.arch} | {fam.vocab} | {folder_size(folder) / 1e6:.1f} MB | {result} |")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file() and f.name != "README.md")
    (OUT / "README.md").write_text(TOP_README + "\n".join(rows) + f"\n\nTotal on disk: {total / 1e6:.1f} MB.\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("families", nargs="*", help=f"default: all of {', '.join(FAMILIES)}")
    ap.add_argument("--gguf-dir", type=Path, default=Path("/tmp/llama-py-arch-fixtures"))
    ap.add_argument("--llamacpp-answers", nargs=3, metavar=("GGUF", "REFERENCE", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.llamacpp_answers:
        gguf_path, ref_path, out = map(Path, args.llamacpp_answers)
        write_json(out, llamacpp_answers(gguf_path, json.loads(ref_path.read_text())))
        return
    if unknown := [f for f in args.families if f not in FAMILIES]:
        ap.error(f"unknown families {unknown}")
    for name in args.families or FAMILIES:
        print(json.dumps(make(name, args.gguf_dir), indent=1), flush=True)
    write_top_readme()


if __name__ == "__main__":
    main()
