"""Chat formatters under llama-cpp-python's `llama_chat_format` names: the named formats as
`format_<name>(messages=...)` functions and a Jinja chat template (a Hugging Face
tokenizer_config.json's, or any) as a formatter, each returning a `ChatFormatterResponse` (the
prompt text and its stop strings). They are views of what `Llama(chat_format=...)` and
`Llama.apply_chat_template` use (`chat_formats.py`, the Rust template renderer), not a second
implementation.

Like llama-cpp-python's, each formatter is called with the chat completion's keywords
(`functions`, `function_call`, `tool_choice`, ...); the formatters here read `messages` (and a
template formatter `tools`) and take the others as documented no-ops: they change nothing in the
prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from . import _llama
from .chat_formats import FORMATS
from .errors import InvalidArgumentError
from .sampling import StoppingCriteriaList
from .tools import template_messages


@dataclass
class ChatFormatterResponse:
    """A formatted chat: the prompt text, the stop strings, and whether the prompt already holds
    the special tokens a model puts in front (BOS), so the caller must not add them again."""

    prompt: str
    stop: str | list[str] | None = None
    stopping_criteria: StoppingCriteriaList | None = None
    added_special: bool = False


class ChatFormatter(Protocol):
    def __call__(self, *, messages: list[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse: ...


class Jinja2ChatFormatter:
    """A chat template rendered as llama.cpp renders the GGUF's (`Llama.apply_chat_template`),
    with `bos_token` / `eos_token` as the template's variables; the EOS text is the stop string."""

    def __init__(
        self,
        template: str,
        eos_token: str,
        bos_token: str,
        add_generation_prompt: bool = True,
        stop_token_ids: list[int] | None = None,
    ) -> None:
        self.template = template
        self.eos_token = eos_token
        self.bos_token = bos_token
        self.add_generation_prompt = add_generation_prompt
        self.stop_token_ids = stop_token_ids

    def __call__(
        self, *, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> ChatFormatterResponse:
        extra = {"tools": list(tools)} if tools else None
        prompt = _llama.render_chat_template(
            self.template,
            template_messages(messages),
            self.add_generation_prompt,
            self.bos_token,
            self.eos_token,
            extra,
        )
        return ChatFormatterResponse(prompt=prompt, stop=[self.eos_token], added_special=True)


def _token_text(v: Any) -> str:
    """A tokenizer_config.json special token: a string or an AddedToken dict ({"content": ...})."""
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) else ""


def hf_tokenizer_config_to_chat_formatter(
    tokenizer_config: dict[str, Any], add_generation_prompt: bool = True
) -> ChatFormatter:
    """The formatter of a Hugging Face tokenizer_config.json (its `chat_template`, `bos_token`,
    `eos_token`), as llama-cpp-python's: with `add_generation_prompt`, an empty assistant message
    is appended (instead of the template's add_generation_prompt variable); EOS and BOS texts stop."""
    template = tokenizer_config.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if not isinstance(template, str):
        raise InvalidArgumentError("tokenizer_config has no chat_template string")
    eos = _token_text(tokenizer_config.get("eos_token"))
    bos = _token_text(tokenizer_config.get("bos_token"))
    render = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos, add_generation_prompt=False)

    def format_tokenizer_config(*, messages: list[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
        if add_generation_prompt:
            messages = [*messages, {"role": "assistant", "content": ""}]
        return ChatFormatterResponse(prompt=render(messages=messages).prompt, stop=[eos, bos])

    return format_tokenizer_config


def _named(name: str) -> Callable[..., ChatFormatterResponse]:
    def format_(messages: list[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
        prompt, stop = FORMATS[name](messages)
        return ChatFormatterResponse(prompt=prompt, stop=stop)

    format_.__name__ = format_.__qualname__ = "format_" + name.replace("-", "_").replace("llama_", "llama")
    format_.__doc__ = f"The {name!r} chat format (`Llama(chat_format={name!r})`): prompt text, BOS not included."
    return format_


format_llama2 = _named("llama-2")
format_llama3 = _named("llama-3")
format_alpaca = _named("alpaca")
format_qwen = _named("qwen")
format_vicuna = _named("vicuna")
format_zephyr = _named("zephyr")
format_chatml = _named("chatml")
format_mistral_instruct = _named("mistral-instruct")
format_gemma = _named("gemma")
format_phi3 = _named("phi3")
