"""llama-cpp-python's tests/test_llama_chat_format.py (upstream commit 3691546f, release 0.3.35),
ported to run against `llama` instead of `llama_cpp`; the code is written anew.

Upstream checks two formatters of its `llama_cpp.llama_chat_format` module against Mistral-7B's
chat template, with messages built from the TypedDicts of `llama_cpp.llama_types`:

- `test_mistral_instruct`: its named format "mistral-instruct", BOS put in front, renders as the
  template does under jinja2. llama.py has that format as `Llama(chat_format="mistral-instruct")`
  (the text made by `llama.chat_formats.format_messages`); both are checked here, the Llama one
  through the tokens its chat completion evaluates. Messages are plain dicts.
- `test_hf_tokenizer_config_str_to_chat_formatter`: a formatter made from a Hugging Face
  tokenizer_config.json: `llama.llama_chat_format.hf_tokenizer_config_to_chat_formatter`; the
  same facts hold for llama.py's own template path, `Llama.apply_chat_template` on a GGUF carrying
  that template, checked beside it.

The module layout upstream imports from (`llama_types`, `llama_chat_format`): the two tests at the
end.
"""

from __future__ import annotations

import jinja2
import pytest

import llama
from conftest import DATA, gguf_with_tensors, model_path
from llama.chat_formats import format_messages

# The chat template of Mistral-7B-Instruct's tokenizer_config.json (upstream's reference).
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
# The keys of that tokenizer_config.json a formatter reads: the template and its two special tokens.
MISTRAL_TOKENIZER_CONFIG = {"bos_token": "<s>", "eos_token": "</s>", "chat_template": MISTRAL_TEMPLATE}

CONVERSATION = [
    {"role": "user", "content": "Instruction"},
    {"role": "assistant", "content": "Model answer"},
    {"role": "user", "content": "Follow-up instruction"},
]
GREETING = [{"role": "user", "content": "Hello, world!"}]
# What a formatter made from the tokenizer config gives for GREETING: it appends an empty assistant
# turn to ask for an answer, and this template closes every assistant turn with EOS.
GREETING_PROMPT = "<s>[INST] Hello, world! [/INST]</s>"


def _jinja_reference(messages: list[dict]) -> str:
    return jinja2.Template(MISTRAL_TEMPLATE).render(messages=messages, bos_token="<s>", eos_token="</s>")


def test_mistral_instruct():
    reference = _jinja_reference(CONVERSATION)

    # The format's text; the BOS it lacks is the one tokenization adds.
    text, _stop = format_messages("mistral-instruct", CONVERSATION)
    assert "<s>" + text == reference

    # Through the public API: the chat completion evaluates exactly the reference's tokens.
    llm = llama.Llama(model_path("synth-tiny-q4_0.gguf"), n_ctx=128, n_threads=2, chat_format="mistral-instruct")
    out = llm.create_chat_completion(CONVERSATION, max_tokens=1, temperature=0.0)
    expected = llm.tokenize(reference.encode(), add_bos=False, special=True)
    assert out["usage"]["prompt_tokens"] == len(expected)
    assert llm.input_ids[: len(expected)].tolist() == expected


def test_hf_tokenizer_config_str_to_chat_formatter():
    from llama.llama_chat_format import hf_tokenizer_config_to_chat_formatter

    formatter = hf_tokenizer_config_to_chat_formatter(dict(MISTRAL_TOKENIZER_CONFIG))
    assert formatter(messages=GREETING).prompt == GREETING_PROMPT


def test_tokenizer_config_template_through_apply_chat_template(tmp_path):
    """The facts of the test above on llama.py's own path: the template stored in a GGUF (the llama
    SPM vocabulary, whose BOS/EOS are <s> and </s>) and rendered by `apply_chat_template`."""
    pytest.importorskip("gguf")
    dst = tmp_path / "spm-vocab-mistral-template.gguf"
    gguf_with_tensors(
        DATA / "vocab" / "ggml-vocab-llama-spm.gguf", dst, {}, lambda w: w.add_chat_template(MISTRAL_TEMPLATE)
    )

    vocab = llama.Llama(str(dst), vocab_only=True)
    with_empty_answer = [*GREETING, {"role": "assistant", "content": ""}]
    assert vocab.apply_chat_template(with_empty_answer) == GREETING_PROMPT
    assert _jinja_reference(with_empty_answer) == GREETING_PROMPT


def test_format_functions_are_importable():
    from llama.llama_chat_format import format_mistral_instruct

    response = format_mistral_instruct(messages=CONVERSATION)
    assert ("" if response.added_special else "<s>") + response.prompt == _jinja_reference(CONVERSATION)


def test_request_message_types_are_exported():
    from llama import ChatCompletionRequestUserMessage
    from llama.llama_types import ChatCompletionRequestAssistantMessage

    user = ChatCompletionRequestUserMessage(role="user", content="Instruction")
    answer = ChatCompletionRequestAssistantMessage(role="assistant", content="Model answer")
    assert user == CONVERSATION[0] and answer == CONVERSATION[1]
