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
