"""The OpenAI-compatible server, through the official `openai` client on a loopback port.

The server runs in a background thread of this process (`background_server`), on its own `Model`;
expected answers come from a second `Model` loaded from the same tiny random checkpoint (gibberish
text: these tests check plumbing and equality, not quality). Sampling at temperature > 0 with a seed
makes answers differ between requests, so a swapped answer would show.
"""

from __future__ import annotations

import base64
import gc
import io
import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

import mm_model  # noqa: E402
from mm_model.server import APIError, ServerLimits, background_server, create_app, parse_request  # noqa: E402
from tests.conftest import write_video  # noqa: E402

MODEL = "tiny-test"
SAMPLING = {"temperature": 0.7, "seed": 11, "max_tokens": 6}


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture(scope="module")
def media(tmp_path_factory, sample_video) -> dict[str, Any]:
    """The allowed media folder (an image, the clip, a symlink out of it) and files outside it."""
    root = tmp_path_factory.mktemp("served")
    allowed = root / "allowed"
    allowed.mkdir()
    png = png_bytes(Image.fromarray(np.random.default_rng(7).integers(0, 256, (40, 60, 3), dtype=np.uint8)))
    (allowed / "shot.png").write_bytes(png)
    shutil.copy(sample_video, allowed / "clip.mp4")
    (root / "outside.png").write_bytes(png)
    (allowed / "escape.png").symlink_to(root / "outside.png")
    long_video = write_video(root / "long.mp4", frames=40, fps=10, size=(32, 32))  # 4 s
    return {"dir": allowed, "png": png, "video": Path(sample_video).read_bytes(),
            "long_video": long_video.read_bytes(), "outside": root / "outside.png"}  # fmt: skip


@pytest.fixture(scope="module")
def ref_model(tiny_dir) -> mm_model.Model:
    return mm_model.load(tiny_dir)


LIMITS = dict(max_body_bytes=256 * 1024, max_media_items=3, max_video_seconds=3.0, max_prompt_tokens=400,
              timeout_s=60.0, queue_size=16)  # fmt: skip


@pytest.fixture(scope="module")
def server(tiny_dir, media) -> str:
    limits = ServerLimits(**LIMITS, allowed_local_media_path=media["dir"])
    app = create_app(mm_model.load(tiny_dir), limits=limits, model_name=MODEL)
    with background_server(app) as url:
        yield url


@pytest.fixture(scope="module")
def client(server) -> Any:
    with openai.OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=60) as c:
        yield c


def user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def stream_text(client, **kwargs: Any) -> tuple[str, str, Any, str | None]:
    """(answer, thinking, usage, finish_reason) from a streamed request."""
    answer, thinking, usage, finish = [], [], None, None
    for chunk in client.chat.completions.create(
        **kwargs, stream=True, stream_options={"include_usage": True}
    ):
        usage = chunk.usage or usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            answer.append(choice.delta.content or "")
            thinking.append((choice.delta.model_extra or {}).get("reasoning_content") or "")
    return "".join(answer), "".join(thinking), usage, finish


def assert_good_request_works(client) -> None:
    r = client.chat.completions.create(model=MODEL, messages=user(text("hello")), max_tokens=2)
    assert r.choices[0].finish_reason in ("stop", "length")


# ---- same answers as Model.chat -------------------------------------------------------------------

EQUALITY = {
    # name: (local parts for Model.chat, served parts builder, thinking/budget)
    "image": ("image", {}),
    "video": ("video", {}),
    "image_and_video_thinking_budget": ("image+video", {"thinking": True, "budget": 2}),
    "image_by_allowed_file_url": ("file", {}),
}


def parts_for(kind: str, media: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """(parts for Model.chat, parts for the server) of one equality case."""
    local, served = [], []
    if kind in ("image", "image+video"):
        local.append({"type": "image", "image": media["png"]})
        served.append({"type": "image_url", "image_url": {"url": data_url(media["png"], "image/png")}})
    if kind in ("video", "image+video"):
        local.append({"type": "video", "video": media["video"]})
        served.append({"type": "video_url", "video_url": {"url": data_url(media["video"], "video/mp4")}})
    if kind == "file":
        local.append({"type": "image", "image": str(media["dir"] / "shot.png")})
        served.append({"type": "image_url", "image_url": {"url": (media["dir"] / "shot.png").as_uri()}})
    question = text("what is in the picture?")
    return [*local, question], [*served, question]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("case", list(EQUALITY))
def test_served_answer_equals_model_chat(client, ref_model, media, case, stream) -> None:
    kind, think = EQUALITY[case]
    local, served = parts_for(kind, media)
    thinking, budget = think.get("thinking", False), think.get("budget")
    ref = ref_model.chat(user(*local), max_new_tokens=SAMPLING["max_tokens"], temperature=SAMPLING["temperature"],
                         seed=SAMPLING["seed"], thinking=thinking, budget=budget)  # fmt: skip
    assert ref.text and (ref.thinking if thinking else True), "the case must produce text to compare"
    extra = {"chat_template_kwargs": {"thinking": thinking}}
    if budget is not None:
        extra["thinking_budget"] = budget
    kwargs = dict(model=MODEL, messages=user(*served), extra_body=extra, **SAMPLING)
    if stream:
        answer, reasoning, usage, finish = stream_text(client, **kwargs)
    else:
        r = client.chat.completions.create(**kwargs)
        message, usage, finish = r.choices[0].message, r.usage, r.choices[0].finish_reason
        answer, reasoning = message.content, (message.model_extra or {}).get("reasoning_content") or ""
        assert r.model == MODEL and r.object == "chat.completion"
    assert (answer, reasoning) == (ref.text, ref.thinking)
    assert finish == ref.finish_reason
    assert usage.prompt_tokens == ref.usage["prompt_tokens"]
    assert usage.completion_tokens == ref.usage["completion_tokens"]
    assert usage.completion_tokens_details.reasoning_tokens == ref.usage["thinking_tokens"]
    assert usage.model_extra["vision_tokens"] == ref.usage["vision_tokens"]


def test_stop_string_cuts_the_answer(client, ref_model) -> None:
    ref = ref_model.chat(user(text("hello world")), max_new_tokens=8, temperature=1.0, seed=5, thinking=False)
    assert len(ref.text) >= 3, ref.text
    stop = ref.text[2:4]
    kwargs = dict(
        model=MODEL, messages=user(text("hello world")), max_tokens=8, temperature=1.0, seed=5, stop=stop,
        extra_body={"chat_template_kwargs": {"thinking": False}},
    )  # fmt: skip
    r = client.chat.completions.create(**kwargs)
    expected = ref.text[: ref.text.find(stop)]
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == (expected, "stop")
    assert stream_text(client, **kwargs)[0] == expected


def test_models_and_health(server, client) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]
    with urllib.request.urlopen(server.removesuffix("/v1") + "/health", timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "ok" and body["queue"]["capacity"] == LIMITS["queue_size"]


# ---- request fields (no server needed) -------------------------------------------------------------

MSGS = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "fields, expected",
    [({}, dict(thinking=None, budget=None, max_new_tokens=256, temperature=0.0, stop=[])),
     ({"thinking": True, "thinking_budget": "auto"}, dict(thinking=True, budget="auto")),
     ({"thinking": {"type": "enabled"}}, dict(thinking=True)),
     ({"thinking": {"type": "disabled"}, "chat_template_kwargs": {"thinking": True}}, dict(thinking=False)),
     ({"chat_template_kwargs": {"thinking": True}, "thinking_token_budget": 7}, dict(thinking=True, budget=7)),
     ({"chat_template_kwargs": {"enable_thinking": True}}, dict(thinking=True)),
     ({"max_tokens": 5, "max_completion_tokens": 9}, dict(max_new_tokens=9)),
     ({"stop": "END", "seed": -3, "stream": True, "stream_options": {"include_usage": True}},
      dict(stop=["END"], seed=-3, stream=True, include_usage=True))],
    ids=["defaults", "budget_auto", "moonshot_enabled", "top_level_wins", "vllm_fields", "qwen_switch",
         "max_completion_tokens_wins", "stop_seed_stream"],
)  # fmt: skip
def test_parse_request_fields(fields, expected) -> None:
    req = parse_request({"model": MODEL, "messages": MSGS, **fields}, ServerLimits(), MODEL)
    assert {k: getattr(req, k) for k in expected} == expected


@pytest.mark.parametrize(
    "fields, param",
    [({"temperature": 3}, "temperature"), ({"top_p": 0}, "top_p"), ({"max_tokens": 0}, "max_tokens"),
     ({"max_tokens": True}, "max_tokens"), ({"n": 2}, "n"), ({"tools": [{"type": "function"}]}, "tools"),
     ({"stop": ["a", "b", "c", "d", "e"]}, "stop"), ({"thinking": "yes"}, "thinking"),
     ({"thinking": True, "thinking_budget": -1}, "thinking_budget"), ({"messages": []}, "messages"),
     ({"response_format": {"type": "json_object"}}, "response_format")],
    ids=["temperature", "top_p", "max_tokens_zero", "max_tokens_bool", "n", "tools", "five_stops", "thinking_str",
         "negative_budget", "no_messages", "json_mode"],
)  # fmt: skip
def test_parse_request_refuses(fields, param) -> None:
    with pytest.raises(APIError) as info:
        parse_request({"model": MODEL, "messages": MSGS, **fields}, ServerLimits(), MODEL)
    assert (info.value.status, info.value.param) == (400, param)


# ---- bad input: the right 4xx, and the server keeps serving ---------------------------------------


def bad_cases(media: dict[str, Any]) -> dict[str, tuple[dict[str, Any], int, str | None]]:
    """name: (request fields, HTTP status, error code)."""
    img = lambda url: {"type": "image_url", "image_url": {"url": url}}  # noqa: E731
    allowed = media["dir"]
    return {
        "corrupt_image_data_url": (dict(messages=user(img(data_url(b"not an image at all", "image/png")), text("?"))),
                                   400, "invalid_image"),
        "invalid_base64": (dict(messages=user(img("data:image/png;base64,@@not-base64@@"))), 400, None),
        "corrupt_video": (dict(messages=user({"type": "video_url", "video_url": {"url": data_url(b"\0" * 64, "video/mp4")}})),
                          400, "invalid_video"),
        "file_outside_allowed_folder": (dict(messages=user(img(media["outside"].as_uri()))), 400, "media_url_not_allowed"),
        "system_file": (dict(messages=user(img("file:///etc/hostname"))), 400, "media_url_not_allowed"),
        "dotdot_escape": (dict(messages=user(img(f"file://{allowed}/../outside.png"))), 400, "media_url_not_allowed"),
        "symlink_escape": (dict(messages=user(img((allowed / "escape.png").as_uri()))), 400, "media_url_not_allowed"),
        "bare_path": (dict(messages=user(img(str(allowed / "shot.png")))), 400, "media_url_not_allowed"),
        "remote_url": (dict(messages=user(img("http://127.0.0.1:9/shot.png"))), 400, "media_url_not_allowed"),
        "too_many_media_items": (dict(messages=user(*[img(data_url(media["png"], "image/png"))] * 4)),
                                 400, "too_many_media_items"),
        "video_too_long": (dict(messages=user({"type": "video_url", "video_url": {"url": data_url(media["long_video"], "video/mp4")}})),
                           400, "video_too_long"),
        "prompt_too_long": (dict(messages=user(text("hello world " * 400))), 400, "context_length_exceeded"),
        "oversized_request": (dict(messages=user(text("x" * 300_000))), 413, "request_too_large"),
        "unknown_model": (dict(model="gpt-4o"), 404, "model_not_found"),
        "max_tokens_over_limit": (dict(max_tokens=10**6), 400, None),
        "budget_without_thinking": (dict(extra_body={"thinking_budget": 4, "thinking": False}), 400, None),
        "unknown_content_type": (dict(messages=user({"type": "audio_url", "audio_url": {"url": "data:,"}})), 400, None),
        "unknown_role": (dict(messages=[{"role": "robot", "content": "hi"}]), 400, None),
    }  # fmt: skip


BAD = [
    "corrupt_image_data_url", "invalid_base64", "corrupt_video", "file_outside_allowed_folder", "system_file",
    "dotdot_escape", "symlink_escape", "bare_path", "remote_url", "too_many_media_items", "video_too_long",
    "prompt_too_long", "oversized_request", "unknown_model", "max_tokens_over_limit", "budget_without_thinking",
    "unknown_content_type", "unknown_role",
]  # fmt: skip


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("name", BAD)
def test_bad_input_gives_openai_error_json(client, media, name, stream) -> None:
    fields, status, code = bad_cases(media)[name]
    kwargs = {"model": MODEL, "messages": user(text("hello")), "max_tokens": 2, **fields}
    with pytest.raises(openai.APIStatusError) as info:
        result = client.chat.completions.create(**kwargs, stream=stream)
        if stream:
            list(result)
    exc = info.value
    assert exc.status_code == status, exc.response.text
    error = exc.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    if code is not None:
        assert error["code"] == code, error
    assert_good_request_works(client)


def raw(url: str, data: bytes | None = None, method: str = "GET") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


@pytest.mark.parametrize(
    "path, body, status",
    [("/v1/chat/completions", b"{not json", 400), ("/v1/chat/completions", b"[1, 2]", 400),
     ("/v1/nothing-here", None, 404), ("/v1/models/gpt-4o", None, 404)],
    ids=["malformed_json", "not_an_object", "unknown_route", "unknown_model_card"],
)  # fmt: skip
def test_raw_http_errors_have_the_openai_shape(server, client, path, body, status) -> None:
    code, payload = raw(server.removesuffix("/v1") + path, body, "POST" if body else "GET")
    assert code == status
    assert set(payload["error"]) == {"message", "type", "param", "code"}
    assert_good_request_works(client)


# ---- timeouts and disconnects cancel the work -----------------------------------------------------


def wait_idle(base: str, within_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        status, body = raw(base + "/health")
        if status == 200 and not body["queue"]["busy"] and body["queue"]["waiting"] == 0:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"the worker was still busy after {within_s} s")


LONG = dict(model=MODEL, messages=user(text("hello")), max_tokens=1500, temperature=1.0, seed=1)


def test_timeout_gives_504_and_cancels_the_generation(tiny_dir) -> None:
    # 1500 tokens take far longer than the 1 s budget (minutes on a loaded 2-core CPU); the worker
    # must be free again within seconds of the 504.
    app = create_app(mm_model.load(tiny_dir), limits=ServerLimits(timeout_s=1.0), model_name=MODEL)
    with background_server(app) as url, openai.OpenAI(base_url=url, api_key="x", max_retries=0) as c:
        with pytest.raises(openai.APIStatusError) as info:
            c.chat.completions.create(**LONG)
        assert info.value.status_code == 504
        assert info.value.response.json()["error"]["code"] == "timeout"
        wait_idle(url.removesuffix("/v1"), 10)
        assert_good_request_works(c)


def test_client_disconnect_cancels_the_stream(server, client) -> None:
    stream = client.chat.completions.create(**LONG, stream=True)
    next(iter(stream))
    stream.close()
    wait_idle(server.removesuffix("/v1"), 10)
    assert_good_request_works(client)


# ---- bounded load -----------------------------------------------------------------------------------


def test_concurrent_requests_complete_or_get_503_and_never_swap_answers(server, client, ref_model) -> None:
    """32 requests at once on a queue of 16: each completes with its own answer or is refused with 503.

    Memory: RSS after a burst must be within 64 MiB of the RSS after an identical warm-up burst (the
    first burst grows allocator arenas and thread stacks once; a leak of per-request buffers would
    grow every burst).
    """
    n = 32
    prompts = [f"request {i}: what is in the picture?" for i in range(n)]
    expected = [
        ref_model.chat(p, max_new_tokens=5, temperature=1.0, seed=i, thinking=False).text
        for i, p in enumerate(prompts)
    ]
    assert len(set(expected)) >= n - 2, "expected answers must tell requests apart"

    def one(i: int) -> tuple[str, Any]:
        try:
            r = client.chat.completions.create(model=MODEL, messages=user(text(prompts[i])), max_tokens=5,
                                               temperature=1.0, seed=i, timeout=60, extra_body={"thinking": False})  # fmt: skip
            return "ok", r.choices[0].message.content
        except openai.APIStatusError as exc:
            return str(exc.status_code), exc.response.headers.get("retry-after")

    def burst() -> list[tuple[str, Any]]:
        with ThreadPoolExecutor(n) as pool:
            futures = [pool.submit(one, i) for i in range(n)]
            return [f.result(timeout=120) for f in futures]

    burst()
    wait_idle(server.removesuffix("/v1"), 30)
    gc.collect()
    before = rss_bytes()
    results = burst()
    wait_idle(server.removesuffix("/v1"), 30)
    gc.collect()
    after = rss_bytes()

    ok = [i for i, (status, _) in enumerate(results) if status == "ok"]
    refused = [i for i, (status, _) in enumerate(results) if status == "503"]
    assert len(ok) + len(refused) == n, results
    assert ok, "at least the running and the queued requests complete"
    for i in ok:
        assert results[i][1] == expected[i], f"request {i} got {results[i][1]!r}, expected {expected[i]!r}"
    for i in refused:
        assert results[i][1] is not None and int(results[i][1]) >= 1, "503 carries Retry-After"
    assert after - before < 64 * 2**20, f"RSS grew {(after - before) / 2**20:.1f} MiB over a burst"
    assert_good_request_works(client)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_no_answer_is_empty_content_with_its_usage(client, stream) -> None:
    """As OpenAI does: the budget ran out while thinking, so the content is "" and usage still counts."""
    kwargs = dict(model=MODEL, messages=user(text("hello")), max_tokens=1, extra_body={"thinking": True})
    if stream:
        answer, thinking, usage, finish = stream_text(client, **kwargs)
    else:
        r = client.chat.completions.create(**kwargs)
        answer, usage, finish = r.choices[0].message.content, r.usage, r.choices[0].finish_reason
        thinking = (r.choices[0].message.model_extra or {}).get("reasoning_content")
    assert answer == "" and finish == "length"
    assert thinking, "the one token went to thinking"
    assert usage.completion_tokens == 1 and usage.prompt_tokens > 0


# ---- media options: vLLM's mm_processor_kwargs / media_io_kwargs, per-part keys, serve flags --------


def video_part(media: dict[str, Any], **options: Any) -> dict[str, Any]:
    return {"type": "video_url", "video_url": {"url": data_url(media["video"], "video/mp4")}, **options}


def image_part(media: dict[str, Any], **options: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": data_url(media["png"], "image/png")}, **options}


def vision_tokens(client, part: dict[str, Any], **extra: Any) -> int:
    r = client.chat.completions.create(
        model=MODEL, messages=user(part, text("?")), max_tokens=1, extra_body=extra
    )
    return r.usage.model_extra["vision_tokens"]


def test_mm_processor_kwargs_and_media_io_kwargs_are_honoured(client, media) -> None:
    # the clip: 25 frames at 10 fps -> 2 fps keeps 5 frames (2 chunks of 6 tokens), 1 fps keeps 2 (1 chunk)
    video = video_part(media)
    assert vision_tokens(client, video) == 12
    assert vision_tokens(client, video, mm_processor_kwargs={"fps": 1}) == 6
    assert vision_tokens(client, video, mm_processor_kwargs={"fps": 2.0}) == 12
    assert vision_tokens(client, video, media_io_kwargs={"video": {"fps": 1.0, "num_frames": -1}}) == 6
    assert (
        vision_tokens(client, video, media_io_kwargs={"video": {"num_frames": 4}}) == 6
    )  # capped: one chunk
    assert vision_tokens(client, video, mm_processor_kwargs={"num_frames": 4}) == 6
    # an image's patch budget: 40x60 is 8 patches (6 tokens); a budget of 4 gives 2 tokens
    assert vision_tokens(client, image_part(media)) == 6
    assert vision_tokens(client, image_part(media), mm_processor_kwargs={"max_patches": 4}) == 2
    # options written on the part (as our own client may send them) win over the request's
    assert vision_tokens(client, video_part(media, fps=1.0), mm_processor_kwargs={"fps": 2}) == 6
    assert vision_tokens(client, image_part(media, max_patches=4)) == 2


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_served_answer_with_media_options_equals_model_chat(client, ref_model, media, stream) -> None:
    ref = ref_model.chat(user({"type": "video", "video": media["video"]}, text("?")), max_new_tokens=6,
                         temperature=0.7, seed=11, fps=1.0, num_frames=2)  # fmt: skip
    kwargs = dict(model=MODEL, messages=user(video_part(media), text("?")), **SAMPLING,
                  extra_body={"media_io_kwargs": {"video": {"fps": 1.0, "num_frames": 2}}})  # fmt: skip
    if stream:
        answer, _, usage, _ = stream_text(client, **kwargs)
    else:
        r = client.chat.completions.create(**kwargs)
        answer, usage = r.choices[0].message.content, r.usage
    assert answer == ref.text and usage.model_extra["vision_tokens"] == ref.usage["vision_tokens"] == 6


def test_hf_part_keys_on_the_server(client, media) -> None:
    raw64 = base64.b64encode(media["png"]).decode()
    for part in ({"type": "image", "base64": raw64}, {"type": "image", "base64": data_url(media["png"], "image/png")},
                 {"type": "image", "url": data_url(media["png"], "image/png")},
                 {"type": "image", "path": str(media["dir"] / "shot.png")},
                 {"type": "image", "image": data_url(media["png"], "image/png"), "max_patches": 1024}):  # fmt: skip
        assert vision_tokens(client, part) == 6, part
    assert vision_tokens(client, {"type": "video", "path": str(media["dir"] / "clip.mp4"), "fps": 1}) == 6


MEDIA_BAD = {
    "fps_negative": (dict(mm_processor_kwargs={"fps": -1}), "mm_processor_kwargs.fps", "got -1"),
    "fps_nan_string": (dict(mm_processor_kwargs={"fps": "NaN"}), "mm_processor_kwargs.fps", "got 'NaN'"),
    "fps_over_cap": (dict(media_io_kwargs={"video": {"fps": 1000}}), "media_io_kwargs.video.fps", "got 1000"),
    "frames_zero": (dict(media_io_kwargs={"video": {"num_frames": 0}}), "media_io_kwargs.video.num_frames", "got 0"),
    "frames_float": (dict(mm_processor_kwargs={"num_frames": 2.5}), "mm_processor_kwargs.num_frames", "got 2.5"),
    "frames_bool": (dict(mm_processor_kwargs={"num_frames": True}), "mm_processor_kwargs.num_frames", "got True"),
    "patches_small": (dict(mm_processor_kwargs={"max_patches": 3}), "mm_processor_kwargs.max_patches", "got 3"),
    "patches_big": (dict(mm_processor_kwargs={"max_patches": 16385}), "mm_processor_kwargs.max_patches", "got 16385"),
    "not_an_object": (dict(mm_processor_kwargs=[1]), "mm_processor_kwargs", "got [1]"),
    "video_not_an_object": (dict(media_io_kwargs={"video": 16}), "media_io_kwargs.video", "got 16"),
    "disagree": (dict(mm_processor_kwargs={"fps": 1}, media_io_kwargs={"video": {"fps": 2}}),
                 "mm_processor_kwargs.fps", "disagree"),
    "part_fps": ("part_fps", "messages[0].content[0].fps", "got -2"),
    "part_frame_patches": ("part_frame_patches", "messages[0].content[0].max_patches", "<= 4096, got 5000"),
    "fps_on_image": ("fps_on_image", "messages[0].content[0].fps", "applies to video parts"),
    "hf_bad_base64": ("hf_bad_base64", "messages[0].content[0]", "not valid base64"),
    "hf_two_keys": ("hf_two_keys", "messages[0].content[0]", "url and base64: give one of them"),
    "hf_relative_path": ("hf_relative_path", "messages[0].content[0]", "absolute path"),
}  # fmt: skip


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("name", list(MEDIA_BAD))
def test_bad_media_options_are_400_naming_the_field(client, media, name, stream) -> None:
    extra, param, message = MEDIA_BAD[name]
    part = video_part(media)
    if isinstance(extra, str):
        part = {"part_fps": video_part(media, fps=-2), "part_frame_patches": video_part(media, max_patches=5000),
                "fps_on_image": image_part(media, fps=1.0),
                "hf_bad_base64": {"type": "image", "base64": "@@@"},
                "hf_two_keys": {"type": "image", "url": "data:,", "base64": "AAAA"},
                "hf_relative_path": {"type": "video", "path": "clip.mp4"}}[extra]  # fmt: skip
        extra = {}
    with pytest.raises(openai.BadRequestError) as info:
        result = client.chat.completions.create(model=MODEL, messages=user(part, text("?")), max_tokens=2,
                                                extra_body=extra, stream=stream)  # fmt: skip
        if stream:
            list(result)
    error = info.value.response.json()["error"]
    assert error["param"] == param and message in error["message"], error
    assert_good_request_works(client)


def test_unknown_processor_kwargs_are_ignored_with_a_warning(client, media, caplog) -> None:
    with caplog.at_level("WARNING", logger="mm_model.server.request"):
        n = vision_tokens(client, video_part(media), mm_processor_kwargs={"fps": 1, "do_resize": False},
                          media_io_kwargs={"video": {"backend": "pyav"}})  # fmt: skip
    assert n == 6
    assert "mm_processor_kwargs.do_resize, media_io_kwargs.video.backend" in caplog.text


def test_serve_media_flags_set_the_served_defaults(tiny_dir, media, monkeypatch) -> None:
    import uvicorn

    from mm_model.cli import main

    apps: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: apps.append(app))
    assert (
        main(["serve", str(tiny_dir), "--fps", "1", "--max-patches", "4", "--served-model-name", MODEL,
              "--compile", "off"]) == 0
    )  # fmt: skip
    with background_server(apps[0]) as url, openai.OpenAI(base_url=url, api_key="x", max_retries=0) as c:
        assert vision_tokens(c, video_part(media)) == 2  # 1 fps: one chunk of frames shrunk to 4 patches
        assert vision_tokens(c, image_part(media)) == 2
        assert vision_tokens(c, video_part(media), mm_processor_kwargs={"fps": 2, "max_patches": 4096}) == 12
    assert main(["serve", str(tiny_dir), "--num-frames", "0"]) == 2  # refused before loading


def test_serve_refuses_bad_media_flags(capsys) -> None:
    from mm_model.server.run import main

    assert main(["--fps", "-1"]) == 2
    assert "--fps must be a number > 0 and <= 60, got -1.0" in capsys.readouterr().out


# ---- the compiled decode step: on by default, paid at start-up ------------------------------------


@pytest.mark.parametrize(("argv", "env", "want"), [
    ([], None, True), ([], "0", False), (["--compile", "off"], None, False), (["--compile", "on"], "0", True),
])  # fmt: skip
def test_serve_compiles_the_decode_step_by_default(tiny_dir, monkeypatch, argv, env, want) -> None:
    import uvicorn

    from mm_model.cli import main

    loaded: list[Any] = []
    real_load = mm_model.load
    monkeypatch.setattr(mm_model, "load", lambda *a, **kw: loaded.append(kw["compile"]) or real_load(*a))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    if env is None:
        monkeypatch.delenv("MM_MODEL_COMPILE", raising=False)
    else:
        monkeypatch.setenv("MM_MODEL_COMPILE", env)
    assert main(["serve", str(tiny_dir), *argv]) == 0
    assert loaded == [want]


def test_server_warms_the_compiled_step_up_before_the_first_request(tiny_dir, monkeypatch) -> None:
    """The warm-up (the compile) runs on the worker first: /health says "warming_up" (503) until it
    ends, and a request sent meanwhile waits in the queue and is answered after it."""
    model = mm_model.load(tiny_dir)
    want = model.chat("hello", max_new_tokens=4).text
    gate, order = threading.Event(), []
    monkeypatch.setattr(mm_model.Model, "compiled", property(lambda self: True))

    def warm_up() -> float:
        order.append("warm-up")
        gate.wait(30)
        return 1.0

    model.warm_up = warm_up
    real_chat = model.chat
    model.chat = lambda *a, **kw: order.append("chat") or real_chat(*a, **kw)
    with background_server(create_app(model, model_name=MODEL)) as url:
        base = url.removesuffix("/v1")
        status, body = raw(base + "/health")
        assert (status, body["status"]) == (503, "warming_up")
        with openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=60) as c:
            answer: list[str] = []
            sent = threading.Thread(target=lambda: answer.append(c.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hello"}], max_tokens=4, temperature=0
            ).choices[0].message.content))  # fmt: skip
            sent.start()
            time.sleep(0.5)
            assert order == ["warm-up"] and not answer  # the request waits for the warm-up
            gate.set()
            sent.join(30)
        assert answer == [want] and order == ["warm-up", "chat"]
        status, body = raw(base + "/health")
        assert (status, body["status"]) == (200, "ok")


def test_serve_names_a_bad_compile_setting(monkeypatch, capsys) -> None:
    from mm_model.cli import main

    monkeypatch.setenv("MM_MODEL_COMPILE", "yes")
    assert main(["serve"]) == 2  # a message naming the setting, not a traceback
    captured = capsys.readouterr()
    assert "MM_MODEL_COMPILE must be 0 or 1, got 'yes'" in captured.out + captured.err
