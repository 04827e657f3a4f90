"""`mm_model.load` / `Model.chat` / `Model.generate` on a tiny random model saved to disk."""

from __future__ import annotations

import shutil

import pytest
import torch

import mm_model
from mm_model import InputError
from mm_model.api import ChatResult


@pytest.fixture(scope="module")
def model(tiny_dir):
    return mm_model.load(tiny_dir)


def _image_video_messages(images, sample_video):
    return [{"role": "user", "content": [
        {"type": "image", "image": images[0]}, {"type": "image", "image": images[1]},
        {"type": "video", "video": str(sample_video)}, {"type": "text", "text": "what is in the picture?"},
    ]}]  # fmt: skip


@pytest.mark.parametrize("kind", ["text", "image_video"])
@pytest.mark.parametrize("thinking", [False, True])
def test_chat_returns_text_streams_the_same_and_counts_add_up(model, images, sample_video, kind, thinking):
    messages = "the cat sat on" if kind == "text" else _image_video_messages(images, sample_video)
    whole = model.chat(messages, max_new_tokens=9, thinking=thinking)
    assert isinstance(whole, mm_model.ChatResult)
    stream = model.chat(messages, max_new_tokens=9, thinking=thinking, stream=True)
    pieces = list(stream)
    assert all(isinstance(p, str) and p.kind in ("thinking", "answer") for p in pieces)
    assert "".join(p for p in pieces if p.kind == "answer") == whole.text
    assert "".join(p for p in pieces if p.kind == "thinking") == whole.thinking
    assert (
        stream.result.text == whole.text
        and stream.result.usage["completion_tokens"] == whole.usage["completion_tokens"]
    )
    u = whole.usage
    assert u["completion_tokens"] <= 9
    # Every new token is thinking, answer, or a marker: `</think>` (at most once, thinking mode) or the stop.
    markers = (
        u["completion_tokens"] - u["thinking_tokens"] - u["answer_tokens"] - (whole.finish_reason == "stop")
    )
    assert markers in ((0, 1) if thinking else (0,))
    if whole.finish_reason == "length":
        assert u["completion_tokens"] == 9
    if not thinking:
        assert u["thinking_tokens"] == 0 and whole.thinking == ""
    prompt = model.processor(
        messages if kind != "text" else [{"role": "user", "content": messages}], thinking=thinking
    )
    assert u["prompt_tokens"] == prompt.input_ids.numel()
    assert (
        u["vision_tokens"]
        == prompt.vision_tokens
        == (0 if kind == "text" else sum(m.tokens for m in prompt.media))
    )


def test_chat_is_deterministic_with_a_seed(model):
    a = model.chat("hello world", max_new_tokens=8, temperature=1.0, seed=3)
    b = model.chat("hello world", max_new_tokens=8, temperature=1.0, seed=3)
    assert a.text == b.text and a.usage == b.usage


def test_media_features_are_reused_across_turns(model, images):
    turn = [{"role": "user", "content": [{"type": "image", "image": images[0]}, "what is in the picture?"]}]
    first = model.chat(turn, max_new_tokens=2)
    follow = [*turn, {"role": "assistant", "content": first.text}, {"role": "user", "content": "and now?"}]
    second = model.chat(follow, max_new_tokens=2)
    assert second.usage["media_items_encoded"] == 0  # the image of turn 1 was not encoded again
    assert second.usage["vision_tokens"] == first.usage["vision_tokens"]


def test_reused_features_equal_fresh_ones(model, images):
    prompt = model.processor([{"role": "user", "content": [{"type": "image", "image": images[1]}]}])
    cached, _ = model.media_embeddings(prompt.media)
    with torch.no_grad():
        fresh = model.model.embed_pixels(prompt.pixel_values, prompt.grid_thws)
    assert torch.equal(cached, fresh)


def test_generate_with_token_ids_matches_forward(model, images):
    prompt = model.processor([{"role": "user", "content": [{"type": "image", "image": images[0]}, "hi"]}])
    new = model.generate(prompt.input_ids, pixel_values=prompt.pixel_values, grid_thws=prompt.grid_thws,
                         max_new_tokens=4)  # fmt: skip
    assert new.shape == (1, 4)
    with torch.no_grad():  # greedy: each new token is the argmax of a full forward over the prefix
        ids = prompt.input_ids[None]
        for t in new[0].tolist():
            logits = model.model(ids, prompt.pixel_values, prompt.grid_thws)
            assert int(logits[0, -1].argmax()) == t
            ids = torch.cat([ids, torch.tensor([[t]])], dim=1)


def test_without_tokenizer_generate_works_and_chat_explains(tiny_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_dir, bare)
    (bare / "tokenizer.json").unlink()
    m = mm_model.load(bare)
    assert m.tokenizer is None
    assert m.generate(torch.tensor([1, 2, 3]), max_new_tokens=3).shape == (1, 3)
    with pytest.raises(InputError, match="no tokenizer"):
        m.chat("hello")


@pytest.mark.parametrize(
    ("messages", "kwargs", "match"),
    [
        ([{"role": "user", "content": "see <|media_pad|>"}], {}, "placeholder"),
        ([{"role": "user", "content": [{"type": "sound", "sound": "a.wav"}]}], {}, "unknown content type"),
        ([{"role": "user", "content": [{"type": "image", "image": "/no/such/file.png"}]}], {}, "file.png"),
        ("the cat " * 2000, {}, "context window"),
        ("hi", {"budget": 10, "thinking": False}, "thinking=True"),
        ("hi", {"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_bad_chat_input(model, messages, kwargs, match):
    with pytest.raises(InputError, match=match):
        model.chat(messages, **kwargs)


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="neither a bundled model"):
        mm_model.load(tmp_path / "missing")
    with pytest.raises(InputError, match="config.json"):
        mm_model.load(tmp_path)
    with pytest.raises(InputError, match="not int"):
        mm_model.load(7)
    with pytest.raises(InputError, match="model source is empty"):
        mm_model.load("")


@pytest.mark.parametrize("budget", [0, 1, 3])
def test_thinking_budget_caps_thinking_in_chat(model, budget):
    """With a budget the thinking never exceeds it and the answer follows the forced close."""
    for seed in range(3):
        r = model.chat(
            "the cat sat on", max_new_tokens=12, thinking=True, budget=budget, temperature=1.0, seed=seed
        )
        assert r.usage["thinking_tokens"] <= budget
        if r.usage["completion_tokens"] > budget + 1:  # room left after </think>: the answer started
            assert r.usage["answer_tokens"] + (r.finish_reason == "stop") >= 1


def test_auto_budget_needs_a_calibration(model):
    with pytest.raises(InputError, match="calibration"):
        model.chat("hi", thinking=True, budget="auto", max_new_tokens=4)


def test_closing_a_stream_stops_generation(model):
    stream = model.chat("the cat sat on", max_new_tokens=50, stream=True)
    next(stream, None)
    stream.close()
    assert next(stream, None) is None and stream.result is None


def test_streams_never_leave_the_caller_in_inference_mode(model):
    """Grad mode is thread-local: a suspended, interleaved or abandoned stream must not leak it."""
    a = model.chat("the cat", max_new_tokens=6, stream=True)
    b = model.chat("hello world", max_new_tokens=6, stream=True)
    next(a, None)
    next(b, None)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    a.close()  # closed in crossed order
    list(b)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_an_empty_answer_says_so_rather_than_reading_as_blank(model):
    r = model.chat("hello", thinking=True, max_new_tokens=1)  # the one token is spent thinking
    assert r.text == "" and r.finish_reason == "length" and not r.answered
    assert r.notice == "the model produced no answer: max_new_tokens ran out while thinking"
    usage = {"prompt_tokens": 3, "vision_tokens": 0, "thinking_tokens": 0, "answer_tokens": 1}
    ended = ChatResult(" \n", "", usage, "stop")  # the model closed its turn at once (white space only)
    assert (
        not ended.answered and ended.notice == "the model produced no answer: it ended its turn without one"
    )
    assert ChatResult("red", "", usage).notice is None and ChatResult("red", "", usage).answered


# ---- media options through Model.chat ------------------------------------------------------------


def _video(path, **options):
    return [{"role": "user", "content": [{"type": "video", "video": str(path), **options}, "what happens?"]}]


def _vision_tokens(model, messages, **kwargs) -> int:
    return model.chat(messages, max_new_tokens=1, **kwargs).usage["vision_tokens"]


@pytest.mark.parametrize("level", ["part", "call"])
def test_chat_media_options_change_the_vision_tokens(model, images, sample_video, level):
    def tokens(messages_of, **options):
        if level == "part":
            return _vision_tokens(model, messages_of(**options))
        return _vision_tokens(model, messages_of(), **options)

    video = lambda **o: _video(sample_video, **o)  # noqa: E731
    image = lambda **o: [{"role": "user", "content": [{"type": "image", "image": images[0], **o}, "what?"]}]  # noqa: E731
    # 25 frames at 10 fps: 2 fps -> 5 frames in 2 chunks of 6 tokens; 1 fps -> 2 frames, 1 chunk
    assert tokens(video, fps=1.0) == 6 < tokens(video, fps=2.0) == 12 == tokens(video)
    assert tokens(video, num_frames=4) == 6  # one chunk of 4 frames instead of 4 + 1
    assert tokens(image, max_patches=4) == 2 < tokens(image) == 6


def test_chat_media_options_stream_the_same(model, sample_video):
    whole = model.chat(
        _video(sample_video), max_new_tokens=3, fps=1.0, temperature=0.8, seed=3, thinking=False
    )
    stream = model.chat(
        _video(sample_video), max_new_tokens=3, fps=1.0, temperature=0.8, seed=3, thinking=False, stream=True
    )
    assert "".join(stream) == whole.text and stream.result.usage == whole.usage
    assert whole.usage["vision_tokens"] == 6


@pytest.mark.parametrize(
    "kwargs, match",
    [({"fps": -1}, r"^fps must be a number > 0 and <= 60, got -1$"), ({"fps": float("inf")}, "fps must be"),
     ({"num_frames": 0}, r"^num_frames must be an integer >= 1 and <= 16384, got 0$"),
     ({"num_frames": True}, "num_frames must be an integer"),
     ({"max_patches": 2}, r"^max_patches must be an integer >= 4 and <= 16384, got 2$"),
     ({"max_patches": 20000}, "max_patches must be .*got 20000")],
)  # fmt: skip
@pytest.mark.parametrize("stream", [False, True])
def test_bad_media_options_raise_before_any_generation(model, sample_video, kwargs, match, stream):
    with pytest.raises(InputError, match=match):
        model.chat(_video(sample_video), max_new_tokens=1, stream=stream, **kwargs)
    with pytest.raises(InputError, match=r"message 0 part 0: fps must be .*, got 0"):
        model.chat(_video(sample_video, fps=0), max_new_tokens=1)
