"""`OpenAIBackend` against our server on a loopback port: the same results as `Model.chat`."""

from __future__ import annotations

import base64
import io
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
