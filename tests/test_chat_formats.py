"""`Llama(chat_format=NAME)`: llama-cpp-python's named chat formats give its prompts and stop strings
(compared with its own `llama_chat_format.format_*` functions; `phi3` with llama.cpp's built-in
template), and a whole chat equals llama-cpp-python's on the same model."""

from __future__ import annotations

import ctypes

import pytest

from conftest import model_path
from llama import InvalidArgumentError, Llama
from llama.chat_formats import FORMATS, format_messages

lcf = pytest.importorskip("llama_cpp.llama_chat_format", reason="llama-cpp-python is the reference")

REFERENCE = {
    "llama-2": "format_llama2",
    "llama-3": "format_llama3",
    "alpaca": "format_alpaca",
    "qwen": "format_qwen",
    "vicuna": "format",
    "zephyr": "format_zephyr",
    "chatml": "format_chatml",
    "mistral-instruct": "format_mistral_instruct",
    "gemma": "format_gemma",
}

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}],
    [
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Bonjour"},
        {"role": "user", "content": "How are you?\nTell me."},
    ],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": ""}],
    [{"role": "user", "content": "x"}, {"role": "assistant", "content": None}, {"role": "user", "content": "ünï"}],
]


@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("conv", range(len(CONVERSATIONS)))
def test_prompts_and_stops_equal_llama_cpp_pythons(name: str, conv: int) -> None:
    msgs = CONVERSATIONS[conv]
    ref = getattr(lcf, REFERENCE[name])(msgs)
    prompt, stop = format_messages(name, msgs)
    assert prompt == ref.prompt
    want = [] if ref.stop is None else [ref.stop] if isinstance(ref.stop, str) else list(ref.stop)
    assert stop == want


def test_phi3_equals_llama_cpps_builtin_template() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    for msgs in CONVERSATIONS:
        msgs = [m for m in msgs if m["content"] is not None]
        arr = (llama_cpp.llama_chat_message * len(msgs))()
        for i, m in enumerate(msgs):
            arr[i].role = m["role"].encode()
            arr[i].content = m["content"].encode()
        buf = ctypes.create_string_buffer(8192)
        n = llama_cpp.llama_chat_apply_template(b"phi3", arr, len(msgs), True, buf, len(buf))
        assert n > 0
        assert format_messages("phi3", msgs)[0] == buf.raw[:n].decode()


def test_names_are_checked() -> None:
    assert {
        "llama-2",
        "llama-3",
        "chatml",
        "mistral-instruct",
        "gemma",
        "qwen",
        "phi3",
        "vicuna",
        "alpaca",
        "zephyr",
    } <= set(FORMATS)
    with pytest.raises(InvalidArgumentError, match="chat_format 'nope'"):
        Llama(model_path("qwen2.5-coder-0.5b-q4_k_m.gguf"), vocab_only=True, chat_format="nope")


def test_a_chat_in_a_named_format_equals_llama_cpp_pythons() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    path = model_path("qwen2.5-coder-0.5b-q4_k_m.gguf")
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Write a Python hello world."}]
    ours = Llama(path, n_ctx=512, n_threads=2, chat_format="qwen").create_chat_completion(
        msgs, max_tokens=24, temperature=0
    )
    ref = llama_cpp.Llama(path, n_ctx=512, n_threads=2, chat_format="qwen", verbose=False)
    theirs = ref.create_chat_completion(msgs, max_tokens=24, temperature=0)
    assert ours["choices"][0]["message"]["content"] == theirs["choices"][0]["message"]["content"]
    assert ours["usage"]["prompt_tokens"] == theirs["usage"]["prompt_tokens"]


def test_a_model_without_a_template_never_gets_a_silent_chatml(capsys: pytest.CaptureFixture[str]) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    msgs = [{"role": "user", "content": "Say hi."}]
    tiny = Llama(model_path("synth-tiny-q4_0.gguf"), n_ctx=64, n_threads=2)
    with pytest.raises(InvalidArgumentError, match="no chat template"):
        tiny.create_chat_completion(msgs, max_tokens=2)
    with pytest.raises(InvalidArgumentError, match="chat_format="):
        tiny.apply_chat_template(msgs)
    # Gemma-3-270M (base) ships none: Gemma's turns, said once
    path = model_path("gemma3-270m-q4_k_m.gguf")
    ours = Llama(path, n_ctx=256, n_threads=2).create_chat_completion(msgs, max_tokens=12, temperature=0)
    assert "chat_format='gemma'" in capsys.readouterr().err
    ref = llama_cpp.Llama(path, n_ctx=256, n_threads=2, chat_format="gemma", verbose=False)
    theirs = ref.create_chat_completion(msgs, max_tokens=12, temperature=0)
    assert ours["choices"][0]["message"]["content"] == theirs["choices"][0]["message"]["content"]
