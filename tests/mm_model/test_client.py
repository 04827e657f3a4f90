"""`OpenAIBackend` against our server on a loopback port: the same results as `Model.chat`."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

import mm_model  # noqa: E402
from mm_model.client import OpenAIBackend, media_url, to_openai_messages  # noqa: E402
from mm_model.server import ServerLimits, background_server, create_app  # noqa: E402

KEY = "test-key"


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("client_media") / "shot.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (48, 56, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def ref_model(tiny_dir) -> mm_model.Model:
    return mm_model.load(tiny_dir)


@pytest.fixture(scope="module")
def url(tiny_dir, picture) -> str:
    limits = ServerLimits(allowed_local_media_path=picture.parent, timeout_s=60)
    with background_server(create_app(mm_model.load(tiny_dir), limits=limits, api_key=KEY)) as base:
        yield base


@pytest.fixture
def backend(url, monkeypatch) -> OpenAIBackend:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # the key comes from the environment, as with OpenAI's client
    return OpenAIBackend(url, max_retries=0)


def messages(*parts: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [*parts, {"type": "text", "text": "what is in the picture?"}]}]


CASES = {
    "image_path": lambda pic, video: ({"type": "image", "image": str(pic)}, {}),
    "pil_image": lambda pic, video: ({"type": "image", "image": Image.open(pic)}, {}),
    "video_path_thinking": lambda pic, video: ({"type": "video", "video": str(video)}, {"thinking": True, "budget": 2}),
    "image_bytes_thinking_unbounded": lambda pic, video: ({"type": "image", "image": pic.read_bytes()}, {"thinking": True}),
}  # fmt: skip


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("case", list(CASES))
def test_backend_chat_equals_model_chat(backend, ref_model, picture, sample_video, case, stream) -> None:
    part, think = CASES[case](picture, sample_video)
    settings = dict(temperature=0.9, seed=4, **think)
    ref = ref_model.chat(messages(part), max_new_tokens=6, **settings)
    got = backend.chat(messages(part), max_tokens=6, stream=stream, **settings)
    if stream:
        pieces = list(got)
        assert "".join(p for p in pieces if p.kind == "answer") == ref.text
        assert "".join(p for p in pieces if p.kind == "thinking") == ref.thinking
        got = got.result
        assert got.timings["time_to_first_token_s"] <= got.timings["total_s"]
    assert (got.text, got.thinking, got.finish_reason) == (ref.text, ref.thinking, ref.finish_reason)
    keys = ("prompt_tokens", "vision_tokens", "thinking_tokens", "answer_tokens", "completion_tokens")
    assert {k: got.usage[k] for k in keys} == {k: ref.usage[k] for k in keys}
    assert got.timings["total_s"] > 0


def test_file_urls_for_a_server_on_this_machine(url, ref_model, picture, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    backend = OpenAIBackend(url, media="file")
    assert to_openai_messages(messages({"type": "image", "image": str(picture)}), "file")[0]["content"][0] == {
        "type": "image_url", "image_url": {"url": picture.resolve().as_uri()}
    }  # fmt: skip
    got = backend.chat(messages({"type": "image", "image": picture}), max_tokens=4)
    assert got.text == ref_model.chat(messages({"type": "image", "image": picture}), max_new_tokens=4).text


def test_bad_input_raises_input_error_with_the_server_message(backend) -> None:
    with pytest.raises(mm_model.InputError, match="not a recognised image") as info:
        backend.chat(messages({"type": "image", "image": b"not an image"}), max_tokens=2)
    assert info.value.status_code == 400
    with pytest.raises(mm_model.InputError, match="needs thinking"):
        list(backend.chat("hi", max_tokens=2, budget=3, thinking=False, stream=True))


def test_wrong_api_key_is_refused(url, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(openai.AuthenticationError):
        OpenAIBackend(url, model="x", api_key="wrong", max_retries=0).chat("hi", max_tokens=2)


@pytest.mark.parametrize(
    "value, kind, prefix",
    [(b"\x89PNG", "image", "data:image/png;base64,"), (b"\0\0", "video", "data:video/mp4;base64,"),
     ("data:image/jpeg;base64,AAAA", "image", "data:image/jpeg;base64,AAAA"),
     ("file:///x/y.mp4", "video", "file:///x/y.mp4")],
    ids=["image_bytes", "video_bytes", "data_url_passes", "file_url_passes"],
)  # fmt: skip
def test_media_url(value, kind, prefix) -> None:
    assert media_url(value, kind).startswith(prefix)


def test_media_url_of_files_and_images(tmp_path) -> None:
    path = tmp_path / "a.jpg"
    Image.new("RGB", (4, 4)).save(path)
    url = media_url(path, "image")
    assert (
        url.startswith("data:image/jpeg;base64,") and base64.b64decode(url.split(",")[1]) == path.read_bytes()
    )
    png = media_url(Image.new("RGB", (4, 4)), "image")
    assert Image.open(io.BytesIO(base64.b64decode(png.split(",")[1]))).size == (4, 4)
    with pytest.raises(mm_model.InputError, match="does not exist"):
        media_url(tmp_path / "missing.mp4", "video")
    with pytest.raises(mm_model.InputError, match="must be a path"):
        media_url(3, "video")


def test_to_openai_messages_keeps_text_and_ready_parts() -> None:
    ready = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    out = to_openai_messages([{"role": "system", "content": "be brief"},
                              {"role": "user", "content": ["plain", ready, {"type": "text", "text": "t"}]}])  # fmt: skip
    assert out == [{"role": "system", "content": "be brief"},
                   {"role": "user", "content": [{"type": "text", "text": "plain"}, ready, {"type": "text", "text": "t"}]}]  # fmt: skip
    assert to_openai_messages("hi") == [{"role": "user", "content": "hi"}]


# ---- media options: what the backend sends, and what the endpoint does with it -------------------


class Recorder:
    """An httpx transport standing in for the endpoint: records each request body, answers "ok"."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: Any) -> Any:
        import httpx

        body = json.loads(request.content)
        self.bodies.append(body)
        head = {"id": "x", "created": 0, "model": "m"}
        if body.get("stream"):
            chunk = {**head, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}  # fmt: skip
            sse = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
            return httpx.Response(200, content=sse.encode(), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json={**head, "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})  # fmt: skip


def recording_backend(**kwargs: Any) -> tuple[OpenAIBackend, Recorder]:
    import httpx

    recorder = Recorder()
    backend = OpenAIBackend("http://endpoint.invalid/v1", model="m", api_key="k", **kwargs)
    backend.client = openai.OpenAI(base_url="http://endpoint.invalid/v1", api_key="k", max_retries=0,
                                   http_client=httpx.Client(transport=httpx.MockTransport(recorder)))  # fmt: skip
    return backend, recorder


VIDEO = {"type": "video", "video": b"\0\0\0 ftypisom"}  # not decoded client-side: any bytes do
IMAGE = {"type": "image", "image": b"\x89PNG"}
NATIVE = {"media_io_kwargs": {"video": {"fps": 2.0, "num_frames": -1}}}

SENT = {
    "text_only": ([], {}, {}),
    "image_only": ([IMAGE], {}, {}),
    "video_native": ([VIDEO], {}, NATIVE),
    "fps_no_cap": ([VIDEO], {"fps": 1}, {"media_io_kwargs": {"video": {"fps": 1.0, "num_frames": -1}}}),
    "cap_at_native_fps": ([VIDEO], {"num_frames": 16}, {"media_io_kwargs": {"video": {"fps": 2.0, "num_frames": 16}}}),
    "image_budget": ([IMAGE], {"max_patches": 1024}, {"mm_processor_kwargs": {"max_patches": 1024}}),
    "part_options_hoisted": ([{**VIDEO, "fps": 0.5, "num_frames": 8}, {**VIDEO, "fps": 0.5}], {"num_frames": 8},
                             {"media_io_kwargs": {"video": {"fps": 0.5, "num_frames": 8}}}),
    "part_budget_hoisted": ([{**IMAGE, "max_patches": 256}, {**IMAGE, "max_patches": 256}], {},
                            {"mm_processor_kwargs": {"max_patches": 256}}),
    "part_over_call": ([{**VIDEO, "fps": 1.0}], {"fps": 4.0}, {"media_io_kwargs": {"video": {"fps": 1.0, "num_frames": -1}}}),
    "ready_openai_part": ([{"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}, "fps": 1}], {},
                          {"media_io_kwargs": {"video": {"fps": 1.0, "num_frames": -1}}}),
}  # fmt: skip


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("case", list(SENT))
def test_backend_sends_media_options_as_vllm_fields(case, stream) -> None:
    parts, options, expected = SENT[case]
    backend, recorder = recording_backend()
    got = backend.chat(messages(*parts), max_tokens=2, stream=stream, **options)
    assert ("".join(got) if stream else got.text) == "ok"
    (body,) = recorder.bodies
    assert {k: body[k] for k in ("media_io_kwargs", "mm_processor_kwargs") if k in body} == expected
    for part in body["messages"][0]["content"]:  # options travel hoisted, never on the parts
        assert not set(part) & {"fps", "num_frames", "max_patches"}, part


def test_native_video_off_leaves_the_endpoint_default_and_extra_body_wins() -> None:
    backend, recorder = recording_backend(native_video=False)
    backend.chat(messages(VIDEO), max_tokens=2)
    backend.chat(messages(VIDEO), max_tokens=2, num_frames=8)
    backend.chat(
        messages(VIDEO), max_tokens=2, fps=1.0, extra_body={"media_io_kwargs": {"video": {"num_frames": 3}}}
    )
    assert "media_io_kwargs" not in recorder.bodies[0]
    assert recorder.bodies[1]["media_io_kwargs"] == {"video": {"num_frames": 8}}
    assert recorder.bodies[2]["media_io_kwargs"] == {"video": {"num_frames": 3}}


@pytest.mark.parametrize(
    "parts, options, match",
    [([VIDEO], {"fps": -1}, r"^fps must be a number > 0 and <= 60, got -1$"),
     ([VIDEO], {"num_frames": 0}, r"^num_frames must be an integer >= 1 and <= 16384, got 0$"),
     ([IMAGE], {"max_patches": 2}, r"^max_patches must be an integer >= 4 and <= 16384, got 2$"),
     ([{**VIDEO, "fps": float("nan")}], {}, r"message 0 part 0: fps must be .*, got nan"),
     ([{**VIDEO, "max_patches": 5000}], {}, r"message 0 part 0: max_patches must be .*<= 4096, got 5000"),
     ([{**VIDEO, "fps": 1.0}, VIDEO], {}, r"video parts ask for different \(fps, num_frames\)"),
     ([{**IMAGE, "max_patches": 64}, VIDEO], {}, r"media parts ask for different max_patches")],
    ids=["fps", "num_frames", "max_patches", "part_fps_nan", "part_frame_budget", "videos_disagree",
         "image_and_video_budgets"],
)  # fmt: skip
def test_bad_or_unsendable_media_options_raise_before_sending(parts, options, match) -> None:
    backend, recorder = recording_backend()
    with pytest.raises(mm_model.InputError, match=match):
        backend.chat(messages(*parts), max_tokens=2, **options)
    assert recorder.bodies == []


def test_media_options_reach_our_server(backend, ref_model, picture, sample_video) -> None:
    video = {
        "type": "video",
        "video": str(sample_video),
    }  # 25 frames at 10 fps: 2 chunks at 2 fps, 1 at 1 fps

    def tokens(*parts: Any, **options: Any) -> int:
        return backend.chat(messages(*parts), max_tokens=1, **options).usage["vision_tokens"]

    assert tokens(video, fps=1.0) == 6 < tokens(video) == 12
    assert tokens(video, num_frames=4) == 6 == tokens({**video, "fps": 1.0})
    image = {"type": "image", "image": str(picture)}  # 48x56: 3x4 patches, padded to 4x4: 4 tokens
    assert tokens(image, max_patches=4) == 2 < tokens(image) == 4
    ref = ref_model.chat(messages(video), max_new_tokens=5, temperature=0.9, seed=2, fps=1.0, num_frames=2)
    got = backend.chat(messages(video), max_tokens=5, temperature=0.9, seed=2, fps=1.0, num_frames=2)
    assert (got.text, got.usage["vision_tokens"]) == (ref.text, ref.usage["vision_tokens"])


def test_hf_base64_parts_are_sent_as_data_urls() -> None:
    raw = base64.b64encode(b"\x89PNG").decode()
    out = to_openai_messages([{"role": "user", "content": [{"type": "image", "base64": raw},
                                                           {"type": "video", "base64": "data:video/webm;base64,AAAA"}]}])  # fmt: skip
    assert out[0]["content"] == [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{raw}"}},
                                 {"type": "video_url", "video_url": {"url": "data:video/webm;base64,AAAA"}}]  # fmt: skip
