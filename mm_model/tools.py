"""Tool calls in Kimi K2's format: declaring tools, rendering past calls, parsing and streaming new ones.

The model writes its calls after its answer text, in one section:

    <|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>{json}
    <|tool_call_end|>...<|tool_calls_section_end|>

(no line breaks). Tools are declared to it in a `tool_declare` system turn holding the OpenAI tools
list as JSON; results come back in `tool` turns headed `## Return of ID`. Calls come out OpenAI-shaped:
`{"id": "functions.NAME:IDX", "type": "function", "function": {"name": NAME, "arguments": "{json}"}}`.

As vLLM's and SGLang's Kimi K2 parsers do, the arguments are passed on as the model wrote them (not
checked as JSON) and the name is not checked against the declared tools: the caller that runs the
tool sees exactly what the model asked for, and decides (`check_calls` says what is wrong with each).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mm_model.tool_schema import Unsupported, typescript
from vision.errors import InputError

SECTION_BEGIN = "<|tool_calls_section_begin|>"
SECTION_END = "<|tool_calls_section_end|>"
CALL_BEGIN = "<|tool_call_begin|>"
ARGUMENT_BEGIN = "<|tool_call_argument_begin|>"
CALL_END = "<|tool_call_end|>"
TOOL_TOKENS = (
    SECTION_BEGIN,
    SECTION_END,
    CALL_BEGIN,
    ARGUMENT_BEGIN,
    CALL_END,
)  # special tokens in the release

# As vLLM's kimi_k2 parser reads a call: a `NAME:IDX` header (else the call is dropped), raw arguments.
_CALL = re.compile(
    re.escape(CALL_BEGIN) + r"\s*(?P<id>[^<]+:\d+)\s*" + re.escape(ARGUMENT_BEGIN) + r"\s*(?P<args>.*?)\s*"
    + re.escape(CALL_END), re.DOTALL,
)  # fmt: skip
_HEADER = re.compile(r"[^<]+:\d+")


class ToolError(InputError):
    """A tools list, a tool_choice or a past tool call is malformed."""


# ---- declaring ------------------------------------------------------------------------------------


def check_tools(tools: Any) -> list[dict[str, Any]]:
    """The OpenAI tools list, checked: each `{"type": "function", "function": {"name": ..., ...}}`."""
    if not isinstance(tools, (list, tuple)) or not tools:
        raise ToolError(
            f"tools must be a non-empty list of {{'type': 'function', 'function': {{...}}}}, got {tools!r:.80}"
        )
    names = set()
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type", "function") != "function"
            or not isinstance(fn, dict)
        ):
            raise ToolError(
                f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}, got {tool!r:.80}"
            )
        name = fn.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", name):
            raise ToolError(
                f"tools[{i}].function.name must be 1-64 letters, digits, '_', '.' or '-', got {name!r}"
            )
        if name in names:
            raise ToolError(f"tools[{i}]: the tool name {name!r} is declared twice")
        names.add(name)
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise ToolError(
                f"tools[{i}].function.parameters must be a JSON schema object, got {params!r:.80}"
            )
    return list(tools)


def declare(tools: Sequence[dict[str, Any]]) -> str:
    """The `tool_declare` system turn for `tools`: in TypeScript style as K2.5's tokenizer writes them
    for its template (`tool_schema`), or where that cannot express a schema, the template's own
    fallback, the tools' compact JSON."""
    try:
        body = typescript(tools)
    except Unsupported:
        body = ""
    body = body or json.dumps(list(tools), separators=(",", ":"), ensure_ascii=False)
    return f"<|im_system|>tool_declare<|im_middle|>{body}<|im_end|>"


def check_tool_choice(tool_choice: Any, tools: Sequence[dict[str, Any]] | None) -> str | None:
    """ "auto" / "none" / "required", or the name of the one function to call (OpenAI's named form)."""
    if tool_choice is None:
        return "auto" if tools else "none"
    if isinstance(tool_choice, str):
        if tool_choice not in ("auto", "none", "required"):
            raise ToolError(
                f"tool_choice must be 'auto', 'none', 'required' or a named function, got {tool_choice!r}"
            )
        if tool_choice == "required" and not tools:
            raise ToolError("tool_choice 'required' needs tools")
        return tool_choice
    fn = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str):
        raise ToolError(f"tool_choice must be a string or {{'type': 'function', 'function': {{'name': ...}}}}, "
                        f"got {tool_choice!r:.80}")  # fmt: skip
    declared = [t["function"]["name"] for t in tools or ()]
    if name not in declared:
        raise ToolError(f"tool_choice names the function {name!r}, which is not among the tools {declared}")
    return name


def forced_prefix(choice: str | None, index: int = 0) -> str | None:
    """Text the answer must start with for tool_choice `choice` (None: the model chooses); `index`: the
    number of calls earlier in the conversation, which numbers the forced call as vLLM numbers it.

    vLLM forces "required" and named choices with guided decoding; we force the start of the section
    (and for a named function its whole call header) and let the model write the rest.
    """
    if choice in (None, "auto", "none"):
        return None
    if choice == "required":
        return SECTION_BEGIN + CALL_BEGIN + "functions."
    return f"{SECTION_BEGIN}{CALL_BEGIN}{call_id(choice, index)}{ARGUMENT_BEGIN}"


def count_calls(messages: Sequence[Any]) -> int:
    """Tool calls made in the conversation so far (vLLM numbers the next one from here)."""
    return sum(len(m.get("tool_calls") or ()) for m in messages if isinstance(m, dict))


def finish_reason(choice: str | None, calls: Sequence[Any], finish: str) -> str:
    """OpenAI's (and vLLM's) rule: "tool_calls" when calls were made under "auto" or "required";
    a named choice keeps "stop"."""
    return "tool_calls" if calls and choice in ("auto", "required") else finish


# ---- history ------------------------------------------------------------------------------------


def call_id(name: str, index: int) -> str:
    """K2's id for the conversation's `index`-th call (counted over all turns): `functions.NAME:IDX`."""
    return f"functions.{name}:{index}"


def render_calls(calls: Any, where: str, first_index: int = 0) -> str:
    """An assistant turn's past `tool_calls` as the section the model writes.

    Ids and string arguments are written as given (the release's template); arguments given as an
    object are written as its `tojson` would; a call without an id gets K2's, numbered from
    `first_index` (the calls before it in the conversation).
    """
    if not isinstance(calls, (list, tuple)):
        raise ToolError(f"{where}: tool_calls must be a list, got {type(calls).__name__}")
    out = [SECTION_BEGIN]
    for i, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not name:
            raise ToolError(f"{where}: tool_calls[{i}] needs function.name, got {call!r:.80}")
        args = fn.get("arguments", "{}")
        if not isinstance(args, str):
            args = json.dumps(args, ensure_ascii=False)
        cid = call.get("id") or call_id(name, first_index + i)
        if not isinstance(cid, str):
            raise ToolError(f"{where}: tool_calls[{i}].id must be a string, got {cid!r:.80}")
        out.append(f"{CALL_BEGIN}{cid}{ARGUMENT_BEGIN}{args}{CALL_END}")
    out.append(SECTION_END)
    return "".join(out)


def result_header(message: dict[str, Any], where: str) -> str:
    """The head of a `tool` turn's body: `## Return of ID` and a line break."""
    cid = message.get("tool_call_id")
    if not isinstance(cid, str) or not cid:
        raise ToolError(f"{where}: a tool message needs the 'tool_call_id' of the call it answers")
    return f"## Return of {cid}\n"


# ---- parsing ------------------------------------------------------------------------------------


def name_of(call_id_text: str) -> str:
    """`functions.get_weather:0` (or `get_weather:0`) -> `get_weather`, as vLLM reads it."""
    return call_id_text.split(":")[0].split(".")[-1]


def _call(cid: str, args: str) -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name_of(cid), "arguments": args}}


def parse_tool_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """(content before the section, OpenAI-shaped calls) from a whole reply; no section: (text, [])."""
    at = text.find(SECTION_BEGIN)
    if at < 0:
        return text, []
    section = text[at + len(SECTION_BEGIN) :]
    calls = [_call(m["id"].strip(), m["args"]) for m in _CALL.finditer(section.split(SECTION_END, 1)[0])]
    return text[:at], calls


def check_calls(calls: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> list[str | None]:
    """Per call, what is wrong with it (undeclared name, arguments not a JSON object), or None."""
    declared = {t["function"]["name"] for t in tools}
    out = []
    for call in calls:
        name, args = call["function"]["name"], call["function"]["arguments"]
        try:
            ok_json = isinstance(json.loads(args), dict)
        except json.JSONDecodeError:
            ok_json = False
        if name not in declared:
            out.append(f"{name!r} is not a declared tool")
        elif not ok_json:
            out.append(f"the arguments of {name!r} are not a JSON object: {args[:80]!r}")
        else:
            out.append(None)
    return out


# ---- streaming ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolEvent:
    """What the splitter found: kind "content" (text), "call" (a call starts: index, id, name),
    "arguments" (text, a piece of the call's arguments)."""

    kind: str
    text: str = ""
    index: int = 0
    id: str | None = None
    name: str | None = None


def _held(buffer: str, marker: str) -> int:
    """How many trailing characters of `buffer` could be the start of `marker`."""
    return next(
        (k for k in range(min(len(marker) - 1, len(buffer)), 0, -1) if buffer.endswith(marker[:k])), 0
    )


class ToolCallSplitter:
    """Answer text in (tool markers kept as text), `ToolEvent`s out, as it streams.

    Text before the section is content; in the section each call's header gives a "call" event once
    its argument marker arrives, then its arguments stream as "arguments" events. Text after the
    section's end is dropped, as the parsers drop it. `calls` holds the finished calls.
    """

    def __init__(self) -> None:
        self.buffer, self.state = "", "content"  # content | header | arguments | skip | after
        self.calls: list[dict[str, Any]] = []
        self._args: list[str] = []

    def push(self, piece: str) -> Iterator[ToolEvent]:
        self.buffer += piece
        while True:
            if self.state == "content":
                at = self.buffer.find(SECTION_BEGIN)
                if at < 0:
                    keep = _held(self.buffer, SECTION_BEGIN)
                    text, self.buffer = (
                        self.buffer[: len(self.buffer) - keep],
                        self.buffer[len(self.buffer) - keep :],
                    )
                    if text:
                        yield ToolEvent("content", text)
                    return
                if at:
                    yield ToolEvent("content", self.buffer[:at])
                self.buffer, self.state = self.buffer[at + len(SECTION_BEGIN) :], "header"
            elif self.state == "header":
                if SECTION_END in self.buffer.split(CALL_BEGIN)[0]:
                    self.buffer, self.state = "", "after"
                    return
                at = self.buffer.find(ARGUMENT_BEGIN)
                if at < 0:
                    return
                head = self.buffer[:at]
                cid = (
                    head[head.find(CALL_BEGIN) + len(CALL_BEGIN) :].strip()
                    if CALL_BEGIN in head
                    else head.strip()
                )
                self.buffer = self.buffer[at + len(ARGUMENT_BEGIN) :]
                if not _HEADER.fullmatch(cid):  # not NAME:IDX: vLLM drops such a call
                    self.state = "skip"
                    continue
                self.state, self._args = "arguments", []
                self.calls.append(_call(cid, ""))
                yield ToolEvent("call", index=len(self.calls) - 1, id=cid, name=name_of(cid))
            elif self.state == "skip":
                at = self.buffer.find(CALL_END)
                if at < 0:
                    self.buffer = self.buffer[len(self.buffer) - _held(self.buffer, CALL_END) :]
                    return
                self.buffer, self.state = self.buffer[at + len(CALL_END) :], "header"
            elif self.state == "arguments":
                if not self._args:  # white space after the argument marker is not part of them
                    self.buffer = self.buffer.lstrip()
                at = self.buffer.find(CALL_END)
                end = at if at >= 0 else len(self.buffer) - _held(self.buffer, CALL_END)
                # white space before the end marker is not part of the arguments: hold it back
                text = self.buffer[:end].rstrip()
                if text:
                    self._args.append(text)
                    yield ToolEvent("arguments", text, index=len(self.calls) - 1)
                if at < 0:
                    self.buffer = self.buffer[len(text) :]
                    return
                self.calls[-1]["function"]["arguments"] = "".join(self._args)
                self.buffer, self.state = self.buffer[at + len(CALL_END) :], "header"
            else:  # after the section
                self.buffer = ""
                return

    def flush(self) -> Iterator[ToolEvent]:
        """The end of the reply: held-back content comes out; an unfinished call is dropped."""
        if self.state == "content" and self.buffer:
            yield ToolEvent("content", self.buffer)
        elif self.state == "arguments":
            self.calls.pop()  # cut off mid-arguments (max tokens): not a call anyone can run
        self.buffer = ""


def decoder(tokenizer: Any, *, keep_tool_markers: bool) -> Any:
    """`decode(ids) -> str` that skips special tokens, but keeps the tool-call markers as their text
    when asked (in the release they are special tokens; a parser needs to see them)."""
    keep = (
        {i: t for t, i in tokenizer.special_tokens.items() if t in TOOL_TOKENS} if keep_tool_markers else {}
    )

    def decode(ids: list[int]) -> str:
        if not keep:
            return tokenizer.decode(ids, skip_special_tokens=True)
        out, run = [], []
        for i in ids:
            if i in keep:
                out += [tokenizer.decode(run, skip_special_tokens=True), keep[i]]
                run = []
            else:
                run.append(i)
        out.append(tokenizer.decode(run, skip_special_tokens=True))
        return "".join(out)

    return decode
