"""Sampling rules, nearest-frame picking, chunk spans and timestamp text: pure, hand-computed cases."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from video.sample import (
    chunk_spans,
    format_timestamp,
    moonshot_indices,
    pick_displayed,
    sample_indices,
    transformers_indices,
)


@pytest.mark.parametrize(
    "num_frames, video_fps, fps, max_frames, expected",
    [
        # 300 frames at 30 fps, 2 fps: n = 20 over linspace(0, 299, 20) (research/video.md §1.1).
        pytest.param(
            300,
            30.0,
            2.0,
            None,
            [0, 16, 31, 47, 63, 79, 94, 110, 126, 142, 157, 173, 189, 205, 220, 236, 252, 268, 283, 299],
            id="10s_30fps",
        ),
        pytest.param(30, 10.0, 2.0, None, [0, 6, 12, 17, 23, 29], id="3s_10fps"),
        # Slower than the target rate: s = min(2, 1) keeps every frame.
        pytest.param(5, 1.0, 2.0, None, [0, 1, 2, 3, 4], id="1fps_keeps_all"),
        # Shorter than one sample interval: n = max(round(10/30*... ), 1) = 1 (5 frames at 30 fps).
        pytest.param(5, 30.0, 2.0, None, [0], id="tiny_clip_one_frame"),
        pytest.param(1, 25.0, 2.0, None, [0], id="single_frame"),
        # Cap spreads over the whole clip: linspace(0, 299, 5) = 0, 74.75, 149.5, 224.25, 299 (half to even).
        pytest.param(300, 30.0, 2.0, 5, [0, 75, 150, 224, 299], id="max_frames_spread"),
        pytest.param(30, 10.0, 2.0, 3, [0, 14, 29], id="max_frames_half_even"),
        pytest.param(30, 10.0, 2.0, 100, [0, 6, 12, 17, 23, 29], id="cap_above_n_is_noop"),
    ],
)
def test_moonshot_indices(num_frames, video_fps, fps, max_frames, expected):
    got = moonshot_indices(num_frames, video_fps, fps, max_frames)
    assert got.dtype == np.int64
    assert got.tolist() == expected


@pytest.mark.parametrize(
    "num_frames, video_fps, fps, expected",
    [
        pytest.param(300, 30.0, 2.0, list(range(0, 300, 15)), id="10s_30fps"),
        pytest.param(30, 10.0, 2.0, [0, 5, 10, 15, 20, 25], id="3s_10fps"),
        # transformers raises here (n = 10 > 5 frames); we keep every frame instead.
        pytest.param(5, 1.0, 2.0, [0, 1, 2, 3, 4], id="slow_video_clamped"),
        pytest.param(5, 30.0, 2.0, [0], id="tiny_clip_one_frame"),
    ],
)
def test_transformers_indices(num_frames, video_fps, fps, expected):
    assert transformers_indices(num_frames, video_fps, fps).tolist() == expected


@pytest.mark.parity
@settings(deadline=None)  # the first example pays for importing transformers
@given(
    num_frames=st.integers(1, 5000),
    video_fps=st.sampled_from([2.0, 5.0, 10.0, 23.976, 24.0, 25.0, 29.97, 30.0, 60.0]),
)
def test_transformers_indices_match_reference(num_frames, video_fps):
    video_utils = pytest.importorskip("transformers.video_utils")
    meta = video_utils.VideoMetadata(total_num_frames=num_frames, fps=video_fps)
    try:
        want = video_utils.default_sample_indices_fn(meta, fps=2.0)
    except ValueError:
        assert int(num_frames / video_fps * 2.0) > num_frames  # the only case the reference refuses
        return
    np.testing.assert_array_equal(transformers_indices(num_frames, video_fps, 2.0), want)


@given(
    num_frames=st.integers(1, 100_000),
    video_fps=st.floats(0.1, 240.0),
    max_frames=st.none() | st.integers(1, 64),
)
def test_moonshot_indices_properties(num_frames, video_fps, max_frames):
    got = moonshot_indices(num_frames, video_fps, 2.0, max_frames)
    assert (got[0] == 0 and got[-1] == num_frames - 1) or len(got) == 1
    assert np.all(np.diff(got) > 0), "indices must be strictly increasing (no repeated frames)"
    assert got.max() < num_frames
    if max_frames is not None:
        assert len(got) <= max_frames


def test_sample_indices_dispatch_and_errors():
    assert sample_indices(300, 30.0, rule="transformers")[1] == 15
    assert sample_indices(300, 30.0, rule="moonshot")[1] == 16
    with pytest.raises(ValueError, match="rule"):
        sample_indices(300, 30.0, rule="nearest")
    for bad in [dict(num_frames=0), dict(video_fps=0.0), dict(video_fps=float("nan")), dict(max_frames=0)]:
        kw = dict(num_frames=10, video_fps=10.0, fps=2.0, max_frames=None) | bad
        with pytest.raises(ValueError):
            moonshot_indices(**kw)


@pytest.mark.parametrize(
    "frame_times, targets, tol, expected",
    [
        pytest.param([0.0, 0.1, 0.2], [0.0, 0.1, 0.2], 1e-9, [0, 1, 2], id="exact"),
        pytest.param([0.0, 0.1, 0.2], [0.04, 0.06, 0.19], 1e-9, [0, 0, 1], id="last_started"),
        # WebM stores whole ms: frame 2 of 30 fps starts at 0.067 s, planned at 2/30 = 0.0667 s.
        pytest.param([0.0, 0.033, 0.067], [1 / 30, 2 / 30], 0.001, [1, 2], id="ms_rounded_pts"),
        pytest.param([0.0, 0.033, 0.067], [2 / 30], 1e-9, [1], id="ms_rounded_pts_without_tol"),
        pytest.param([0.0, 1.0, 1.05, 3.0], [0.5, 1.5, 2.5, 3.5], 1e-9, [0, 2, 2, 3], id="vfr"),
        pytest.param([0.2, 0.3], [0.0], 1e-9, [0], id="before_first_frame"),
    ],
)
def test_pick_displayed(frame_times, targets, tol, expected):
    assert pick_displayed(frame_times, targets, tol).tolist() == expected


@pytest.mark.parametrize(
    "num_frames, chunk_frames, expected",
    [
        pytest.param(8, 4, [(0, 4), (4, 8)], id="exact_multiple"),
        pytest.param(9, 4, [(0, 4), (4, 8), (8, 9)], id="remainder_1"),
        pytest.param(7, 4, [(0, 4), (4, 7)], id="remainder_3"),
        pytest.param(1, 4, [(0, 1)], id="single_frame"),
        pytest.param(0, 4, [], id="empty"),
    ],
)
def test_chunk_spans(num_frames, chunk_frames, expected):
    assert chunk_spans(num_frames, chunk_frames) == expected


@pytest.mark.parametrize(
    "seconds, text",
    [
        pytest.param(0.0, "00:00:00.000", id="zero"),
        pytest.param(2.0, "00:00:02.000", id="two_s"),
        pytest.param(2.3, "00:00:02.299", id="float_error_truncates"),  # as the references print it
        pytest.param(59.9999, "00:00:59.999", id="no_rounding_up"),
        pytest.param(3661.5, "01:01:01.500", id="hours"),
        pytest.param(90000.25, "25:00:00.250", id="past_24h_keeps_counting"),
    ],
)
def test_format_timestamp(seconds, text):
    assert format_timestamp(seconds) == text


@given(st.floats(0, 86399.999, allow_nan=False))
def test_format_timestamp_matches_reference_formula(seconds):
    # transformers processing_kimi_k25.replace_video_token (and Moonshot's timestamp_as_str) below 24 h.
    want = time.strftime("%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}"
    assert format_timestamp(seconds) == want


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_format_timestamp_rejects(bad):
    with pytest.raises(ValueError):
        format_timestamp(bad)
