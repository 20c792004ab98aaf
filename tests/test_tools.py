"""Tool calling (llama.tools + Llama.create_chat_completion(tools=...)) against independent references:

* responses and every streamed chunk validate as the official `openai` package's pydantic types;
* forced calls' arguments validate against the tool's schema with `jsonschema`;
* prompts with tools equal transformers' `render_jinja_template` (the renderer of
  `apply_chat_template(..., tools=...)`) on the models' own templates (tests/data/chat_templates,
  copied from llama.cpp's models/templates) when transformers is installed;
* each call syntax is parsed from texts as the formats' documentation writes them and from assistant
  turns the models' own templates render (the syntax the models were trained on), and every prefix of
  those texts streams to the same calls.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import llama
from conftest import DATA, model_path
from llama import _llama
from llama.tools import (
    FORMATS,
    GenericFormat,
    HermesFormat,
    Llama3Format,
    MistralFormat,
    ToolStream,
    check_tools,
    detect_format,
    template_messages,
)

TEMPLATES = DATA / "chat_templates"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search_flights",
        "description": "Search flights between two airports on a date",
        "parameters": {
            "type": "object",
            "properties": {
                "origin": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "destination": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
                "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
            },
            "required": ["origin", "destination", "date"],
            "additionalProperties": False,
        },
    },
}
TOOLS = [WEATHER, ADD, SEARCH]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def _template(name: str) -> str:
    return (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")


def _stream_calls(fmt, text: str, step: int = 1):
    """Feed every prefix (by `step` chars) of `text` to a ToolStream; return the content and calls
    the deltas concatenate to."""
    s = ToolStream(fmt)
    content = ""
    calls: list[dict] = []
    for n in [*range(0, len(text), step), len(text)]:
        for d in s.feed(text[:n], final=n == len(text)):
            content += d.get("content", "")
            for tc in d.get("tool_calls", []):
                if tc["index"] == len(calls):
                    assert tc["type"] == "function" and tc["id"]
                    calls.append({"name": tc["function"]["name"], "arguments": tc["function"]["arguments"]})
                else:
                    assert "name" not in tc["function"]
                    calls[tc["index"]]["arguments"] += tc["function"]["arguments"]
    return content, calls


def _check_parse(fmt, text: str, content: str, calls: list[tuple[str, dict]]):
    parsed = fmt.parse(text)
    assert parsed.content == content
    assert [(c.name, json.loads(c.arguments)) for c in parsed.calls] == calls
    # streamed, every prefix: the deltas concatenate to the same answer
    s_content, s_calls = _stream_calls(fmt, text)
    assert s_content == parsed.content
    assert s_calls == [{"name": c.name, "arguments": c.arguments} for c in parsed.calls]


# -- parsing, from the formats' documentation ----------------------------------------------------

# Qwen's function-calling guide (Hermes-style tool use), parallel calls as Qwen2.5 writes them.
QWEN_DOC = (
    "<tool_call>\n"
    '{"name": "get_current_temperature", "arguments": {"location": "San Francisco, CA, USA"}}\n'
    "</tool_call>\n"
    "<tool_call>\n"
    '{"name": "get_temperature_date", "arguments": {"location": "San Francisco, CA, USA", "date": "2024-10-01"}}\n'
    "</tool_call>"
)


def test_parse_hermes():
    fmt = HermesFormat()
    _check_parse(
        fmt,
        QWEN_DOC,
        "",
        [
            ("get_current_temperature", {"location": "San Francisco, CA, USA"}),
            ("get_temperature_date", {"location": "San Francisco, CA, USA", "date": "2024-10-01"}),
        ],
    )
    # Hermes 2 Pro's model card: the call after some text.
    text = (
        'Let me check.\n<tool_call>\n{"arguments": {"symbol": "TSLA"}, "name": "get_stock_fundamentals"}\n</tool_call>'
    )
    _check_parse(fmt, text, "Let me check.", [("get_stock_fundamentals", {"symbol": "TSLA"})])
    # Plain text, with a "<" that might have started a call.
    _check_parse(fmt, "1 < 2 and <tool is not a call", "1 < 2 and <tool is not a call", [])
    # A block that is not a call stays text.
    _check_parse(fmt, "<tool_call>oops</tool_call> done", "<tool_call>oops</tool_call> done", [])
    # Cut short (max_tokens): the call with what arguments were written.
    cut = HermesFormat().parse('<tool_call>\n{"name": "add", "arguments": {"a": 1, "b')
    assert [(c.name, c.arguments) for c in cut.calls] == [("add", '{"a": 1, "b')]


def test_parse_llama3():
    fmt = Llama3Format()
    # Meta's Llama 3.1 model card (JSON-based tool calling) and prompt-format docs.
    _check_parse(
        fmt,
        '{"name": "get_current_conditions", "parameters": {"location": "San Francisco, CA", "unit": "Fahrenheit"}}',
        "",
        [("get_current_conditions", {"location": "San Francisco, CA", "unit": "Fahrenheit"})],
    )
    _check_parse(
        fmt,
        '<|python_tag|>{"type": "function", "name": "trending_songs", "parameters": {"n": "10", "genre": "pop"}}',
        "",
        [("trending_songs", {"n": "10", "genre": "pop"})],
    )
    _check_parse(
        fmt,
        '{"name": "add", "parameters": {"a": 1, "b": 2}}; {"name": "add", "parameters": {"a": 3, "b": 4}}',
        "",
        [("add", {"a": 1, "b": 2}), ("add", {"a": 3, "b": 4})],
    )
    # JSON that is not a call, and text: content.
    _check_parse(fmt, '{"answer": 42}', '{"answer": 42}', [])
    _check_parse(fmt, "The weather is fine.", "The weather is fine.", [])


def test_parse_mistral():
    fmt = MistralFormat()
    # Mistral's function-calling docs (v3 tokenizer, a space after the control token).
    _check_parse(
        fmt,
        '[TOOL_CALLS] [{"name": "get_current_weather", '
        '"arguments": {"location": "Paris, France", "format": "celsius"}}]',
        "",
        [("get_current_weather", {"location": "Paris, France", "format": "celsius"})],
    )
    # As Mistral Nemo's template writes a turn: with ids, two calls.
    _check_parse(
        fmt,
        '[TOOL_CALLS][{"name": "add", "arguments": {"a": 1, "b": 2}, "id": "abcDEF123"}, '
        '{"name": "get_weather", "arguments": {"city": "Rome"}, "id": "ZZZ999aaa"}]',
        "",
        [("add", {"a": 1, "b": 2}), ("get_weather", {"city": "Rome"})],
    )
    _check_parse(fmt, "No tools needed [TOOL", "No tools needed [TOOL", [])


def test_parse_generic():
    fmt = GenericFormat()
    # llama.cpp's generic handler: {"tool_calls": [...]}, {"tool_call": {...}}, {"response": "..."}.
    p = fmt.parse('{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}')
    assert p.content == "" and [(c.name, json.loads(c.arguments)) for c in p.calls] == [("add", {"a": 1, "b": 2})]
    p = fmt.parse('{"tool_call": {"name": "get_weather", "arguments": {"city": "Oslo"}}}')
    assert [(c.name, json.loads(c.arguments)) for c in p.calls] == [("get_weather", {"city": "Oslo"})]
    p = fmt.parse('{"response": "Hello there"}')
    assert p.content == "Hello there" and p.calls == []
    assert fmt.parse("not json").content == "not json"
    _check_parse(
        fmt, '{"tool_calls": [{"name": "add", "arguments": {"a": 5, "b": 6}}]}', "", [("add", {"a": 5, "b": 6})]
    )


# -- the templates: detection, the turns they render parse back ----------------------------------


@pytest.mark.parametrize(
    "name,expected",
    [
        ("Qwen-Qwen2.5-7B-Instruct", "hermes"),
        ("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", "hermes"),
        ("meta-llama-Llama-3.1-8B-Instruct", "llama3"),
        ("meta-llama-Llama-3.2-3B-Instruct", "llama3"),
        ("mistralai-Mistral-Nemo-Instruct-2407", "mistral"),
        ("google-gemma-2-2b-it", "generic"),
    ],
)
def test_detect_format(name, expected):
    assert detect_format(_template(name)).name == expected
    assert detect_format(None).name == "generic"


CALLS = [
    {"id": "abcDEF123", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 40}'}},
    {"id": "xyz789XYZ", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Kyoto"}'}},
]


def _conversation(calls=CALLS):
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2 + 40, and the weather in Kyoto?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "abcDEF123", "name": "add", "content": "42"},
        {"role": "tool", "tool_call_id": "xyz789XYZ", "name": "get_weather", "content": '{"temp_c": 21}'},
    ]


def _render(template: str, messages, tools, add_generation_prompt=True, bos="<s>", eos="</s>"):
    extra = {"tools": tools} if tools is not None else None
    return _llama.render_chat_template(template, template_messages(messages), add_generation_prompt, bos, eos, extra)


@pytest.mark.parametrize(
    "name,opener,closer,one_call",
    [
        ("Qwen-Qwen2.5-7B-Instruct", "<|im_start|>assistant", "<|im_end|>", False),
        ("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", "<|im_start|>assistant", "<|im_end|>", False),
        ("mistralai-Mistral-Nemo-Instruct-2407", "[/INST]", "</s>", False),
        ("meta-llama-Llama-3.1-8B-Instruct", "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>", True),
    ],
)
def test_template_turns_parse_back(name, opener, closer, one_call):
    """The assistant turn each model's own template renders for tool calls is what its format parses."""
    template = _template(name)
    calls = CALLS[:1] if one_call else CALLS
    text = _render(template, _conversation(calls)[:3], [ADD, WEATHER], add_generation_prompt=False)
    turn = text[text.rindex(opener) + len(opener) :]
    turn = turn[: turn.index(closer)]
    fmt = detect_format(template)
    want = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]
    parsed = fmt.parse(turn.strip())
    assert [(c.name, json.loads(c.arguments)) for c in parsed.calls] == want, turn
    assert parsed.content == ""
    content, streamed = _stream_calls(fmt, turn.strip(), step=3)
    assert streamed == [{"name": c.name, "arguments": c.arguments} for c in parsed.calls]


def test_template_messages_parse_arguments():
    out = template_messages(_conversation())
    assert out[2]["content"] == "" and out[2]["tool_calls"][0]["function"]["arguments"] == {"a": 2, "b": 40}
    assert out[2]["tool_calls"][0]["id"] == "abcDEF123"
    legacy = template_messages(
        [{"role": "assistant", "content": None, "function_call": {"name": "add", "arguments": '{"a": 1}'}},
         {"role": "function", "name": "add", "content": "1"}]
    )  # fmt: skip
    assert legacy[0]["tool_calls"] == [{"type": "function", "function": {"name": "add", "arguments": {"a": 1}}}]
    assert legacy[1]["role"] == "tool"
    with pytest.raises(llama.InvalidArgumentError, match="not valid JSON"):
        bad = [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{"}}]}]
        template_messages(bad)


# -- rendering against transformers ------------------------------------------------------------


def _transformers_render(template, messages, tools, add_generation_prompt=True, bos="<s>", eos="</s>"):
    cu = pytest.importorskip("transformers.utils.chat_template_utils")
    # transformers gets the arguments as objects: what llama.cpp and we give the templates.
    parsed = json.loads(json.dumps(messages))
    for m in parsed:
        for c in m.get("tool_calls") or []:
            c["function"]["arguments"] = json.loads(c["function"]["arguments"])
        if m.get("content") is None:
            m["content"] = ""
    out = cu.render_jinja_template(
        conversations=[parsed],
        tools=tools,
        chat_template=template,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos,
        eos_token=eos,
    )
    return out[0][0] if isinstance(out, tuple) else out[0]


@pytest.mark.parametrize(
    "name",
    [
        "Qwen-Qwen2.5-7B-Instruct",
        "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use",
        "meta-llama-Llama-3.1-8B-Instruct",
        "meta-llama-Llama-3.2-3B-Instruct",
        "mistralai-Mistral-Nemo-Instruct-2407",
    ],
)
def test_render_with_tools_matches_transformers(name):
    template = _template(name)
    msgs = _conversation(CALLS[:1] if "llama" in name else CALLS)
    if "llama" in name:
        msgs = msgs[:4]
    for conv in (msgs[1:2], msgs):
        ours = _render(template, conv, TOOLS)
        theirs = _transformers_render(template, conv, TOOLS)
        assert ours == theirs


# -- the API, validated with openai's types -------------------------------------------------------


def _openai():
    return pytest.importorskip("openai.types.chat")


def test_argument_errors():
    m = llama.Llama(model_path("qwen2.5-coder-0.5b-q4_k_m.gguf"), vocab_only=True)
    msgs = [{"role": "user", "content": "hi"}]
    cases = [
        ({"tools": [{"type": "function"}]}, "function"),
        ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "type"),
        ({"tools": [{"type": "function", "function": {"description": "x"}}]}, "name"),
        ({"tools": {"type": "function"}}, "list"),
        ({"tools": [ADD, ADD]}, "second function named 'add'"),
        ({"tools": [ADD], "tool_choice": "sometimes"}, "sometimes"),
        ({"tools": [ADD], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "nope"),
        ({"tools": [ADD], "tool_choice": {"type": "function"}}, "name"),
        ({"tool_choice": "required"}, "needs tools"),
        ({"tools": [ADD], "functions": [ADD["function"]]}, "not both"),
        ({"functions": [ADD["function"]], "function_call": "maybe"}, "function_call"),
        ({"tools": [ADD], "tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format"),
    ]
    for kwargs, match in cases:
        with pytest.raises(llama.InvalidArgumentError, match=match):
            m.create_chat_completion(msgs, **kwargs)
    with pytest.raises(llama.InvalidArgumentError, match="parameters"):
        check_tools([{"type": "function", "function": {"name": "f", "parameters": [1]}}])


@pytest.fixture(scope="module")
def qwen():
    return llama.Llama(model_path("qwen2.5-coder-0.5b-q4_k_m.gguf"), n_ctx=2048, n_batch=512, verbose=False)


PROMPTS = [
    "What's the weather like in Paris right now?",
    "Please add 17 and 25 for me.",
    "Find me a flight from Boston (BOS) to Lisbon (LIS) on 2025-06-03 for two people.",
]


def _check_call(resp, allowed: set[str]):
    import jsonschema

    chat = _openai()
    chat.ChatCompletion.model_validate(resp)
    choice = resp["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    calls = choice["message"]["tool_calls"]
    assert len(calls) == 1 and calls[0]["id"].startswith("call_")
    fn = calls[0]["function"]
    assert fn["name"] in allowed
    args = json.loads(fn["arguments"])
    jsonschema.validate(args, SCHEMAS[fn["name"]])
    return fn["name"], fn["arguments"]


@pytest.mark.parametrize("temperature,seed", [(0.0, None), (0.8, 1), (0.8, 7)])
def test_required_and_named_calls_validate(qwen, temperature, seed):
    assert qwen.tool_format().name == "hermes"
    names = {t["function"]["name"] for t in TOOLS}
    for prompt in PROMPTS:
        msgs = [{"role": "user", "content": prompt}]
        r = qwen.create_chat_completion(
            msgs, tools=TOOLS, tool_choice="required", temperature=temperature, seed=seed, max_tokens=96
        )
        _check_call(r, names)
        for forced in ("add", "search_flights"):
            choice = {"type": "function", "function": {"name": forced}}
            r = qwen.create_chat_completion(
                msgs, tools=TOOLS, tool_choice=choice, temperature=temperature, seed=seed, max_tokens=96
            )
            assert _check_call(r, {forced})[0] == forced


def test_stream_equals_non_stream(qwen):
    chat = _openai()
    msgs = [{"role": "user", "content": PROMPTS[2]}]
    for tool_choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        kw = {"tools": TOOLS, "tool_choice": tool_choice, "temperature": 0.8, "seed": 11, "max_tokens": 96}
        whole = qwen.create_chat_completion(msgs, **kw)
        name, arguments = _check_call(whole, {t["function"]["name"] for t in TOOLS})
        chunks = list(qwen.create_chat_completion(msgs, stream=True, **kw))
        calls: dict[int, dict] = {}
        for c in chunks:
            chat.ChatCompletionChunk.model_validate(c)
            for tc in c["choices"][0]["delta"].get("tool_calls", []):
                if tc["index"] not in calls:
                    assert tc["id"].startswith("call_") and tc["type"] == "function"
                    calls[tc["index"]] = {"name": tc["function"]["name"], "arguments": tc["function"]["arguments"]}
                else:
                    calls[tc["index"]]["arguments"] += tc["function"]["arguments"]
            assert "content" not in c["choices"][0]["delta"]
        assert calls == {0: {"name": name, "arguments": arguments}}
        assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
        assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


def test_round_trip_with_tool_result(qwen):
    chat = _openai()
    msgs = [
        {"role": "user", "content": "What's the weather like in Paris right now?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 18, "unit": "celsius", "sky": "sunny"}'},
    ]
    prompt = qwen.apply_chat_template(msgs, tools=TOOLS)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in prompt
    assert '<|im_start|>user\n<tool_response>\n{"temperature": 18' in prompt
    try:
        theirs = _transformers_render(qwen._model.chat_template(), msgs, TOOLS, bos="", eos="<|im_end|>")
    except pytest.skip.Exception:
        theirs = None
    if theirs is not None:
        assert prompt == theirs
    r = qwen.create_chat_completion(msgs, tools=TOOLS, temperature=0, max_tokens=48)
    chat.ChatCompletion.model_validate(r)
    choice = r["choices"][0]
    assert choice["finish_reason"] in ("stop", "length")
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"].strip()
    assert "tool_calls" not in choice["message"]
    assert "18" in choice["message"]["content"] or "sunny" in choice["message"]["content"].lower()


def test_tool_choice_none_and_auto_shapes(qwen):
    chat = _openai()
    msgs = [{"role": "user", "content": "Say hello."}]
    for tool_choice in ("none", "auto"):
        r = qwen.create_chat_completion(msgs, tools=TOOLS, tool_choice=tool_choice, temperature=0, max_tokens=24)
        chat.ChatCompletion.model_validate(r)
        if tool_choice == "none":
            assert "tool_calls" not in r["choices"][0]["message"]
        chunks = list(
            qwen.create_chat_completion(
                msgs, tools=TOOLS, tool_choice=tool_choice, temperature=0, max_tokens=24, stream=True
            )
        )
        for c in chunks:
            chat.ChatCompletionChunk.model_validate(c)
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert text == (r["choices"][0]["message"]["content"] or "")


def test_legacy_functions(qwen):
    chat = _openai()
    msgs = [{"role": "user", "content": PROMPTS[1]}]
    kw = {"functions": [t["function"] for t in TOOLS], "function_call": {"name": "add"}, "temperature": 0}
    r = qwen.create_chat_completion(msgs, max_tokens=64, **kw)
    chat.ChatCompletion.model_validate(r)
    choice = r["choices"][0]
    assert choice["finish_reason"] == "function_call"
    fc = choice["message"]["function_call"]
    assert fc["name"] == "add"
    import jsonschema

    jsonschema.validate(json.loads(fc["arguments"]), SCHEMAS["add"])
    chunks = list(qwen.create_chat_completion(msgs, max_tokens=64, stream=True, **kw))
    name, args = None, ""
    for c in chunks:
        chat.ChatCompletionChunk.model_validate(c)
        d = c["choices"][0]["delta"].get("function_call")
        if d:
            name = d.get("name", name)
            args += d.get("arguments", "")
    assert (name, args) == (fc["name"], fc["arguments"])
    assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"


def test_generic_format_on_a_template_without_tools():
    import jsonschema

    chat = _openai()
    m = llama.Llama(model_path("smollm2-135m-instruct-q4_1.gguf"), n_ctx=2048, verbose=False)
    fmt = m.tool_format()
    assert fmt.name == "generic"
    msgs = [{"role": "user", "content": PROMPTS[1]}]
    prompt = m.apply_chat_template(fmt.prepare(template_messages(msgs), check_tools(TOOLS))[0])
    assert "Respond in JSON format" in prompt and '"name": "search_flights"' in prompt
    for seed in (1, 2):
        r = m.create_chat_completion(
            msgs, tools=TOOLS, tool_choice="required", temperature=0.8, seed=seed, max_tokens=128
        )
        chat.ChatCompletion.model_validate(r)
        call = r["choices"][0]["message"]["tool_calls"][0]["function"]
        jsonschema.validate(json.loads(call["arguments"]), SCHEMAS[call["name"]])
    # a past call and its result render for a template that knows nothing of tools
    text = m.apply_chat_template(GenericFormat().prepare(template_messages(_conversation()), check_tools(TOOLS))[0])
    assert '{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 40}}' in text
    assert '{"tool_response": {"tool": "add", "content": "42"}}' in text


def test_grammars_compile_for_every_format():
    tools = check_tools(TOOLS)
    for cls in FORMATS.values():
        for parallel in (False, True):
            for auto in (False, True):
                lark = cls(lambda s: 5 if s == "[TOOL_CALLS]" else None).lark(tools, parallel, auto)
                if lark is not None:
                    _llama.Grammar.from_lark(lark)
    assert re.search(r"<\[5\]>", MistralFormat(lambda s: 5 if s == "[TOOL_CALLS]" else None).lark(tools, False))
    assert Path(TEMPLATES / "README.md").exists()
