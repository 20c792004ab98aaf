"""Tool (function) calling for `Llama.create_chat_completion`: OpenAI's ``tools`` / ``tool_choice``
(and the legacy ``functions`` / ``function_call``) over the call syntax the model was trained on.

The syntax is read off the model's chat template, as llama.cpp's common chat code does:

* ``hermes``: Hermes 2 Pro / Qwen 2.5 / Qwen 3 — ``<tool_call>\\n{"name": …, "arguments": {…}}\\n</tool_call>``
  (Qwen 2.5 has ``<tool_call>`` / ``</tool_call>`` as single tokens);
* ``llama3``: Llama 3.1-3.3 — a JSON object ``{"name": …, "parameters": {…}}`` at the start of the
  answer, optionally after ``<|python_tag|>``;
* ``mistral``: Mistral Nemo and later — ``[TOOL_CALLS][{"name": …, "arguments": {…}, "id": …}, …]``;
* ``generic``: any other template (one that knows nothing of tools): the tools are described in a
  system message and the answer is a JSON object, ``{"tool_calls": [{"name", "arguments"}]}`` or
  ``{"response": "…"}``, as llama.cpp's generic handler asks for (and constrains the answer to).

``tool_choice="required"`` or a named function compiles a grammar (llguidance's Lark with inline
``%json`` schemas) over that syntax: the answer is a call whose name is one of the allowed tools and
whose arguments follow that tool's ``parameters`` schema. ``"auto"`` leaves the text free and parses
the calls the model writes; ``"none"`` returns text only.

`ToolFormat.parse` works on partial text as well (``partial=True``): the content it returns holds back
anything that may still become a call, and a call's ``arguments`` grow by appending only, so the
streamed deltas are the differences between successive parses and concatenate to the final parse.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArgumentError

#: llama.cpp's json-schema-to-grammar whitespace (as the core's `from_json_schema` uses): none, a
#: space, or newlines and a bounded indent, so a sampled call cannot spend its budget on spaces.
_JSON_WS = r"(?:\x20|\n{1,2}[\x20\t]{0,20})"

_DECODER = json.JSONDecoder()


# -- the request: tools and tool_choice ----------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    """One function the model may call: its name, description and the JSON schema of its arguments."""

    name: str
    description: str | None
    parameters: dict[str, Any]
    #: the caller's ``{"type": "function", "function": {...}}``, what the chat template is given
    raw: dict[str, Any]


@dataclass(frozen=True)
class ToolChoice:
    """``mode`` "none" (text only), "auto" (calls parsed if written) or "required" (a call is forced,
    naming one of ``names``)."""

    mode: str
    names: tuple[str, ...]


def check_tools(tools: Any) -> list[Tool]:
    """OpenAI's ``tools``: a list of ``{"type": "function", "function": {"name", "description"?,
    "parameters"?}}``. Anything else raises InvalidArgumentError naming the problem."""
    if tools is None:
        return []
    if not isinstance(tools, (list, tuple)):
        raise InvalidArgumentError(f"tools must be a list of tool objects, got {type(tools).__name__}")
    out: list[Tool] = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type") != "function":
            raise InvalidArgumentError(f'tools[{i}] must be {{"type": "function", "function": {{...}}}} (got {t!r})')
        fn = t.get("function")
        if not isinstance(fn, dict):
            raise InvalidArgumentError(f'tools[{i}] needs a "function" object with a "name"')
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"tools[{i}].function.name must be a non-empty string (got {name!r})")
        if any(o.name == name for o in out):
            raise InvalidArgumentError(f"tools[{i}]: a second function named {name!r}")
        params = fn.get("parameters")
        if params is None:
            params = {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise InvalidArgumentError(f"tools[{i}].function.parameters must be a JSON schema object")
        desc = fn.get("description")
        if desc is not None and not isinstance(desc, str):
            raise InvalidArgumentError(f"tools[{i}].function.description must be a string")
        out.append(Tool(name=name, description=desc, parameters=params, raw=t))
    return out


def check_tool_choice(tool_choice: Any, tools: Sequence[Tool]) -> ToolChoice:
    """OpenAI's ``tool_choice``: "none", "auto", "required" or ``{"type": "function", "function":
    {"name": X}}``; None means "auto" with tools and "none" without."""
    names = tuple(t.name for t in tools)
    if tool_choice is None:
        return ToolChoice("auto" if tools else "none", names)
    if not tools:
        raise InvalidArgumentError("tool_choice needs tools")
    if isinstance(tool_choice, str):
        if tool_choice not in ("none", "auto", "required"):
            raise InvalidArgumentError(f'tool_choice {tool_choice!r} is not "none", "auto", "required" or a function')
        return ToolChoice(tool_choice, names)
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        fn = tool_choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str):
            raise InvalidArgumentError(f'tool_choice {tool_choice!r} needs "function": {{"name": ...}}')
        if name not in names:
            raise InvalidArgumentError(f"tool_choice names function {name!r}, which is not among the tools {names}")
        return ToolChoice("required", (name,))
    raise InvalidArgumentError(
        f'tool_choice must be "none", "auto", "required" or {{"type": "function", "function": {{"name": ...}}}}'
        f" (got {tool_choice!r})"
    )


def legacy_tools(functions: Any) -> list[dict[str, Any]] | None:
    """The legacy ``functions`` list as ``tools``."""
    if functions is None:
        return None
    if not isinstance(functions, (list, tuple)):
        raise InvalidArgumentError(f"functions must be a list of function objects, got {type(functions).__name__}")
    return [{"type": "function", "function": f} for f in functions]


def legacy_tool_choice(function_call: Any) -> Any:
    """The legacy ``function_call`` ("none", "auto" or ``{"name": X}``) as a ``tool_choice``."""
    if function_call is None or function_call in ("none", "auto"):
        return function_call
    if isinstance(function_call, dict) and isinstance(function_call.get("name"), str):
        return {"type": "function", "function": {"name": function_call["name"]}}
    raise InvalidArgumentError(f'function_call must be "none", "auto" or {{"name": ...}} (got {function_call!r})')


# -- messages for the template -------------------------------------------------------------------


def template_messages(messages: Any) -> list[dict[str, Any]]:
    """Messages as chat templates expect them (what llama.cpp's common chat code feeds them):
    content parts joined, a missing content "", an assistant's ``tool_calls[].function.arguments``
    given as JSON text parsed to an object (Qwen / Hermes / Mistral templates print it with
    ``tojson``), and the legacy shapes (``function_call``, role "function") as tool calls / results."""
    if not isinstance(messages, (list, tuple)):
        raise InvalidArgumentError(f"messages must be a list, got {type(messages).__name__}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise InvalidArgumentError(f"chat message {m!r} needs a 'role'")
        content = m.get("content")
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        msg = {**m, "content": "" if content is None else content}
        if msg["role"] == "function":  # legacy function result
            msg["role"] = "tool"
        calls = m.get("tool_calls")
        if calls is None and isinstance(m.get("function_call"), dict):
            calls = [{"type": "function", "function": m["function_call"]}]
            del msg["function_call"]
        if calls is not None:
            if not isinstance(calls, list):
                raise InvalidArgumentError(f"messages[{i}].tool_calls must be a list")
            msg["tool_calls"] = [_template_call(c, i, j) for j, c in enumerate(calls)]
        out.append(msg)
    return out


def _template_call(call: Any, i: int, j: int) -> dict[str, Any]:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise InvalidArgumentError(f'messages[{i}].tool_calls[{j}] needs a "function" object')
    fn = dict(call["function"])
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            fn["arguments"] = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as err:
            raise InvalidArgumentError(
                f"messages[{i}].tool_calls[{j}].function.arguments is not valid JSON: {err}"
            ) from err
    return {**call, "function": fn}


# -- parsed answers ------------------------------------------------------------------------------


@dataclass
class ToolCall:
    """A call the model wrote: the function name and its arguments as the JSON text the model wrote
    (an unfinished object when the generation was cut short)."""

    name: str
    arguments: str


@dataclass
class Parsed:
    content: str
    calls: list[ToolCall]


#: The opening of a JSON call object up to its arguments' value: name first, the arguments under
#: "arguments" or "parameters" (Llama 3), an optional leading "type": "function" (Llama 3.x).
_HEAD = re.compile(
    r'\s*\{\s*(?:"type"\s*:\s*"function"\s*,\s*)?"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*'
)


def _call_at(s: str, pos: int) -> tuple[ToolCall, int | None] | None:
    """The call object starting at ``pos`` (after whitespace): the call and the index after its
    arguments' value (None: the value is unfinished, so the rest of ``s`` is arguments)."""
    m = _HEAD.match(s, pos)
    if m is None:
        return None
    name = json.loads('"' + m.group(1) + '"')
    start = m.end()
    try:
        _, end = _DECODER.raw_decode(s, start)
    except json.JSONDecodeError:
        return ToolCall(name, s[start:]), None
    return ToolCall(name, s[start:end]), end


_AFTER_ARGS = re.compile(r'\s*(?:,\s*"id"\s*:\s*"(?:[^"\\]|\\.)*"\s*)?\}')


def _close_call(s: str, end: int) -> int | None:
    """After a call's arguments: an optional "id" (Mistral), then the object's "}"."""
    m = _AFTER_ARGS.match(s, end)
    return m.end() if m else None


def _marker_prefix_len(text: str, marker: str) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of ``marker`` (held back)."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


def _whole_json_call(block: str) -> ToolCall | None:
    """A finished call block in another key order: any object with a string "name" and object
    "arguments" / "parameters"."""
    try:
        obj = json.loads(block)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters"))
    if isinstance(args, str):
        return ToolCall(obj["name"], args)
    if not isinstance(args, dict):
        return None
    return ToolCall(obj["name"], json.dumps(args, ensure_ascii=False))


# -- the formats ---------------------------------------------------------------------------------


def _lark_str(s: str) -> str:
    return json.dumps(s)


def _call_schema(tool: Tool, args_key: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, args_key: tool.parameters},
        "required": ["name", args_key],
        "additionalProperties": False,
    }


def _json_rule(schema: dict[str, Any]) -> str:
    return "%json " + json.dumps({**schema, "x-guidance": {"whitespace_pattern": _JSON_WS}})


def _one_of_calls(tools: Sequence[Tool], args_key: str) -> list[str]:
    """Lark rules ``call_body: c0 | c1 …`` with one ``%json`` rule per tool."""
    rules = ["call_body: " + " | ".join(f"c{i}" for i in range(len(tools)))]
    rules += [f"c{i}: {_json_rule(_call_schema(t, args_key))}" for i, t in enumerate(tools)]
    return rules


class ToolFormat:
    """One model family's tool-call syntax: how tools reach the template, the grammar of a forced
    call, and the parser of the answer."""

    name = "?"
    #: texts that open calls; if one is a single control token, generated text keeps it
    markers: tuple[str, ...] = ()

    def __init__(self, special_token: Callable[[str], int | None] = lambda s: None):
        #: the id of ``text`` when it is one control token (written ``<[id]>`` in Lark), else None
        self._special_token = special_token

    def _lit(self, text: str) -> str:
        tok = self._special_token(text)
        return f"<[{tok}]>" if tok is not None else _lark_str(text)

    def prepare(
        self, messages: list[dict[str, Any]], tools: Sequence[Tool]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """The messages and the ``tools`` variable the chat template renders."""
        return messages, [t.raw for t in tools]

    def lark(self, tools: Sequence[Tool], parallel: bool, auto: bool = False) -> str | None:
        """The grammar of an answer of one call (several with ``parallel``) to one of ``tools``; with
        ``auto`` one that also allows a plain answer (None: no constraint)."""
        raise NotImplementedError

    def parse(self, text: str, partial: bool = False) -> Parsed:
        raise NotImplementedError

    def new_id(self) -> str:
        return "call_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))


class HermesFormat(ToolFormat):
    """``<tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>``, repeated for parallel calls;
    text may come before (the content)."""

    name = "hermes"
    OPEN, CLOSE = "<tool_call>", "</tool_call>"
    markers = (OPEN, CLOSE)

    def lark(self, tools: Sequence[Tool], parallel: bool, auto: bool = False) -> str | None:
        if auto:
            return None
        start = 'start: call ("\\n" call)*' if parallel else "start: call"
        call = f'call: {self._lit(self.OPEN)} "\\n" call_body "\\n" {self._lit(self.CLOSE)}'
        return "\n".join([start, call, *_one_of_calls(tools, "arguments")])

    def parse(self, text: str, partial: bool = False) -> Parsed:
        content: list[str] = []
        calls: list[ToolCall] = []
        pos = 0
        while True:
            i = text.find(self.OPEN, pos)
            if i < 0:
                tail = text[pos:]
                if partial:
                    tail = tail[: len(tail) - _marker_prefix_len(tail, self.OPEN)]
                content.append(tail)
                break
            content.append(text[pos:i])
            body = i + len(self.OPEN)
            j = text.find(self.CLOSE, body)
            block = text[body : j if j >= 0 else len(text)]
            found = _call_at(block, 0)
            if found is not None:
                calls.append(found[0])
            elif j >= 0 or not partial:
                # A finished block in another key order, else not a call: its text is content.
                whole = _whole_json_call(block)
                if whole is not None:
                    calls.append(whole)
                else:
                    content.append(text[i : j + len(self.CLOSE)] if j >= 0 else text[i:])
            if j < 0:
                break
            pos = j + len(self.CLOSE)
        return Parsed("".join(content).strip(), calls)


class MistralFormat(ToolFormat):
    """``[TOOL_CALLS][{"name": "f", "arguments": {...}, "id": "abcDEF123"}, ...]`` (``[TOOL_CALLS]``
    a control token); call ids are 9 letters and digits, as the template demands."""

    name = "mistral"
    MARKER = "[TOOL_CALLS]"
    markers = (MARKER,)

    def lark(self, tools: Sequence[Tool], parallel: bool, auto: bool = False) -> str | None:
        if auto:
            return None
        calls = 'call_body (", " call_body)*' if parallel else "call_body"
        return "\n".join([f'start: {self._lit(self.MARKER)} "[" {calls} "]"', *_one_of_calls(tools, "arguments")])

    def parse(self, text: str, partial: bool = False) -> Parsed:
        content: list[str] = []
        calls: list[ToolCall] = []
        pos = 0
        while True:
            i = text.find(self.MARKER, pos)
            if i < 0:
                tail = text[pos:]
                if partial:
                    tail = tail[: len(tail) - _marker_prefix_len(tail, self.MARKER)]
                content.append(tail)
                break
            content.append(text[pos:i])
            k = i + len(self.MARKER)
            m = re.compile(r"\s*\[").match(text, k)
            if m is None:
                if partial and not text[k:].strip():
                    break
                content.append(text[i:k])  # a marker not followed by a list: text
                pos = k
                continue
            k = m.end()
            end = self._calls(text, k, calls)
            if end is None:
                break  # unfinished (or malformed) list: the rest belongs to it
            pos = end
        return Parsed("".join(content).strip(), calls)

    @staticmethod
    def _calls(s: str, k: int, calls: list[ToolCall]) -> int | None:
        """The call objects of a list from ``k``; the index after its "]", None if unfinished."""
        while True:
            found = _call_at(s, k)
            if found is None:
                m = re.compile(r"\s*\]").match(s, k)
                return m.end() if m else None
            call, end = found
            calls.append(call)
            if end is None:
                return None
            close = _close_call(s, end)
            if close is None:
                return None
            m = re.compile(r"\s*(,|\])").match(s, close)
            if m is None:
                return None
            if m.group(1) == "]":
                return m.end()
            k = m.end()

    def new_id(self) -> str:
        return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(9))


def _head_prefix(t: str) -> bool:
    """Could ``t`` still grow into the opening of a Llama 3 call object? (A JSON-token walk over
    ``{ ["type": "function",] "name": "<any>", "parameters"|"arguments": ``.)"""
    for with_type in (False, True):
        toks: list[Any] = ["{"]
        if with_type:
            toks += ['"type"', ":", '"function"', ","]
        toks += ['"name"', ":", None, ",", ('"parameters"', '"arguments"'), ":"]
        k = 0
        ok = True
        for tok in toks:
            while k < len(t) and t[k] in " \t\r\n":
                k += 1
            rest = t[k:]
            if not rest:
                return True
            if tok is None:  # a JSON string
                if rest[0] != '"':
                    ok = False
                    break
                j = 1
                while j < len(rest) and rest[j] != '"':
                    j += 2 if rest[j] == "\\" else 1
                if j >= len(rest):
                    return True
                k += j + 1
                continue
            alts = tok if isinstance(tok, tuple) else (tok,)
            hit = next((a for a in alts if rest.startswith(a)), None)
            if hit is None:
                if any(a.startswith(rest) for a in alts):
                    return True
                ok = False
                break
            k += len(hit)
        if ok:
            return True
    return False


class Llama3Format(ToolFormat):
    """Llama 3.1-3.3's JSON tool calls: ``{"name": "f", "parameters": {...}}`` at the start of the
    answer (optionally after ``<|python_tag|>``; several separated by ";"), then any text."""

    name = "llama3"
    TAG = "<|python_tag|>"
    markers = (TAG,)

    def lark(self, tools: Sequence[Tool], parallel: bool, auto: bool = False) -> str | None:
        if auto:
            return None
        start = 'start: call_body ("; " call_body)*' if parallel else "start: call_body"
        return "\n".join([start, *_one_of_calls(tools, "parameters")])

    def parse(self, text: str, partial: bool = False) -> Parsed:
        calls: list[ToolCall] = []
        k = len(text) - len(text.lstrip())
        if text.startswith(self.TAG, k):
            k += len(self.TAG)
        elif partial and self.TAG.startswith(text[k:]) and text[k:]:
            return Parsed("", [])
        while True:
            found = _call_at(text, k)
            if found is None:
                if partial and _head_prefix(text[k:]):
                    return Parsed("", calls)  # may still become a call
                break
            call, end = found
            calls.append(call)
            close = None if end is None else _close_call(text, end)
            if close is None:
                return Parsed("", calls)
            k = close
            m = re.compile(r"\s*;\s*").match(text, k)
            if m is None:
                break
            if partial and m.end() == len(text):
                return Parsed("", calls)
            k = m.end()
        rest = text[k:] if calls else text
        return Parsed(rest.strip(), calls)


_GENERIC_PROMPT = (
    "You can call any of the following tools to satisfy the user's requests: {tools}\n\n"
    "Respond in JSON format, either with `tool_calls` (a request to call tools) or with `response` "
    "(a reply to the user's request), for example:\n"
    '{{"tool_calls": [{{"name": "<tool name>", "arguments": {{<the arguments>}}}}]}}\n'
    'or\n{{"response": "<your reply>"}}'
)


class GenericFormat(ToolFormat):
    """For templates without tool support: the tools in a system message, the answer a JSON object
    (``{"tool_calls": [...]}`` or ``{"response": "..."}``), constrained by a grammar whenever tools
    are on (as llama.cpp's generic handler). Streamed answers come whole at the end (the JSON is
    only read once finished)."""

    name = "generic"

    def prepare(
        self, messages: list[dict[str, Any]], tools: Sequence[Tool]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        described = [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools]
        prompt = _GENERIC_PROMPT.format(tools=json.dumps(described, indent=2, ensure_ascii=False))
        out: list[dict[str, Any]] = []
        names: dict[str, str] = {}  # tool_call id → function name, for the results
        for m in messages:
            if m["role"] == "assistant" and m.get("tool_calls"):
                answer = []
                for c in m["tool_calls"]:
                    fn = c["function"]
                    names[str(c.get("id"))] = fn.get("name", "")
                    answer.append({"name": fn.get("name"), "arguments": fn.get("arguments", {})})
                rest = {k: v for k, v in m.items() if k != "tool_calls"}
                out.append({**rest, "content": json.dumps({"tool_calls": answer}, ensure_ascii=False)})
            elif m["role"] == "tool":
                name = m.get("name") or names.get(str(m.get("tool_call_id")), "")
                result = {"tool": name, "content": m.get("content", "")}
                out.append({"role": "user", "content": json.dumps({"tool_response": result}, ensure_ascii=False)})
            else:
                out.append(m)
        if out and out[0]["role"] == "system":
            first = out[0]
            out[0] = {**first, "content": f"{first['content']}\n\n{prompt}" if first["content"] else prompt}
        else:
            out.insert(0, {"role": "system", "content": prompt})
        return out, None

    def _schema(self, tools: Sequence[Tool], parallel: bool, auto: bool) -> dict[str, Any]:
        calls: dict[str, Any] = {
            "type": "array",
            "items": {"anyOf": [_call_schema(t, "arguments") for t in tools]},
            "minItems": 1,
        }
        if not parallel:
            calls["maxItems"] = 1
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {"tool_calls": calls},
            "required": ["tool_calls"],
            "additionalProperties": False,
        }
        if auto:
            response = {
                "type": "object",
                "properties": {"response": {"type": "string"}},
                "required": ["response"],
                "additionalProperties": False,
            }
            schema = {"anyOf": [schema, response]}
        return schema

    def lark(self, tools: Sequence[Tool], parallel: bool, auto: bool = False) -> str | None:
        return "start: answer\nanswer: " + _json_rule(self._schema(tools, parallel, auto))

    def parse(self, text: str, partial: bool = False) -> Parsed:
        if partial:
            return Parsed("", [])
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return Parsed(text.strip(), [])
        if not isinstance(obj, dict):
            return Parsed(text.strip(), [])
        raw = obj.get("tool_calls")
        if raw is None and isinstance(obj.get("tool_call"), dict):
            raw = [obj["tool_call"]]
        calls = []
        if isinstance(raw, list):
            for c in raw:
                if isinstance(c, dict) and isinstance(c.get("name"), str):
                    args = c.get("arguments", {})
                    text_args = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
                    calls.append(ToolCall(c["name"], text_args))
        response = obj.get("response")
        if isinstance(response, str):
            return Parsed(response, calls)
        if calls:
            return Parsed("", calls)
        return Parsed(text.strip(), [])


FORMATS: dict[str, type[ToolFormat]] = {f.name: f for f in (HermesFormat, Llama3Format, MistralFormat, GenericFormat)}


def detect_format(template: str | None, special_token: Callable[[str], int | None] = lambda s: None) -> ToolFormat:
    """The call syntax a chat template was written for (llama.cpp's detection: the markers the
    template prints); ``special_token`` tells which markers are single control tokens."""
    src = template or ""
    if "<tool_call>" in src:
        return HermesFormat(special_token)
    if "[TOOL_CALLS]" in src:
        return MistralFormat(special_token)
    if "<|start_header_id|>ipython<|end_header_id|>" in src or "<|python_tag|>" in src:
        return Llama3Format(special_token)
    return GenericFormat(special_token)


# -- responses -----------------------------------------------------------------------------------


class ToolStream:
    """The deltas of a streamed answer: feed the text so far; get OpenAI delta dicts whose
    concatenation is the final parse (``content`` pieces, then per call a first delta with index, id,
    type, name and the arguments so far, then argument pieces)."""

    def __init__(self, fmt: ToolFormat, legacy: bool = False):
        self.fmt = fmt
        self.legacy = legacy
        self.content = ""
        self.sent: list[list[str]] = []  # per call: [id, name, arguments sent]

    def feed(self, text: str, final: bool) -> list[dict[str, Any]]:
        parsed = self.fmt.parse(text, partial=not final)
        deltas: list[dict[str, Any]] = []
        if parsed.content.startswith(self.content) and len(parsed.content) > len(self.content):
            deltas.append({"content": parsed.content[len(self.content) :]})
            self.content = parsed.content
        calls = parsed.calls[:1] if self.legacy else parsed.calls
        for k, call in enumerate(calls):
            if k == len(self.sent):
                self.sent.append([self.fmt.new_id(), call.name, call.arguments])
                if self.legacy:
                    deltas.append({"function_call": {"name": call.name, "arguments": call.arguments}})
                else:
                    fn = {"name": call.name, "arguments": call.arguments}
                    deltas.append(
                        {"tool_calls": [{"index": k, "id": self.sent[k][0], "type": "function", "function": fn}]}
                    )
                continue
            sent = self.sent[k][2]
            if call.arguments.startswith(sent) and len(call.arguments) > len(sent):
                piece = call.arguments[len(sent) :]
                self.sent[k][2] = call.arguments
                if self.legacy:
                    deltas.append({"function_call": {"arguments": piece}})
                else:
                    deltas.append({"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
        return deltas


def message(parsed: Parsed, fmt: ToolFormat, legacy: bool) -> dict[str, Any]:
    """The assistant message of a parsed answer in OpenAI's shape."""
    msg: dict[str, Any] = {"role": "assistant", "content": parsed.content or None}
    if legacy:
        if parsed.calls:
            c = parsed.calls[0]
            msg["function_call"] = {"name": c.name, "arguments": c.arguments}
        return msg
    if parsed.calls:
        msg["tool_calls"] = [
            {"id": fmt.new_id(), "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in parsed.calls
        ]
    return msg


__all__ = [
    "Tool",
    "ToolChoice",
    "ToolCall",
    "Parsed",
    "ToolFormat",
    "HermesFormat",
    "Llama3Format",
    "MistralFormat",
    "GenericFormat",
    "FORMATS",
    "detect_format",
    "check_tools",
    "check_tool_choice",
]
