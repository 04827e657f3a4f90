"""Media option checks, precedence and vLLM's request fields (pure functions, no model)."""

from __future__ import annotations

import math

import pytest

from mm_model import InputError
from mm_model.media_options import (
    MediaOptionError,
    MediaOptions,
    from_vllm,
    image_config,
    part_options,
    to_vllm,
    video_config,
)
from vision.config import MediaConfig

BAD = {
    "fps": [-1, 0, 0.0, math.nan, math.inf, 61, True, "2", [1]],
    "num_frames": [-1, 0, 1.5, 16385, False, "8", 2.0],
    "max_patches": [-4, 0, 3, 16385, True, "1024", 64.0],
}


@pytest.mark.parametrize(
    "name, value", [(n, v) for n, values in BAD.items() for v in values], ids=lambda x: repr(x)[:12]
)
def test_bad_values_name_the_field_and_the_value(name, value) -> None:
    with pytest.raises(MediaOptionError, match=rf"message 0 part 1: {name} must be .*, got ") as info:
        MediaOptions.checked(**{name: value}, where="message 0 part 1: ")
    assert isinstance(info.value, InputError) and info.value.field == name


@pytest.mark.parametrize(
    "kwargs, expected",
    [({"fps": 1}, MediaOptions(fps=1.0)), ({"fps": 60}, MediaOptions(fps=60.0)),
     ({"num_frames": 1, "max_patches": 4}, MediaOptions(num_frames=1, max_patches=4)),
     ({"max_patches": 16384}, MediaOptions(max_patches=16384)), ({}, MediaOptions())],
    ids=["fps_int_is_float", "fps_at_cap", "smallest", "image_limit", "nothing"],
)  # fmt: skip
def test_good_values(kwargs, expected) -> None:
    assert MediaOptions.checked(**kwargs) == expected
    assert isinstance(MediaOptions.checked(**kwargs).fps, (float, type(None)))


def test_process_names_are_reported_as_the_caller_wrote_them() -> None:
    with pytest.raises(InputError, match="video_fps must be a number > 0 and <= 60, got -2"):
        MediaOptions.checked(fps=-2, names={"fps": "video_fps"})


def test_part_options_limits_depend_on_the_kind() -> None:
    assert part_options({"max_patches": 8000}, "image") == MediaOptions(max_patches=8000)
    with pytest.raises(InputError, match="max_patches must be an integer >= 4 and <= 4096, got 8000"):
        part_options({"max_patches": 8000}, "video")
    with pytest.raises(InputError, match="fps applies to video parts"):
        part_options({"fps": 1.0}, "image")


def test_precedence_part_over_call_over_config() -> None:
    cfg = MediaConfig(in_patch_limit=224)
    assert image_config(cfg, MediaOptions(), MediaOptions()) is cfg
    assert image_config(cfg, MediaOptions(), MediaOptions(max_patches=64)).in_patch_limit == 64
    assert image_config(cfg, MediaOptions(max_patches=16), MediaOptions(max_patches=64)).in_patch_limit == 16
    video, cap = video_config(cfg, MediaOptions(num_frames=3), MediaOptions(fps=1.0, num_frames=9))
    assert (video.sample_fps, cap, video.in_patch_limit_each_frame) == (1.0, 3, 4096)
    # a call-wide budget caps frames but never enlarges them; the part's own budget is the frame's
    assert (
        video_config(cfg, MediaOptions(), MediaOptions(max_patches=100))[0].in_patch_limit_each_frame == 100
    )
    assert (
        video_config(cfg, MediaOptions(), MediaOptions(max_patches=9000))[0].in_patch_limit_each_frame == 4096
    )
    assert video_config(cfg, MediaOptions(max_patches=50), MediaOptions(max_patches=100))[0].in_patch_limit_each_frame == 50  # fmt: skip


@pytest.mark.parametrize(
    "proc, io, expected",
    [(None, None, MediaOptions()),
     ({"fps": 1, "num_frames": 8, "max_patches": 256}, None, MediaOptions(1.0, 8, 256)),
     (None, {"video": {"fps": 0.5, "num_frames": 16}}, MediaOptions(0.5, 16)),
     (None, {"video": {"fps": 2.0, "num_frames": -1}}, MediaOptions(2.0)),
     ({"max_patches": 64}, {"video": {"fps": 1}}, MediaOptions(1.0, None, 64)),
     ({"fps": 1}, {"video": {"fps": 1.0}}, MediaOptions(1.0))],
    ids=["none", "processor_kwargs", "media_io", "minus_one_is_no_cap", "both", "both_agree"],
)  # fmt: skip
def test_from_vllm(proc, io, expected) -> None:
    assert from_vllm(proc, io) == (expected, [])


@pytest.mark.parametrize(
    "proc, io, field",
    [({"fps": -1}, None, "mm_processor_kwargs.fps"), ({"num_frames": 0}, None, "mm_processor_kwargs.num_frames"),
     ({"max_patches": 2}, None, "mm_processor_kwargs.max_patches"),
     (None, {"video": {"fps": "fast"}}, "media_io_kwargs.video.fps"),
     (None, {"video": {"num_frames": -2}}, "media_io_kwargs.video.num_frames"),
     ("fps=1", None, "mm_processor_kwargs"), (None, {"video": 3}, "media_io_kwargs.video"),
     ({"fps": 1}, {"video": {"fps": 2}}, "mm_processor_kwargs.fps")],
    ids=["fps", "num_frames", "max_patches", "io_fps", "io_num_frames", "not_object", "video_not_object", "disagree"],
)  # fmt: skip
def test_from_vllm_refuses_naming_the_field(proc, io, field) -> None:
    with pytest.raises(MediaOptionError) as info:
        from_vllm(proc, io)
    assert info.value.field == field and field in str(info.value)


def test_from_vllm_lists_what_it_does_not_use() -> None:
    _, ignored = from_vllm(
        {"do_resize": False}, {"video": {"backend": "pyav"}, "image": {"image_mode": "RGB"}}
    )
    assert ignored == [
        "mm_processor_kwargs.do_resize",
        "media_io_kwargs.image",
        "media_io_kwargs.video.backend",
    ]


@pytest.mark.parametrize(
    "video, max_patches, native, expected",
    [(None, None, True, {}),
     (MediaOptions(), None, True, {"media_io_kwargs": {"video": {"fps": 2.0, "num_frames": -1}}}),
     (MediaOptions(), None, False, {}),
     (MediaOptions(fps=1.0), None, False, {"media_io_kwargs": {"video": {"fps": 1.0, "num_frames": -1}}}),
     (MediaOptions(num_frames=8), None, True, {"media_io_kwargs": {"video": {"fps": 2.0, "num_frames": 8}}}),
     (MediaOptions(num_frames=8), None, False, {"media_io_kwargs": {"video": {"num_frames": 8}}}),
     (None, 512, True, {"mm_processor_kwargs": {"max_patches": 512}})],
    ids=["no_video", "native", "endpoint_default", "fps_with_no_cap", "cap_at_native_rate", "cap_only", "image_budget"],
)  # fmt: skip
def test_to_vllm_round_trips_through_from_vllm(video, max_patches, native, expected) -> None:
    body = to_vllm(video, max_patches, native=native)
    assert body == expected
    got, _ = from_vllm(body.get("mm_processor_kwargs"), body.get("media_io_kwargs"))
    assert got.max_patches == max_patches
    if video is not None and video.fps is not None:
        assert (got.fps, got.num_frames) == (video.fps, video.num_frames)
