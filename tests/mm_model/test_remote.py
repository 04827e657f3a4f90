"""`mm_model.load(URL)` against `mm-model serve` as the stand-in endpoint: the answers the local model gives;
endpoints that are down, not OpenAI-compatible or failing give an `InputError` naming the URL."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("openai")

import mm_model
from mm_model.remote import EndpointError, RemoteModel, base_url
from mm_model.server import background_server, create_app

KEY = "remote-test-key"
NAME = "tiny-random"


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("remote_media") / "shot.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (56, 84, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def ref_model(tiny_dir) -> mm_model.Model:
    return mm_model.load(tiny_dir)


@pytest.fixture(scope="module")
def url(tiny_dir) -> Iterator[str]:
    """Our server on its own copy of the model (a `Model` is not shared between threads)."""
    with background_server(create_app(mm_model.load(tiny_dir), model_name=NAME, api_key=KEY)) as base:
        yield base


@pytest.fixture(scope="module")
def remote(url) -> RemoteModel:
    return mm_model.load(url, api_key=KEY)


def ask(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [*parts, {"type": "text", "text": "what is in the picture?"}]}]


CASES = {  # (media parts, chat settings); greedy unless a seed is given
    "image": lambda pic, vid: ([{"type": "image", "image": str(pic)}], {"thinking": False}),
    "video_thinking_budget": lambda pic, vid: ([{"type": "video", "video": str(vid)}], {"thinking": True, "budget": 3}),
    "image_and_video_thinking": lambda pic, vid: (
        [{"type": "image", "image": pic.read_bytes()}, {"type": "video", "video": str(vid)}], {"thinking": True}),
    "video_sampled": lambda pic, vid: ([{"type": "video", "video": str(vid)}], {"temperature": 0.8, "seed": 11}),
    "defaults": lambda pic, vid: ([{"type": "image", "image": str(pic)}], {}),  # each side's default thinking
}  # fmt: skip


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("case", list(CASES))
def test_remote_chat_gives_the_local_answer(remote, ref_model, picture, sample_video, case, stream) -> None:
    parts, settings = CASES[case](picture, sample_video)
    ref = ref_model.chat(ask(*parts), max_new_tokens=8, **settings)
    got = remote.chat(ask(*parts), max_new_tokens=8, stream=stream, **settings)
    if stream:
        pieces = list(got)
        assert all(p.kind in ("thinking", "answer") for p in pieces)
        assert "".join(p for p in pieces if p.kind == "answer") == ref.text
        assert "".join(p for p in pieces if p.kind == "thinking") == ref.thinking
        got = got.result
    assert (got.text, got.thinking, got.finish_reason) == (ref.text, ref.thinking, ref.finish_reason)
    assert (got.answered, got.notice) == (ref.answered, ref.notice)
    keys = ("prompt_tokens", "vision_tokens", "thinking_tokens", "answer_tokens", "completion_tokens")
    assert {k: got.usage[k] for k in keys} == {k: ref.usage[k] for k in keys}
    assert got.usage["vision_tokens"] > 0
    assert 0 < got.timings["time_to_first_token_s"] <= got.timings["total_s"]


def test_what_a_remote_model_says_about_itself(remote, url, monkeypatch) -> None:
    assert isinstance(remote, mm_model.RemoteModel)
    assert (remote.url, remote.name, remote.models) == (url, NAME, [NAME])
    assert (remote.default_thinking, remote.config, remote.tokenizer, remote.path) == (None, None, None, None)
    assert remote.describe() == f"model {NAME} at {url}"
    # the key from the environment, as the openai client takes it; a named model; a URL without /v1
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    again = mm_model.load(url.removesuffix("/v1") + "/", model=NAME)
    assert (again.url, again.name) == (url, NAME)
    assert again.chat("hello", max_new_tokens=3).text == remote.chat("hello", max_new_tokens=3).text


@pytest.mark.parametrize(
    "url, expected",
    [("http://h:8000", "http://h:8000/v1"), ("http://h:8000/", "http://h:8000/v1"),
     ("https://h/api/v1/", "https://h/api/v1"), (" http://h:1/v1 ", "http://h:1/v1")],
    ids=["bare", "bare_slash", "path_kept", "spaces"],
)  # fmt: skip
def test_base_url(url, expected) -> None:
    assert base_url(url) == expected


def test_bad_input_is_the_servers_input_error_and_local_only_options_are_refused(remote) -> None:
    with pytest.raises(mm_model.InputError, match="not a recognised image"):
        remote.chat(ask({"type": "image", "image": b"not an image"}), max_new_tokens=2)
    with pytest.raises(mm_model.InputError, match="needs thinking"):
        list(remote.chat("hi", max_new_tokens=2, thinking=False, budget=3, stream=True))
    with pytest.raises(
        mm_model.InputError, match=f"ramp works with a local model only, not with the endpoint {remote.url}"
    ):
        remote.chat("hi", ramp=0.5)  # fmt: skip


def test_closing_a_stream_stops_it_and_the_endpoint_keeps_answering(remote, ref_model) -> None:
    stream = remote.chat("tell me everything", max_new_tokens=200, stream=True)
    first = next(stream)
    stream.close()
    assert first and stream.result is None
    assert remote.chat("hello", max_new_tokens=4).text == ref_model.chat("hello", max_new_tokens=4).text


# ---- endpoints that cannot be used ----------------------------------------------------------------


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@contextmanager
def stand_in(handle: Callable[[http.server.BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A plain HTTP server on a free localhost port whose every request `handle` answers; yields its /v1 URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        do_GET = do_POST = handle

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def reply(h: http.server.BaseHTTPRequestHandler, status: int, body: bytes, kind: str) -> None:
    h.rfile.read(int(h.headers.get("content-length") or 0))
    h.send_response(status)
    h.send_header("content-type", kind)
    h.send_header("content-length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def html_page(h) -> None:
    reply(h, 200, b"<!doctype html><title>my blog</title><p>hello</p>", "text/html; charset=utf-8")


def not_found(h) -> None:
    reply(h, 404, b"<h1>404 Not Found</h1>", "text/html")


def json_of(body: Any) -> Callable:
    return lambda h: reply(h, 200, json.dumps(body).encode(), "application/json")


def not_http(h) -> None:  # a server of another protocol: a greeting line, then hang up
    h.wfile.write(b"SSH-2.0-OpenSSH_9.2\r\n")
    h.wfile.flush()
    h.close_connection = True


def no_traceback_behind(error: BaseException) -> bool:
    """Whether Python would print the error alone, without an httpx/openai exception chained to it."""
    return error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


BAD_ENDPOINTS = {
    "html_page": (html_page, None, "answered GET /models with text/html; charset=utf-8, not JSON"),
    "no_models_route": (not_found, None, r"has no /models \(HTTP 404\): not an OpenAI-compatible API"),
    "not_http": (not_http, None, "does not speak HTTP"),
    "json_but_no_list": (json_of({"status": "ok"}), None, "without a model list"),
    "empty_model_list": (json_of({"object": "list", "data": []}), None, "serves no models"),
    "unknown_model": (json_of({"data": [{"id": "a"}, {"id": "b"}]}), "c", "does not serve model 'c'; it serves a, b"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_ENDPOINTS))
def test_an_endpoint_that_is_not_openai_compatible_is_an_input_error_naming_it(name) -> None:
    handle, model, message = BAD_ENDPOINTS[name]
    with stand_in(handle) as url, pytest.raises(mm_model.InputError, match=message) as info:
        mm_model.load(url, model=model)
    assert url in str(info.value) and no_traceback_behind(info.value)


def test_unreachable_endpoint_is_an_input_error_naming_it() -> None:
    url = closed_port_url()
    with pytest.raises(mm_model.InputError, match="cannot connect to the endpoint") as info:
        mm_model.load(url)
    assert (
        url in str(info.value) and isinstance(info.value, EndpointError) and no_traceback_behind(info.value)
    )


def test_an_endpoint_that_never_answers_is_an_input_error_after_the_probe_timeout() -> None:
    with socket.socket() as silent:  # listens (the kernel completes the handshake) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        with pytest.raises(mm_model.InputError, match=f"the endpoint {url} did not answer within 0.5 s"):
            RemoteModel(url, probe_timeout=0.5)


def test_our_server_with_an_unknown_model_or_without_the_key(url, monkeypatch) -> None:
    with pytest.raises(
        mm_model.InputError, match=f"the endpoint {url} does not serve model 'nope'; it serves {NAME}"
    ):
        mm_model.load(url, model="nope", api_key=KEY)  # fmt: skip
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(mm_model.InputError, match=f"the endpoint {url} refused the API key"):
        mm_model.load(url)


def test_model_and_api_key_are_for_urls_only(tiny_dir) -> None:
    with pytest.raises(mm_model.InputError, match="for an endpoint URL"):
        mm_model.load(tiny_dir, model="x")
    with pytest.raises(mm_model.InputError, match="http"):
        mm_model.load("no-such-model")


# ---- an endpoint failing during chat ----------------------------------------------------------------


def models_then(chat: Callable) -> Callable:
    """GET /models lists one model; POST /chat/completions is `chat`."""

    def handle(h) -> None:
        if h.command == "GET":
            return json_of({"data": [{"id": "m"}]})(h)
        return chat(h)

    return handle


def server_error(h) -> None:
    body = {"error": {"message": "CUDA out of memory", "type": "server_error", "code": 500}}
    reply(h, 500, json.dumps(body).encode(), "application/json")


def hang_up(h) -> None:
    h.rfile.read(int(h.headers.get("content-length") or 0))
    h.connection.shutdown(socket.SHUT_RDWR)
    h.close_connection = True


def cut_stream(h) -> None:
    """Starts an SSE answer (one piece), then the connection drops mid-stream."""
    h.rfile.read(int(h.headers.get("content-length") or 0))
    h.send_response(200)
    h.send_header("content-type", "text/event-stream")
    h.send_header("transfer-encoding", "chunked")
    h.end_headers()
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hel"}, "finish_reason": None}]}  # fmt: skip
    event = f"data: {json.dumps(chunk)}\n\n".encode()
    h.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
    h.wfile.flush()
    h.connection.shutdown(socket.SHUT_RDWR)
    h.close_connection = True


FAILURES = {
    "http_500": (server_error, False, r"failed: HTTP 500: CUDA out of memory"),
    "http_500_streamed": (server_error, True, r"failed: HTTP 500: CUDA out of memory"),
    "connection_dropped": (hang_up, False, "lost the connection to the endpoint"),
    "dropped_mid_stream": (
        cut_stream,
        True,
        r"lost the connection to the endpoint .*incomplete chunked read",
    ),
}


@pytest.mark.parametrize("name", list(FAILURES))
def test_an_endpoint_failing_during_chat_is_an_endpoint_error_naming_it(name) -> None:
    chat, stream, message = FAILURES[name]
    with stand_in(models_then(chat)) as url:
        model = RemoteModel(url, max_retries=0)
        pieces = []
        with pytest.raises(EndpointError, match=message) as info:
            out = model.chat("hi", max_new_tokens=4, stream=stream)
            pieces.extend(out if stream else [])
    assert f"the endpoint {url} " in str(info.value) or f"to the endpoint {url} " in str(info.value)
    assert isinstance(info.value, mm_model.InputError) and no_traceback_behind(info.value)
    if name == "dropped_mid_stream":
        assert pieces == ["hel"]  # what came before the drop was streamed
