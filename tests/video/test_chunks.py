"""Chunking: grouping by 4 with a remainder, one grid per video, timestamps and order, streaming vs
whole-clip, and parity with transformers' `Kimi_K25VideoProcessor` on the same decoded frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from videogen import read_stamp_sized

from video import chunk_video, iter_chunks, load_video, stack_chunks, video_plan
from video.chunks import make_chunk
from video.sample import chunk_spans, format_timestamp, moonshot_indices
from vision.config import MediaConfig


def _stamps(chunk, height: int = 48, width: int = 64) -> list[int]:
    """Frame numbers written into the chunk's frames (pixels back to uint8, padding ignored)."""
    u8 = ((chunk.pixels * 0.5 + 0.5) * 255).round().clamp(0, 255).to(torch.uint8)
    return [read_stamp_sized(f.permute(1, 2, 0).numpy(), height, width) for f in u8]


@pytest.mark.parametrize(
    "fps, max_frames, chunk_ts",
    [
        # 30 frames at 10 fps: every frame -> 7 chunks of 4 and one of 2.
        pytest.param(10.0, None, [4, 4, 4, 4, 4, 4, 4, 2], id="all_frames_remainder_2"),
        pytest.param(2.0, None, [4, 2], id="2fps_remainder_2"),
        pytest.param(2.0, 5, [4, 1], id="remainder_1"),
        pytest.param(2.0, 4, [4], id="exactly_one_chunk"),
        pytest.param(2.0, 3, [3], id="single_short_chunk"),
    ],
)
def test_grouping_and_order(make_video, fps, max_frames, chunk_ts):
    stream = iter_chunks(make_video("a.mp4"), fps=fps, max_frames=max_frames)
    chunks = list(stream)
    assert [c.num_frames for c in chunks] == chunk_ts
    assert stream.num_chunks == len(chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    # 64x48 is under the budget: no resize, pad to 84x56 -> grid 4x6 patches, 2x3 = 6 tokens.
    assert all(c.grid == (c.num_frames, 4, 6) and c.num_tokens == 6 for c in chunks)
    # Temporal order: the frame numbers written into the pixels, read back chunk after chunk, are the
    # sampled indices in order. Shuffling chunks or frames inside one breaks this.
    want = moonshot_indices(30, 10.0, fps, max_frames).tolist()
    assert [s for c in chunks for s in _stamps(c)] == want
    assert [i for c in chunks for i in c.frame_indices] == want
    firsts = [c.timestamps[0] for c in chunks]
    assert firsts == sorted(firsts) and len(set(firsts)) == len(firsts)


def test_timestamp_text_is_first_frame_time(make_video):
    chunks = list(iter_chunks(make_video("a.mp4", frames=100), fps=2.0))
    indices = moonshot_indices(100, 10.0, 2.0)
    for chunk, (a, _) in zip(chunks, chunk_spans(len(indices))):
        # The reference prints index / fps of the chunk's first frame; pts here are exact at 10 fps.
        assert chunk.timestamp_text == format_timestamp(indices[a] / 10.0)
    # linspace(0, 99, 20): chunk starts at indices 0, round(20.84) = 21, round(41.68) = 42.
    assert [c.timestamp_text for c in chunks[:3]] == ["00:00:00.000", "00:00:02.100", "00:00:04.200"]


def test_prompt_text(make_video):
    chunk = next(iter(iter_chunks(make_video("a.mp4"))))
    text = chunk.prompt("<P>")
    assert text == "00:00:00.000<|media_begin|>video<|media_content|>" + "<P>" * 6 + "<|media_end|>"


def test_streaming_equals_whole_clip(make_video):
    path = make_video("a.webm", "libvpx-vp9", frames=23)
    streamed = list(iter_chunks(path, fps=10.0))
    whole = chunk_video(load_video(path, fps=10.0))
    assert len(streamed) == len(whole) == 6
    for s, w in zip(streamed, whole):
        assert (s.grid, s.timestamps, s.frame_indices, s.timestamp_text) == (
            w.grid,
            w.timestamps,
            w.frame_indices,
            w.timestamp_text,
        )
        torch.testing.assert_close(s.pixels, w.pixels, rtol=0, atol=0)


def test_streaming_does_not_decode_ahead(make_video):
    path = make_video("long.mp4", size=(48, 120), frames=300, bits=10)
    stream = iter_chunks(path, fps=10.0)
    assert stream.num_chunks == 75
    it = iter(stream)
    first = next(it)
    assert first.num_frames == 4
    # Only the first chunk (plus what the threaded decoder buffers) has been decoded, not 300 frames.
    assert stream.stats.decoded < 40, stream.stats
    stream.close()


def test_one_grid_for_the_whole_video_under_a_small_budget(make_video):
    # 160x96 with a 20-patch budget per frame: every chunk, including the short tail, shares one size.
    cfg = MediaConfig(in_patch_limit_each_frame=20)
    stream = iter_chunks(make_video("b.mp4", size=(96, 160), frames=10), fps=10.0, cfg=cfg)
    chunks = list(stream)
    plan = video_plan(96, 160, cfg)
    assert plan.resized == (52, 88) and plan.padded == (56, 112)
    assert [c.grid for c in chunks] == [(4, 4, 8), (4, 4, 8), (2, 4, 8)]
    assert all(c.pixels.shape[-2:] == (56, 112) for c in chunks)
    assert stream.tokens_per_chunk == 2 * 4


def test_rotated_video_is_chunked_at_its_displayed_size(make_video):
    stream = iter_chunks(make_video("rot.mp4", frames=8, rotation=90), fps=10.0)
    assert (stream.info.height, stream.info.width) == (64, 48)
    chunks = list(stream)
    assert chunks[0].pixels.shape[-2:] == (84, 56)  # 64 -> 84 rows, 48 -> 56 columns
    assert chunks[0].grid == (4, 6, 4)


@pytest.mark.parametrize(
    "height, width, padded, tokens",
    [
        # Per-frame budget 4096 patches, 512 per side (research/video.md §1.4, research/moonvit3d.md §4.2).
        pytest.param(360, 640, (364, 644), 299, id="360p"),
        pytest.param(720, 1280, (700, 1204), 1075, id="720p"),
        pytest.param(1080, 1920, (672, 1204), 1032, id="1080p"),
        pytest.param(47, 65, (56, 84), 6, id="odd_small"),
        pytest.param(30, 8000, (28, 7168), 256, id="per_side_cap"),
    ],
)
def test_video_plan(height, width, padded, tokens):
    plan = video_plan(height, width)
    assert plan.padded == padded
    assert (padded[0] // 28) * (padded[1] // 28) == tokens


def test_patches_layout_matches_patchify():
    frames = np.random.default_rng(0).integers(0, 256, (3, 28, 56, 3), dtype=np.uint8)
    chunk = make_chunk(0, frames, [0.0, 0.5, 1.0], [0, 1, 2], video_plan(28, 56))
    patches = chunk.patches()
    assert patches.shape == (3 * 2 * 4, 3, 14, 14)
    # Patch (frame 1, row 1, column 2) is pixels rows 14..28, columns 28..42 of frame 1.
    torch.testing.assert_close(patches[1 * 8 + 1 * 4 + 2], chunk.pixels[1, :, 14:28, 28:42])


# --- parity with transformers' Kimi_K25VideoProcessor ---------------------------------------------------

# Measured here (transformers 5.23.0, torchvision 0.29.1) on noise and gradient frames from 96x160 to
# 1920x1080: grids always equal; pixel values equal within 6e-8 when frames are only padded, and
# within 2 uint8 levels (2/127.5 = 0.0157 after normalization, mean <= 5e-5) when they are downscaled,
# because the reference resizes with torchvision's antialiased bicubic and we (like Moonshot) with PIL.
RESIZE_TOL = 2 / 127.5 + 1e-6
RESIZE_MEAN_TOL = 1e-4


def _reference(frames: np.ndarray, cfg: MediaConfig):
    transformers = pytest.importorskip("transformers")
    processor = transformers.Kimi_K25VideoProcessor()
    side = cfg.patch_limit_on_one_side
    return processor(
        videos=[frames],
        do_sample_frames=False,  # the same frames to both sides: sampling is compared in test_sample.py
        return_tensors="pt",
        max_patches=cfg.in_patch_limit_each_frame,
        size={"max_height": side, "max_width": side},
    )


@pytest.mark.parity
@pytest.mark.parametrize(
    "size, frames, budget, exact",
    [
        pytest.param((48, 64), 30, 4096, True, id="pad_only_remainder_2"),
        pytest.param((47, 65), 12, 4096, True, id="odd_size_pad_only"),
        pytest.param((96, 160), 9, 20, False, id="downscaled_remainder_1"),
    ],
)
def test_processor_parity_on_decoded_frames(make_video, size, frames, budget, exact):
    kw = dict(pix_fmt="yuv444p") if size[0] % 2 else {}
    video = load_video(make_video("p.mp4", size=size, frames=frames, **kw), fps=10.0)
    cfg = MediaConfig(in_patch_limit_each_frame=budget)
    ours = chunk_video(video, cfg=cfg)
    ref = _reference(video.frames, cfg)
    patches, grids = stack_chunks(ours)
    assert ref["num_chunks_per_video"].tolist() == [len(ours)]
    assert ref["video_grid_thw"].tolist() == grids.tolist()
    diff = (ref["pixel_values_videos"] - patches).abs()
    assert diff.max() <= (1e-6 if exact else RESIZE_TOL), f"max |diff| {diff.max():.3g}"
    assert diff.mean() <= RESIZE_MEAN_TOL, f"mean |diff| {diff.mean():.3g}"


@pytest.mark.parity
def test_processor_parity_downscaled_noise():
    # Noise is the worst case for resampling differences; frames straight in, no codec.
    frames = np.random.default_rng(0).integers(0, 256, (5, 96, 160, 3), dtype=np.uint8)
    cfg = MediaConfig(in_patch_limit_each_frame=20)
    plan = video_plan(96, 160, cfg)
    ours = [
        make_chunk(i, frames[a:b], [0.0] * (b - a), list(range(a, b)), plan, cfg)
        for i, (a, b) in enumerate(chunk_spans(5))
    ]
    patches, grids = stack_chunks(ours)
    ref = _reference(frames, cfg)
    assert ref["video_grid_thw"].tolist() == grids.tolist() == [[4, 4, 8], [1, 4, 8]]
    diff = (ref["pixel_values_videos"] - patches).abs()
    assert 0 < diff.max() <= RESIZE_TOL and diff.mean() <= RESIZE_MEAN_TOL, (diff.max(), diff.mean())


@pytest.mark.parity
def test_prompt_parity_with_reference_processor(make_video):
    transformers = pytest.importorskip("transformers")
    from transformers.video_utils import VideoMetadata

    video = load_video(make_video("a.mp4", frames=100), fps=2.0)
    chunks = chunk_video(video)
    vp = transformers.Kimi_K25VideoProcessor()
    inputs = dict(vp(videos=[video.frames], do_sample_frames=False, return_tensors="pt"))
    # The reference builds timestamps from metadata: our planned indices at the video's fps.
    inputs["video_metadata"] = [
        VideoMetadata(
            total_num_frames=video.info.num_frames, fps=video.info.fps, frames_indices=video.indices.tolist()
        )
    ]
    # `replace_video_token` needs only these attributes; building the full processor would need a tokenizer.
    processor = transformers.Kimi_K25Processor.__new__(transformers.Kimi_K25Processor)
    processor.video_processor, processor.video_token = vp, "<P>"
    want = processor.replace_video_token(inputs, 0)
    assert "".join(c.prompt("<P>") for c in chunks) == want
