"""llama-cpp-python's named chat formats (`Llama(chat_format=NAME)`): the prompt text and the stop
strings each one makes, as its `llama_chat_format.format_*` functions do (their layouts are facts
of those formats; `phi3` is llama.cpp's built-in template of that name). The prompt is tokenized
with BOS and special tokens, as llama-cpp-python's chat handler does."""

from __future__ import annotations

from typing import Any, Callable

from .errors import InvalidArgumentError

Message = dict[str, Any]
Formatted = tuple[str, list[str]]


def _system(messages: list[Message]) -> str:
    """The first system message's content ("" without one)."""
    for m in messages:
        if m.get("role") == "system":
            return m.get("content") or ""
    return ""


def _turns(messages: list[Message], roles: dict[str, str]) -> list[tuple[str, str | None]]:
    """(role label, content) of the messages whose role the format names; non-text content is None."""
    out: list[tuple[str, str | None]] = []
    for m in messages:
        if m.get("role") in roles:
            c = m.get("content")
            out.append((roles[m["role"]], c if isinstance(c, str) else None))
    return out


def _no_colon_single(system: str, turns: list[tuple[str, str | None]], sep: str) -> str:
    ret = system
    for role, msg in turns:
        ret += role + msg + sep if msg else role
    return ret


def _add_colon_two(system: str, turns: list[tuple[str, str | None]], sep: str, sep2: str) -> str:
    seps = [sep, sep2]
    ret = system + seps[0]
    for i, (role, msg) in enumerate(turns):
        ret += role + ": " + msg + seps[i % 2] if msg else role + ":"
    return ret


def _chatml(system: str, turns: list[tuple[str, str | None]], sep: str) -> str:
    ret = "" if system == "" else system + sep + "\n"
    for role, msg in turns:
        ret += role + "\n" + msg + sep + "\n" if msg else role + "\n"
    return ret


def _llama2(messages: list[Message]) -> Formatted:
    system = _system(messages)
    if system:
        system = f"[INST] <<SYS>>\n{system}\n<</SYS>>"
    turns = _turns(messages, {"user": "<s>[INST]", "assistant": "[/INST]"})
    seps = [" ", "</s>"]
    ret = system + seps[0]
    for i, (role, msg) in enumerate(turns):
        if system and i == 0:
            ret += (msg or "") + seps[i % 2]
        elif msg:
            ret += role + msg + " " + seps[i % 2]
        else:
            ret += role + " "
    return ret + "[/INST]", []


def _llama3(messages: list[Message]) -> Formatted:
    roles = {r: f"<|start_header_id|>{r}<|end_header_id|>\n\n" for r in ("system", "user", "assistant")}
    turns = [*_turns(messages, roles), (roles["assistant"], None)]
    return _no_colon_single("", turns, "<|eot_id|>"), ["<|eot_id|>"]


def _alpaca(messages: list[Message]) -> Formatted:
    turns = _turns(messages, {"user": "### Instruction", "assistant": "### Response"})
    return _add_colon_two(_system(messages), turns, "\n\n", "</s>"), []


def _qwen(messages: list[Message]) -> Formatted:
    system = "<|im_start|>system\n" + (_system(messages) or "You are a helpful assistant.")
    roles = {"user": "<|im_start|>user", "assistant": "<|im_start|>assistant"}
    turns = [*_turns(messages, roles), (roles["assistant"], None)]
    return _chatml(system, turns, "<|im_end|>"), ["<|endoftext|>"]


def _vicuna(messages: list[Message]) -> Formatted:
    system = (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the user's questions."
    )
    roles = {"user": "USER", "assistant": "ASSISTANT"}
    turns = [*_turns(messages, roles), (roles["assistant"], None)]
    return _add_colon_two(system, turns, " ", "</s>"), []


def _zephyr(messages: list[Message]) -> Formatted:
    roles = {"user": "<|user|>\n", "assistant": "<|assistant|>\n"}
    turns = [*_turns(messages, roles), (roles["assistant"], None)]
    return _chatml("<|system|>\n" + _system(messages), turns, "</s>"), ["</s>"]


def _chatml_format(messages: list[Message]) -> Formatted:
    roles = {"user": "<|im_start|>user", "assistant": "<|im_start|>assistant"}
    turns = [*_turns(messages, roles), (roles["assistant"], None)]
    return _chatml("<|im_start|>system\n" + _system(messages), turns, "<|im_end|>"), ["<|im_end|>"]


def _mistral_instruct(messages: list[Message]) -> Formatted:
    prompt = ""
    for m in messages:
        c = m.get("content")
        if m.get("role") == "user" and isinstance(c, str):
            prompt += "[INST] " + c
        elif m.get("role") == "assistant" and c is not None:
            prompt += " [/INST]" + c + "</s>"
    return prompt + " [/INST]", ["</s>"]


def _gemma(messages: list[Message]) -> Formatted:
    # Gemma has no system role: llama-cpp-python drops system messages here too
    roles = {"user": "<start_of_turn>user\n", "assistant": "<start_of_turn>model\n"}
    turns = [*_turns(messages, roles), (roles["assistant"], None)]
    return _no_colon_single("", turns, "<end_of_turn>\n"), ["<end_of_turn>\n"]


def _phi3(messages: list[Message]) -> Formatted:
    prompt = "".join(f"<|{m.get('role')}|>\n{m.get('content') or ''}<|end|>\n" for m in messages)
    return prompt + "<|assistant|>\n", ["<|end|>"]


FORMATS: dict[str, Callable[[list[Message]], Formatted]] = {
    "llama-2": _llama2,
    "llama-3": _llama3,
    "alpaca": _alpaca,
    "qwen": _qwen,
    "vicuna": _vicuna,
    "zephyr": _zephyr,
    "chatml": _chatml_format,
    "mistral-instruct": _mistral_instruct,
    "gemma": _gemma,
    "phi3": _phi3,
}


def check_format(name: str | None) -> str | None:
    if name is not None and name not in FORMATS:
        raise InvalidArgumentError(f"chat_format {name!r} is not one of: {', '.join(sorted(FORMATS))}")
    return name


def format_messages(name: str, messages: list[Message]) -> Formatted:
    """The prompt text and the format's stop strings."""
    return FORMATS[name](messages)
