"""Tool calls in Kimi K2's format: the rendered prompt against the release's template text, the parser
and its streaming twin against vLLM's reading, and `Model.chat(tools=...)` on a tiny random model
whose generation is scripted (a forcing logits processor added to the real generator)."""

from __future__ import annotations

import json
import random

import pytest

import mm_model
from mm_model import generation
from mm_model.generation import ForcedTokens
from mm_model.tool_schema import typescript
from mm_model.tools import ToolCallSplitter, check_calls, parse_tool_calls

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
CALL = (
    "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
    '{"city": "Paris"}<|tool_call_end|><|tool_calls_section_end|>'
)


# ---- the prompt, against the release's chat template ------------------------------------------------
# Expected texts written out from the release's template (Kimi-K2-Thinking's chat_template.jinja, which
# K2.5 shares for tools: the tools turn first, the default system turn, call ids and string arguments
# as given, `<|im_system|>{name or 'tool'}` turns headed "## Return of ID", reasoning kept only after
# the last assistant turn without calls), with K2.5's generation prompt (`<think>`, or `<think></think>`
# for instant mode) and K2.5's tokenizer's TypeScript form of the tools (its `tools_ts_str`).

DECLARE = (
    "<|im_system|>tool_declare<|im_middle|># Tools\n\n## functions\nnamespace functions {\n// Weather of a city\n"
    "type get_weather = (_: {\n  city: string\n}) => any;\n}\n<|im_end|>"
)
SYSTEM = "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>"
LOOP = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "reasoning_content": "need the tool",
     "tool_calls": [{"id": "functions.get_weather:0", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "functions.get_weather:0", "name": "get_weather", "content": "Sunny, 21 C"},
]  # fmt: skip
LOOP_TEXT = (
    DECLARE + SYSTEM + "<|im_user|>user<|im_middle|>Weather in Paris?<|im_end|>"
    "<|im_assistant|>assistant<|im_middle|><think>need the tool</think>" + CALL + "<|im_end|>"
    "<|im_system|>get_weather<|im_middle|>## Return of functions.get_weather:0\nSunny, 21 C<|im_end|>"
)
LATER = [
    *LOOP,
    {"role": "assistant", "content": "It is sunny.", "reasoning_content": "read the result"},
    {"role": "user", "content": "And in Rome?"},
    {"role": "assistant", "content": None, "reasoning_content": "again",
     "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]},
    {"role": "tool", "tool_call_id": "functions.get_weather:1", "content": "Rain"},
]  # fmt: skip
LATER_TEXT = (
    DECLARE + SYSTEM + "<|im_user|>user<|im_middle|>Weather in Paris?<|im_end|>"
    "<|im_assistant|>assistant<|im_middle|><think></think>" + CALL + "<|im_end|>"
    "<|im_system|>get_weather<|im_middle|>## Return of functions.get_weather:0\nSunny, 21 C<|im_end|>"
    "<|im_assistant|>assistant<|im_middle|><think></think>It is sunny.<|im_end|>"
    "<|im_user|>user<|im_middle|>And in Rome?<|im_end|>"
    "<|im_assistant|>assistant<|im_middle|><think>again</think><|tool_calls_section_begin|><|tool_call_begin|>"
    'functions.get_weather:1<|tool_call_argument_begin|>{"city": "Rome"}<|tool_call_end|><|tool_calls_section_end|>'
    "<|im_end|><|im_system|>tool<|im_middle|>## Return of functions.get_weather:1\nRain<|im_end|>"
)


@pytest.fixture(scope="module")
def model(tiny_dir) -> mm_model.Model:
    return mm_model.load(tiny_dir)


@pytest.mark.parametrize(
    ("messages", "thinking", "expected"),
    [(LOOP, True, LOOP_TEXT + "<|im_assistant|>assistant<|im_middle|><think>"),
     (LOOP, False, LOOP_TEXT + "<|im_assistant|>assistant<|im_middle|><think></think>"),
     (LATER, True, LATER_TEXT + "<|im_assistant|>assistant<|im_middle|><think>")],
    ids=["tool_loop_thinking", "tool_loop_instant", "after_an_answer"],
)  # fmt: skip
def test_render_matches_the_release_template(model, messages, thinking, expected) -> None:
    text, media = model.processor.render(messages, thinking=thinking, tools=TOOLS)
    assert text == expected
    assert media == []


def test_without_tools_the_prompt_is_unchanged(model) -> None:
    text, _ = model.processor.render([{"role": "user", "content": "hi"}], thinking=False)
    assert (
        text
        == SYSTEM
        + "<|im_user|>user<|im_middle|>hi<|im_end|><|im_assistant|>assistant<|im_middle|><think></think>"
    )


@pytest.mark.parametrize(
    ("messages", "tools", "match"),
    [([{"role": "tool", "content": "x"}], None, "tool_call_id"),
     ([{"role": "assistant", "content": "", "tool_calls": [{"function": {}}]}], None, "function.name"),
     ([{"role": "assistant", "content": "", "tool_calls": "get_weather"}], None, "must be a list"),
     ([{"role": "user", "content": "hi"}], [{"type": "function"}], r"tools\[0\]"),
     ([{"role": "user", "content": "hi"}], [{"type": "function", "function": {"name": "a b"}}], "name"),
     ([{"role": "user", "content": "hi"}], TOOLS + TOOLS, "twice")],
    ids=["tool_without_id", "call_without_name", "calls_not_a_list", "tool_without_function", "bad_name",
         "duplicate"],
)  # fmt: skip
def test_bad_tool_messages_and_declarations(model, messages, tools, match) -> None:
    with pytest.raises(mm_model.InputError, match=match):
        model.processor.render(messages, tools=tools)


# ---- parsing, as vLLM's kimi_k2 parser reads a reply ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "content", "calls"),
    [("Just text.", "Just text.", []),
     ("Let me check." + CALL, "Let me check.", [("functions.get_weather:0", "get_weather", '{"city": "Paris"}')]),
     ("<|tool_calls_section_begin|><|tool_call_begin|> functions.a:0 <|tool_call_argument_begin|> {} "
      "<|tool_call_end|><|tool_call_begin|>functions.b:1<|tool_call_argument_begin|>{not json<|tool_call_end|>"
      "<|tool_calls_section_end|>", "", [("functions.a:0", "a", "{}"), ("functions.b:1", "b", "{not json")]),
     ("<|tool_calls_section_begin|><|tool_call_begin|>get_weather<|tool_call_argument_begin|>{}<|tool_call_end|>"
      "<|tool_call_begin|>nope:2<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|>",
      "", [("nope:2", "nope", "{}")]),
     ("x<|tool_calls_section_begin|><|tool_call_begin|>functions.a:0<|tool_call_argument_begin|>{\"a\"",
      "x", [])],
    ids=["no_section", "content_and_call", "two_calls_raw_arguments", "header_without_index_dropped",
         "cut_off_call_dropped"],
)  # fmt: skip
def test_parse_tool_calls(text, content, calls) -> None:
    got_content, got = parse_tool_calls(text)
    assert got_content == content
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in got] == calls
    assert all(c["type"] == "function" for c in got)


@pytest.mark.parametrize("seed", range(20))
def test_streaming_splitter_agrees_with_the_parser_however_the_text_is_cut(seed) -> None:
    rng = random.Random(seed)
    text = rng.choice(["Sure. ", "", "a<|tool_calls_sec"]) + CALL.replace(
        "<|tool_calls_section_end|>",
        '<|tool_call_begin|>functions.get_weather:1<|tool_call_argument_begin|> {"city": "Oslo"}  '
        "<|tool_call_end|><|tool_calls_section_end|>",
    )
    cuts = sorted(rng.sample(range(1, len(text)), 12))
    splitter, content, args = ToolCallSplitter(), [], {}
    for piece in (text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])):
        for e in splitter.push(piece):
            if e.kind == "content":
                content.append(e.text)
            elif e.kind == "call":
                args[e.index] = []
            else:
                args[e.index].append(e.text)
    for e in splitter.flush():
        content.append(e.text)
    want_content, want_calls = parse_tool_calls(text)
    assert "".join(content) == want_content
    assert splitter.calls == want_calls
    assert ["".join(args[i]) for i in sorted(args)] == [c["function"]["arguments"] for c in want_calls]


def test_check_calls_says_what_is_wrong() -> None:
    calls = parse_tool_calls(
        "<|tool_calls_section_begin|>"
        '<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|>'
        "<|tool_call_begin|>functions.get_weather:1<|tool_call_argument_begin|>Paris<|tool_call_end|>"
        "<|tool_call_begin|>functions.delete_all:2<|tool_call_argument_begin|>{}<|tool_call_end|>"
    )[1]
    problems = check_calls(calls, TOOLS)
    assert problems[0] is None
    assert "not a JSON object" in problems[1]
    assert "not a declared tool" in problems[2]


# ---- Model.chat with tools ------------------------------------------------------------------------


def script(monkeypatch, tokenizer, reply) -> list[str]:
    """Make the real generator write `reply(prompt_text)` (a forcing processor added last); returns the
    prompts it saw."""
    real, seen = generation._steps, []

    def steps(lm, ids, *, logits_processors, **kwargs):
        prompt = tokenizer.decode(ids[0].tolist())
        seen.append(prompt)
        forced = ForcedTokens(tokenizer.encode(reply(prompt)))
        return real(lm, ids, logits_processors=[*logits_processors, forced], **kwargs)

    monkeypatch.setattr(generation, "_steps", steps)
    return seen


ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.mark.parametrize("thinking", [False, True])
def test_chat_returns_the_call_whole_and_streamed(model, monkeypatch, thinking) -> None:
    reply = ("check the weather</think>" if thinking else "") + "Checking." + CALL + "<|im_end|>"
    seen = script(monkeypatch, model.tokenizer, lambda prompt: reply)
    r = model.chat(ASK, tools=TOOLS, thinking=thinking, max_new_tokens=80)
    assert seen[0].startswith(DECLARE)
    assert r.text == "Checking."
    assert r.thinking == ("check the weather" if thinking else "")
    assert r.tool_calls == [{"id": "functions.get_weather:0", "type": "function",
                             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]  # fmt: skip
    assert r.finish_reason == "tool_calls" and r.answered

    stream = model.chat(ASK, tools=TOOLS, thinking=thinking, max_new_tokens=80, stream=True)
    pieces = list(stream)
    calls = [p for p in pieces if p.kind == "tool_call"]
    assert (calls[0].id, calls[0].name, calls[0].index) == ("functions.get_weather:0", "get_weather", 0)
    assert "".join(calls) == '{"city": "Paris"}'
    assert "".join(p for p in pieces if p.kind == "answer") == "Checking."
    assert stream.result == r.__class__(**{**r.__dict__, "timings": stream.result.timings})


def test_tool_choice_none_declares_but_does_not_parse(model, monkeypatch) -> None:
    seen = script(monkeypatch, model.tokenizer, lambda prompt: CALL + "<|im_end|>")
    r = model.chat(ASK, tools=TOOLS, tool_choice="none", thinking=False, max_new_tokens=80)
    assert seen[0].startswith(DECLARE)
    assert r.tool_calls == [] and r.finish_reason == "stop"
    assert "get_weather" in r.text  # markers are special tokens, skipped as text: the rest shows


@pytest.mark.parametrize("thinking", [False, True])
def test_named_tool_choice_forces_the_call_header(model, thinking) -> None:
    """No script: the random model is made to open the named call; what it writes next is its own."""
    history = [*LOOP, {"role": "assistant", "content": "Sunny."}, {"role": "user", "content": "Rome?"}]
    stream = model.chat(history, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}},
                        thinking=thinking, budget=3 if thinking else None, max_new_tokens=40, stream=True)  # fmt: skip
    pieces = list(stream)
    first = next(p for p in pieces if p.kind == "tool_call")
    assert (first.id, first.name) == (
        "functions.get_weather:1",
        "get_weather",
    )  # one call earlier in the chat
    assert not "".join(p for p in pieces if p.kind == "answer")


def test_required_tool_choice_opens_a_call(model, monkeypatch) -> None:
    tokens, real = [], generation._steps

    def steps(*args, **kwargs):
        for token, ids in real(*args, **kwargs):
            tokens.append(ids[0])
            yield token, ids

    monkeypatch.setattr(generation, "_steps", steps)
    model.chat(ASK, tools=TOOLS, tool_choice="required", thinking=False, max_new_tokens=12)
    assert model.tokenizer.decode(tokens).startswith(
        "<|tool_calls_section_begin|><|tool_call_begin|>functions."
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"tools": TOOLS, "tool_choice": "always"}, "tool_choice"),
     ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "delete_all"}}}, "delete_all"),
     ({"tool_choice": "required"}, "needs tools"),
     ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}, "parameters")],
    ids=["unknown_choice", "undeclared_named", "required_without_tools", "bad_parameters"],
)  # fmt: skip
def test_bad_tool_arguments_to_chat(model, kwargs, match) -> None:
    with pytest.raises(mm_model.InputError, match=match):
        model.chat(ASK, thinking=False, max_new_tokens=2, **kwargs)


# A schema with every construct the TypeScript form has, and its text as K2.5's tokenizer writes it
# (checked once against the encoder its tokenizer ships, as copied into tinker-cookbook's
# renderers/kimi_k2_5_tool_declaration_ts.py; not vendored here).
SEARCH = [{"type": "function", "function": {
    "name": "search", "description": "Search the web.\n\nReturns links.",
    "parameters": {"type": "object", "required": ["q"], "properties": {
        "q": {"type": "string", "description": "query", "maxLength": 100},
        "n": {"type": "integer", "default": 5, "minimum": 1},
        "mode": {"enum": ["fast", "deep"]},
        "tags": {"type": "array", "items": {"type": "string", "description": "a tag"}},
        "opts": {"type": "object", "properties": {"safe": {"type": "boolean"}}, "additionalProperties": False},
        "x": {"type": ["string", "null"]}}}}}]  # fmt: skip
SEARCH_TS = """# Tools

## functions
namespace functions {
// Search the web.

// Returns links.
type search = (_: {
  // query
  // maxLength: 100
  q: string,
  mode?: "fast" | "deep",
  // minimum: 1
  // Default: 5
  n?: number,
  opts?: {
    safe?: boolean,
    [k: string]: never
  },
  tags?: Array<
    // a tag
    string
  >,
  x?: string | null
}) => any;
}
"""


def test_typescript_declaration() -> None:
    assert typescript(SEARCH) == SEARCH_TS
    assert typescript([{"type": "function", "function": {"name": "ping"}}]) == (
        "# Tools\n\n## functions\nnamespace functions {\ntype ping = (_: {}) => any;\n}\n"
    )


def test_schemas_it_cannot_express_are_declared_as_json(model) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"$ref": "#/$defs/x"}}}]
    text, _ = model.processor.render(ASK, tools=tools)
    body = text.split("<|im_middle|>", 1)[1].split("<|im_end|>", 1)[0]
    assert body == '[{"type":"function","function":{"name":"f","parameters":{"$ref":"#/$defs/x"}}}]'
    assert json.loads(body) == tools
