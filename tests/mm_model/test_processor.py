"""The K2.5 chat template, placeholder expansion, media parsing and bad messages."""

from __future__ import annotations

import base64
import io

import pytest
import torch

from mm_model import InputError
from mm_model.processor import MessageError, Processor


@pytest.fixture
def processor(tiny_cfg, tokenizer) -> Processor:
    return Processor(tiny_cfg, tokenizer)


@pytest.mark.parametrize(
    ("name", "messages", "thinking", "expected"),
    [
        (
            "text_instant",
            [{"role": "user", "content": "Hi"}],
            False,
            "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>"
            "<|im_user|>user<|im_middle|>Hi<|im_end|><|im_assistant|>assistant<|im_middle|><think></think>",
        ),
        (
            "system_given_thinking",
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            True,
            "<|im_system|>system<|im_middle|>Be brief.<|im_end|>"
            "<|im_user|>user<|im_middle|>Hi<|im_end|><|im_assistant|>assistant<|im_middle|><think>",
        ),
        (
            "multi_turn_drops_history_reasoning",
            [{"role": "system", "content": "S"}, {"role": "user", "content": "a"},
             {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
            False,
            "<|im_system|>system<|im_middle|>S<|im_end|><|im_user|>user<|im_middle|>a<|im_end|>"
            "<|im_assistant|>assistant<|im_middle|><think></think>b<|im_end|>"
            "<|im_user|>user<|im_middle|>c<|im_end|><|im_assistant|>assistant<|im_middle|><think></think>",
        ),
    ],
)  # fmt: skip
def test_template(processor, name, messages, thinking, expected):
    text, media = processor.render(messages, thinking=thinking)
    assert text == expected, name
    assert media == []


def test_image_block_is_expanded_to_its_token_count(processor, images):
    prompt = processor([{"role": "user", "content": [{"type": "image", "image": images[0]}, "What?"]}])
    (item,) = prompt.media
    # 40x60 pixels -> padded 56x84 -> grid 4x6 -> 2*3 = 6 merged tokens.
    assert item.grid == (1, 4, 6) and item.tokens == 6
    assert (
        "<|media_begin|>image<|media_content|>" + "<|media_pad|>" * 6 + "<|media_end|>\nWhat?" in prompt.text
    )
    pad = processor.config.media_placeholder_token_id
    assert int((prompt.input_ids == pad).sum()) == 6 == prompt.vision_tokens
    assert prompt.pixel_values.shape == (24, 3, 14, 14)
    assert prompt.grid_thws.tolist() == [[1, 4, 6]]


def test_video_chunks_carry_timestamps_in_order(processor, sample_video):
    prompt = processor([{"role": "user", "content": [{"type": "video", "video": str(sample_video)}]}])
    # 25 frames at 10 fps, 2 fps sampling (Moonshot rule): round(linspace(0, 24, 5)) = 0, 6, 12, 18, 24
    # -> chunks of 4 and 1; the second starts at frame 24 = 2.4 s, which the reference formats as
    # int(2.4 % 1 * 1000) = 399 ms (float truncation; transformers' replace_video_token does the same).
    assert [m.grid[0] for m in prompt.media] == [4, 1]
    stamps = [m.timestamp for m in prompt.media]
    assert stamps == ["00:00:00.000", "00:00:02.399"]
    first = prompt.text.index(stamps[0] + "<|media_begin|>video<|media_content|>")
    assert first < prompt.text.index(stamps[1] + "<|media_begin|>video<|media_content|>")
    assert (
        int((prompt.input_ids == processor.config.media_placeholder_token_id).sum()) == prompt.vision_tokens
    )


def test_openai_style_data_url_equals_bytes(processor, images):
    buf = io.BytesIO()
    images[0].save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    a = processor([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    b = processor([{"role": "user", "content": [{"type": "image", "image": buf.getvalue()}]}])
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.pixel_values, b.pixel_values)


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([{"role": "user", "content": [{"type": "audio", "audio": "x.wav"}]}], "unknown content type 'audio'"),
        ([{"role": "robot", "content": "hi"}], "unknown role 'robot'"),
        ([], "non-empty list"),
        ([{"role": "user", "content": [{"type": "image"}]}], "no 'image'"),
        ([{"role": "user", "content": [{"type": "image", "image": 3.5}]}], "path, bytes or PIL"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.org/a.png"}}]}], "not fetched"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}], "base64"),
        ([{"role": "assistant", "content": [{"type": "image", "image": "a.png"}]}], "only accepted in user"),
        ([{"role": "user", "content": 5}], "string or a list"),
    ],
)  # fmt: skip
def test_bad_messages(processor, messages, match):
    with pytest.raises(MessageError, match=match):
        processor(messages)


def test_missing_media_files_name_the_file(processor, tmp_path):
    missing = tmp_path / "nowhere.png"
    with pytest.raises(InputError, match="nowhere.png"):
        processor([{"role": "user", "content": [{"type": "image", "image": str(missing)}]}])
    with pytest.raises(InputError, match="nowhere.mp4"):
        processor([{"role": "user", "content": [{"type": "video", "video": str(tmp_path / "nowhere.mp4")}]}])


def test_literal_placeholder_in_text_is_a_mismatch(processor):
    with pytest.raises(InputError, match="placeholder"):
        processor([{"role": "user", "content": "look <|media_pad|> here"}])


def test_prompt_longer_than_context(processor):
    limit = processor.config.text.max_position_embeddings
    with pytest.raises(InputError, match="context window"):
        processor([{"role": "user", "content": "the cat " * limit}])
    with pytest.raises(InputError, match="max_new_tokens"):
        processor([{"role": "user", "content": "hi"}], max_new_tokens=limit)


@pytest.mark.parity
def test_token_ids_match_transformers_processor(processor, tokenizer, images):
    """Same tokenizer: transformers' Kimi_K25Processor expands the same image placeholders identically."""
    transformers = pytest.importorskip("transformers")
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer._tok)
    ref = transformers.Kimi_K25Processor(image_processor=transformers.Kimi_K25ImageProcessor(), tokenizer=fast,
                                         video_processor=transformers.Kimi_K25VideoProcessor())  # fmt: skip
    messages = [{"role": "user", "content": [{"type": "image", "image": images[0]}, {"type": "text", "text": "and"},
                                             {"type": "image", "image": images[1]}, "what is in the picture?"]}]  # fmt: skip
    ours = processor(messages)
    one_pad_text = ours.text
    for m in ours.media:
        one_pad_text = one_pad_text.replace("<|media_pad|>" * m.tokens, "\0", 1)
    one_pad_text = one_pad_text.replace("\0", "<|media_pad|>")
    out = ref(text=[one_pad_text], images=images, return_tensors="pt")
    assert out["input_ids"][0].tolist() == ours.input_ids.tolist()
    assert out["image_grid_thw"].tolist() == ours.grid_thws.tolist()
    assert (out["pixel_values"] - ours.pixel_values).abs().max() < 0.02


# ---- media options: per part, per call, per process ---------------------------------------------


def _video(path, **options):
    return [{"role": "user", "content": [{"type": "video", "video": str(path), **options}, "What happens?"]}]


def _image(image, **options):
    return [{"role": "user", "content": [{"type": "image", "image": image, **options}, "What?"]}]


@pytest.mark.parametrize("level", ["part", "call", "process"])
def test_fps_1_gets_fewer_vision_tokens_than_fps_2(tiny_cfg, tokenizer, sample_video, level):
    # 25 frames at 10 fps: 2 fps keeps 5 frames (chunks of 4 + 1), 1 fps keeps round(2.5) = 2 (one chunk)
    def prompt(fps):
        if level == "part":
            return Processor(tiny_cfg, tokenizer)(_video(sample_video, fps=fps))
        if level == "call":
            return Processor(tiny_cfg, tokenizer)(_video(sample_video), fps=fps)
        return Processor(tiny_cfg, tokenizer, video_fps=fps)(_video(sample_video))

    two, one = prompt(2.0), prompt(1)
    assert [m.grid[0] for m in two.media] == [4, 1] and [m.grid[0] for m in one.media] == [2]
    assert one.vision_tokens < two.vision_tokens == 12


def test_num_frames_caps_the_frames_spread_over_the_whole_video(processor, tmp_path):
    from tests.conftest import write_video
    from video import iter_chunks

    path = write_video(tmp_path / "long.mp4", frames=40, fps=10, size=(32, 32))  # 4 s: 8 frames at 2 fps
    assert sum(m.grid[0] for m in processor(_video(path)).media) == 8
    capped = processor(_video(path), num_frames=3)
    assert [m.grid[0] for m in capped.media] == [3]
    (chunk,) = list(iter_chunks(str(path), fps=2.0, max_frames=3, cfg=processor.config.media))
    assert chunk.frame_indices == (0, 20, 39)  # first, middle and last frame: the whole clip
    assert torch.equal(capped.pixel_values, chunk.patches())
    # a cap above what fps keeps changes nothing (a cap, not a target)
    assert sum(m.grid[0] for m in processor(_video(path), num_frames=100).media) == 8


def test_precedence_part_over_call_over_process(tiny_cfg, tokenizer, sample_video, images):
    proc = Processor(tiny_cfg, tokenizer, video_fps=1.0, max_video_frames=1, max_patches=4)
    assert [m.grid[0] for m in proc(_video(sample_video)).media] == [1]  # process: 1 fps, capped at 1
    assert [m.grid[0] for m in proc(_video(sample_video), num_frames=2).media] == [2]  # call over process
    assert [m.grid[0] for m in proc(_video(sample_video, fps=2.0, num_frames=3), num_frames=2).media] == [
        3
    ]  # part
    assert [m.grid[0] for m in proc(_video(sample_video), fps=2.0, num_frames=5).media] == [4, 1]
    assert proc(_image(images[0])).vision_tokens == 2  # process max_patches 4
    assert proc(_image(images[0]), max_patches=1024).vision_tokens == 6  # call
    assert proc(_image(images[0], max_patches=4), max_patches=1024).vision_tokens == 2  # part
    served = proc.with_media_defaults(fps=2.0, num_frames=5)  # `mm-model serve --fps 2 --num-frames 5`
    assert [m.grid[0] for m in served(_video(sample_video)).media] == [4, 1]
    assert served.max_patches == 4 and proc.video_fps == 1.0


def test_max_patches_caps_image_tokens_and_frame_size(processor, images, sample_video):
    # 40x60 image: 2x4 = 8 patches; a budget of 4 shrinks it to 28x42 -> padded 28x56 -> 1x2 tokens
    assert processor(_image(images[0])).vision_tokens == 6
    assert processor(_image(images[0], max_patches=4)).vision_tokens == 2
    assert processor(_image(images[0]), max_patches=4).vision_tokens == 2
    # per call it is a flat kwarg (transformers' processor(max_patches=N)): frames get min(N, 4096)
    plain = processor(_video(sample_video))
    small = processor(_video(sample_video), max_patches=4)
    assert [m.grid[1:] for m in plain.media] == [(4, 6)] * 2 and [m.grid[1:] for m in small.media] == [
        (2, 4)
    ] * 2
    assert small.vision_tokens == 4 < plain.vision_tokens
    assert processor(_video(sample_video, max_patches=4)).vision_tokens == 4  # a video part's own budget
    assert processor(_video(sample_video), max_patches=16384).vision_tokens == plain.vision_tokens


@pytest.mark.parametrize(
    "messages, kwargs, match",
    [(lambda v, i: _video(v, fps=-1), {}, r"message 0 part 0: fps must be a number > 0 and <= 60, got -1"),
     (lambda v, i: _video(v, fps=float("nan")), {}, r"part 0: fps must be .*, got nan"),
     (lambda v, i: _video(v, fps=120), {}, r"fps must be .*<= 60, got 120"),
     (lambda v, i: _video(v, fps=True), {}, r"fps must be a number .*, got True"),
     (lambda v, i: _video(v, num_frames=0), {}, r"part 0: num_frames must be an integer >= 1 and <= 16384, got 0"),
     (lambda v, i: _video(v, num_frames=2.5), {}, r"num_frames must be an integer .*, got 2.5"),
     (lambda v, i: _video(v, max_patches=4097), {}, r"max_patches must be an integer >= 4 and <= 4096, got 4097"),
     (lambda v, i: _image(i, max_patches=3), {}, r"part 0: max_patches must be an integer >= 4 and <= 16384, got 3"),
     (lambda v, i: _image(i, max_patches="1024"), {}, r"max_patches must be an integer .*, got '1024'"),
     (lambda v, i: _image(i, fps=1.0), {}, r"part 0: fps applies to video parts"),
     (lambda v, i: _video(v), {"fps": 0}, r"^fps must be a number > 0 and <= 60, got 0$"),
     (lambda v, i: _video(v), {"num_frames": -3}, r"^num_frames must be an integer >= 1 .*, got -3$"),
     (lambda v, i: _image(i), {"max_patches": 16385}, r"^max_patches must be .*<= 16384, got 16385$")],
    ids=["fps_negative", "fps_nan", "fps_over_cap", "fps_bool", "frames_zero", "frames_float", "frame_patches_over",
         "image_patches_under", "patches_str", "fps_on_image", "call_fps", "call_frames", "call_patches"],
)  # fmt: skip
def test_bad_media_options_name_the_field_and_value(processor, sample_video, images, messages, kwargs, match):
    with pytest.raises(InputError, match=match):
        processor(messages(sample_video, images[0]), **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"video_fps": -1}, "video_fps must be a number > 0 and <= 60, got -1"),
     ({"max_video_frames": 0}, "max_video_frames must be an integer >= 1 and <= 16384, got 0"),
     ({"max_patches": 1}, "max_patches must be an integer >= 4 and <= 16384, got 1")],
)  # fmt: skip
def test_bad_process_defaults(tiny_cfg, tokenizer, kwargs, match):
    with pytest.raises(InputError, match=match):
        Processor(tiny_cfg, tokenizer, **kwargs)


def test_hf_keys_url_path_base64_equal_the_image_key(processor, images, tmp_path):
    buf = io.BytesIO()
    images[0].save(buf, format="PNG")
    raw = base64.b64encode(buf.getvalue()).decode()
    path = tmp_path / "shot.png"
    path.write_bytes(buf.getvalue())
    ref = processor(_image(buf.getvalue()))
    for part in ({"type": "image", "url": str(path)}, {"type": "image", "url": "data:image/png;base64," + raw},
                 {"type": "image", "url": path.as_uri()}, {"type": "image", "path": str(path)},
                 {"type": "image", "path": path}, {"type": "image", "base64": raw},
                 {"type": "image", "base64": "data:image/png;base64," + raw}):  # fmt: skip
        got = processor([{"role": "user", "content": [part, "What?"]}])
        assert torch.equal(got.input_ids, ref.input_ids) and torch.equal(
            got.pixel_values, ref.pixel_values
        ), part


def test_hf_keys_for_video(processor, sample_video):
    ref = processor(_video(sample_video))
    data = base64.b64encode(sample_video.read_bytes()).decode()
    for part in ({"type": "video", "path": str(sample_video)}, {"type": "video", "base64": data}):
        assert torch.equal(
            processor([{"role": "user", "content": [part, "What happens?"]}]).input_ids, ref.input_ids
        )


@pytest.mark.parametrize(
    "part, match",
    [({"type": "image", "base64": "@@not base64@@"}, "message 0 part 0: image base64 is not valid base64"),
     ({"type": "image", "base64": b"abc"}, "image base64 must be a string"),
     ({"type": "image", "url": 3}, "image url must be a string"),
     ({"type": "video", "path": 3}, "video path must be a string or path"),
     ({"type": "image", "url": "https://x.org/a.png"}, "not fetched"),
     ({"type": "image", "path": "/no/such/file.png"}, "file.png"),
     ({"type": "image", "url": "a.png", "path": "b.png"}, "has url and path: give one of them"),
     ({"type": "video"}, "no 'video' field \\(nor video_url, url, path or base64\\)")],
    ids=["bad_base64", "base64_bytes", "url_int", "path_int", "remote_url", "missing_path", "two_keys", "none"],
)  # fmt: skip
def test_bad_hf_keys(processor, part, match):
    with pytest.raises(InputError, match=match):
        processor([{"role": "user", "content": [part]}])
