"""Tool calls through the server, with the official `openai` client and with our `OpenAIBackend`: declared
tools, returned `tool_calls` (whole and streamed), the tool's result sent back, a final answer.

The model is a tiny random one; its generator is scripted per prompt (a forcing processor added to
the real `generation._steps`), so the server, the template and the parser all run for real.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

import mm_model  # noqa: E402
from mm_model.client import OpenAIBackend  # noqa: E402
from mm_model.server import background_server, create_app  # noqa: E402
from tests.mm_model.test_tools import ASK, CALL, TOOLS, script  # noqa: E402

MODEL = "tools-test"
ANSWER = "It is sunny in Paris."


@pytest.fixture(scope="module")
def served(tiny_dir) -> Any:
    model = mm_model.load(tiny_dir)
    with background_server(create_app(model, model_name=MODEL)) as url:
        yield url, model


@pytest.fixture
def client(served) -> Any:
    return openai.OpenAI(base_url=served[0], api_key="unused", max_retries=0)


@pytest.fixture
def prompts(served, monkeypatch) -> list[str]:
    """Scripted replies: a call to get_weather, or once its result is in the prompt, the answer."""
    return script(
        monkeypatch, served[1].tokenizer,
        lambda prompt: (ANSWER if "## Return of" in prompt else "Checking." + CALL) + "<|im_end|>",
    )  # fmt: skip


def ask(client: Any, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
    kwargs.setdefault("extra_body", {"thinking": False})
    return client.chat.completions.create(
        model=MODEL, messages=messages, tools=TOOLS, max_tokens=80, **kwargs
    )


def test_round_trip_with_the_openai_client(client, prompts) -> None:
    r = ask(client, ASK)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    (call,) = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == ("functions.get_weather:0", "function", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    # the assistant turn goes back as the API returned it, then the tool's result
    result = {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"sky": "sunny"})}
    final = ask(client, [*ASK, choice.message.model_dump(exclude_none=True), result])
    assert (final.choices[0].message.content, final.choices[0].finish_reason) == (ANSWER, "stop")
    assert final.choices[0].message.tool_calls is None
    assert (
        "<|im_assistant|>assistant<|im_middle|><think></think>Checking." + CALL + "<|im_end|>"
        '<|im_system|>tool<|im_middle|>## Return of functions.get_weather:0\n{"sky": "sunny"}<|im_end|>'
    ) in prompts[-1]


def test_streamed_tool_call_deltas(client, prompts) -> None:
    events = list(ask(client, ASK, stream=True))
    deltas = [tc for e in events for c in e.choices for tc in c.delta.tool_calls or ()]
    first, rest = deltas[0], deltas[1:]
    assert (first.index, first.id, first.type, first.function.name) == (0, "functions.get_weather:0", "function",
                                                                       "get_weather")  # fmt: skip
    assert all(d.id is None and d.function.name is None and d.index == 0 for d in rest)
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Paris"}
    assert "".join(c.delta.content or "" for e in events for c in e.choices) == "Checking."
    assert [c.finish_reason for e in events for c in e.choices if c.finish_reason] == ["tool_calls"]


@pytest.mark.parametrize("stream", [False, True])
def test_round_trip_through_our_backend(served, prompts, stream) -> None:
    backend = OpenAIBackend(served[0], api_key="unused")
    r = backend.chat(ASK, tools=TOOLS, thinking=False, max_tokens=80, stream=stream)
    if stream:
        pieces = list(r)
        calls = [p for p in pieces if p.kind == "tool_call"]
        assert (calls[0].id, calls[0].name) == ("functions.get_weather:0", "get_weather")
        r = r.result
    assert (r.text, r.finish_reason) == ("Checking.", "tool_calls")
    assert r.tool_calls == [{"id": "functions.get_weather:0", "type": "function",
                             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]  # fmt: skip
    assistant = {"role": "assistant", "content": r.text, "tool_calls": r.tool_calls}
    final = backend.chat([*ASK, assistant, {"role": "tool", "tool_call_id": r.tool_calls[0]["id"], "content": "sunny"}],
                         tools=TOOLS, thinking=False, max_tokens=80)  # fmt: skip
    assert (final.text, final.tool_calls) == (ANSWER, [])


def test_tool_choice_none_and_parallel_calls_off(client, served, monkeypatch) -> None:
    two = CALL.replace("<|tool_calls_section_end|>", "<|tool_call_begin|>functions.get_weather:1"
                       '<|tool_call_argument_begin|>{"city": "Rome"}<|tool_call_end|><|tool_calls_section_end|>')  # fmt: skip
    script(monkeypatch, served[1].tokenizer, lambda prompt: two + "<|im_end|>")
    r = ask(client, ASK, tool_choice="none")
    assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason == "stop"
    assert [c.id for c in ask(client, ASK).choices[0].message.tool_calls] == [
        "functions.get_weather:0", "functions.get_weather:1"
    ]  # fmt: skip
    r = ask(client, ASK, parallel_tool_calls=False)
    assert [c.id for c in r.choices[0].message.tool_calls] == ["functions.get_weather:0"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"tools": [{"type": "function"}]}, "tools"),
     ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
     ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "delete_all"}}}, "tool_choice"),
     ({"messages": [*ASK, {"role": "tool", "content": "sunny"}]}, None),
     ({"messages": [*ASK, {"role": "assistant", "tool_calls": [{"type": "function", "function": {}}]}]}, None),
     ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
     ({"presence_penalty": 0.5}, "presence_penalty")],
    ids=["tool_without_function", "unknown_choice", "undeclared_named", "tool_turn_without_id",
         "call_without_name", "parallel_not_bool", "presence_penalty"],
)  # fmt: skip
def test_bad_tool_requests_get_400_and_the_server_keeps_serving(client, prompts, fields, param) -> None:
    body = {"model": MODEL, "messages": ASK, "max_tokens": 4, "extra_body": {"thinking": False}, **fields}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**body)
    error = info.value.body
    assert error["param"] == param or param is None
    assert ask(client, ASK).choices[0].finish_reason == "tool_calls"


def test_unknown_fields_are_ignored_and_logged(client, prompts, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="mm_model.server.app"):
        r = ask(client, ASK, extra_body={"thinking": False, "guided_json": {"type": "object"}, "top_k": 5})
    assert r.choices[0].finish_reason == "tool_calls"
    assert any("ignored" in m and "guided_json" in m and "top_k" in m for m in caplog.messages)
