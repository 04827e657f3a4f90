"""Decoding videos the tests write with PyAV: codecs, containers, odd sizes, rotation, VFR, seeking,
image sequences, and every kind of bad input."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from PIL import Image
from videogen import read_stamp, stamp, write_audio_only, write_video

from video import (
    DecodeLimits,
    EmptyVideoError,
    ImageSequence,
    NoVideoStreamError,
    TruncatedVideoWarning,
    UnsupportedCodecError,
    VideoDecodeError,
    VideoError,
    VideoOpenError,
    VideoTooLargeError,
    load_video,
    open_video,
)
from video.decode import _rotation, _to_rgb, display_tolerance
from video.sample import moonshot_indices, pick_displayed
from vision.errors import InputError

# 30 frames at 10 fps sampled at 2 fps by the Moonshot rule: n = 6 over linspace(0, 29, 6).
EXPECTED_2FPS = [0, 6, 12, 17, 23, 29]


@pytest.mark.parametrize(
    "name, codec, kw",
    [
        pytest.param("h264.mp4", "libx264", {}, id="h264_mp4"),
        pytest.param("mpeg4.avi", "mpeg4", {}, id="mpeg4_avi"),
        pytest.param("vp9.webm", "libvpx-vp9", {}, id="vp9_webm"),
        pytest.param("vp8.webm", "libvpx", {}, id="vp8_webm"),
        pytest.param("mjpeg.avi", "mjpeg", dict(pix_fmt="yuvj420p"), id="mjpeg_avi"),
        pytest.param("anim.gif", "gif", dict(pix_fmt="rgb8"), id="gif"),
        pytest.param("png.mov", "png", dict(pix_fmt="rgb24"), id="png_mov"),
        pytest.param("odd.mkv", "ffv1", dict(size=(47, 65), pix_fmt="yuv444p"), id="ffv1_mkv_odd_size"),
        pytest.param("odd.mp4", "libx264", dict(size=(33, 97), pix_fmt="yuv444p"), id="h264_444_odd_size"),
    ],
)
def test_codecs_and_containers(make_video, name, codec, kw):
    path = make_video(name, codec, **kw)
    video = load_video(path)
    height, width = kw.get("size", (48, 64))
    assert video.frames.shape == (6, height, width, 3) and video.frames.dtype == np.uint8
    assert [read_stamp(f) for f in video.frames] == EXPECTED_2FPS
    assert video.indices.tolist() == EXPECTED_2FPS
    # Timestamps are presentation times; ms time bases (webm, mkv, gif cs) are exact at 10 fps.
    np.testing.assert_allclose(video.timestamps, np.array(EXPECTED_2FPS) / 10, atol=1e-6)
    assert (video.info.fps, video.info.num_frames, video.info.duration) == (10.0, 30, pytest.approx(3.0))
    assert (video.info.height, video.info.width) == (height, width)
    assert video.stats.kept == 6 and video.stats.missing == 0


def test_raw_stream_without_container_timing(tmp_path):
    # A raw H.264 elementary stream has no duration and no frame count: one demux pass counts packets.
    path = tmp_path / "raw.h264"
    with av.open(str(path), "w", format="h264") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(30):
            for p in s.encode(av.VideoFrame.from_ndarray(stamp(i, 48, 64), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    video = load_video(path)
    assert (video.info.num_frames, video.info.fps, video.info.frames_estimated) == (30, 10.0, False)
    assert [read_stamp(f) for f in video.frames] == EXPECTED_2FPS


def test_mpegts_start_offset_is_removed(make_video):
    # MPEG-TS streams start at a non-zero pts (1.4 s by default): times are reported from the first frame.
    video = load_video(make_video("a.ts"))
    assert [read_stamp(f) for f in video.frames] == EXPECTED_2FPS
    np.testing.assert_allclose(video.timestamps, np.array(EXPECTED_2FPS) / 10, atol=1e-6)


def test_bytes_and_file_object_equal_path(make_video):
    path = make_video("a.mp4")
    want = load_video(path)
    for source in (path.read_bytes(), bytearray(path.read_bytes()), io.BytesIO(path.read_bytes()), str(path)):
        got = load_video(source)
        np.testing.assert_array_equal(got.frames, want.frames)
        np.testing.assert_array_equal(got.timestamps, want.timestamps)


@pytest.mark.parametrize(
    "fps, max_frames, expected",
    [
        pytest.param(10.0, None, list(range(30)), id="native_rate_keeps_all"),
        pytest.param(5.0, None, moonshot_indices(30, 10.0, 5.0).tolist(), id="5fps"),
        pytest.param(2.0, 3, [0, 14, 29], id="max_frames_spread_over_whole_video"),
        pytest.param(2.0, 1, [0], id="max_frames_1"),
    ],
)
def test_sampling_picks_the_planned_frames(make_video, fps, max_frames, expected):
    video = load_video(make_video("a.mp4"), fps=fps, max_frames=max_frames)
    assert [read_stamp(f) for f in video.frames] == expected


def test_transformers_rule_option(make_video):
    video = load_video(make_video("a.mp4"), rule="transformers")
    assert [read_stamp(f) for f in video.frames] == [0, 5, 10, 15, 20, 25]


@pytest.mark.parametrize(
    "rotation, turns",
    [
        pytest.param(90, 1, id="90_ccw"),
        pytest.param(-90, -1, id="90_cw"),
        pytest.param(180, 2, id="180"),
        pytest.param(0, 0, id="none"),
    ],
)
def test_rotation_from_display_matrix_is_applied(make_video, rotation, turns):
    path = make_video("rot.mp4", frames=10, rotation=rotation)
    video = load_video(path, fps=10)
    assert video.info.rotation == rotation % 360
    upright = stamp(0, 48, 64)
    want = np.rot90(upright, turns)
    assert video.frames.shape[1:3] == want.shape[:2]
    assert (video.info.height, video.info.width) == want.shape[:2]
    # Turning the frame back must give the stamp and the red marker where they were written.
    back = np.rot90(video.frames[3], -turns)
    assert read_stamp(back) == 3
    assert back[-4:, :4, 0].mean() > 200 and back[-4:, :4, 1].mean() < 60


@pytest.mark.parametrize(
    "angle, expected",
    [(0, 0), (90, 90), (-90, 270), (180, 180), (-180, 180), (89.6, 90), (44, 0), (46, 90)],
)
def test_rotation_rounds_to_quarter_turns(angle, expected):
    assert _rotation(SimpleNamespace(rotation=angle)) == expected


def test_resolution_change_midstream_is_scaled_to_the_first_size():
    frame = av.VideoFrame.from_ndarray(
        np.ascontiguousarray(np.repeat(np.repeat(stamp(5, 48, 64), 2, 0), 2, 1)), format="rgb24"
    )
    rgb = _to_rgb(frame, 0, (64, 48))
    assert rgb.shape == (48, 64, 3) and read_stamp(rgb) == 5


# Irregular presentation times (seconds): bursts and gaps.
VFR_TIMES = [0.0, 0.1, 0.15, 0.2, 0.9, 1.0, 1.05, 2.0, 2.5, 2.55, 2.6, 3.0, 3.9, 4.0]


@pytest.mark.parametrize("name", ["vfr.mkv", "vfr.mp4"])
def test_variable_frame_rate_uses_timestamps(make_video, name):
    path = make_video(name, times=VFR_TIMES)
    reader = open_video(path, fps=2.0)
    with reader:
        got = list(reader)
    # The slow twin: the frame on screen at each planned time, from the whole list of frame times.
    expected = pick_displayed(VFR_TIMES, reader.targets, display_tolerance(1e-3, reader.info.fps))
    assert len(got) == len(reader.targets)
    assert [read_stamp(f.pixels) for f in got] == expected.tolist()
    np.testing.assert_allclose([f.time for f in got], np.array(VFR_TIMES)[expected], atol=1e-3)
    assert all(np.diff([f.time for f in got]) >= 0)
    assert reader.stats.missing == 0
    # An index rule would have taken frame 4 to be at 4 / fps; here it sits at 0.9 s.
    assert len(set(expected.tolist())) < len(expected) or expected.tolist() != reader.indices.tolist()


def test_gif_with_per_frame_delays(tmp_path):
    delays_ms = [100, 300, 100, 500, 200, 800]
    frames = [Image.fromarray(stamp(i, 48, 64)) for i in range(len(delays_ms))]
    path = tmp_path / "delays.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=delays_ms, loop=0)
    video = load_video(path, fps=10)
    starts = np.concatenate([[0], np.cumsum(delays_ms)[:-1]]) / 1000
    stamps = [read_stamp(f) for f in video.frames]
    # Every kept frame's time is the start time of the frame it shows, and it is the frame on screen.
    np.testing.assert_allclose(video.timestamps, starts[stamps], atol=1e-6)
    reader = open_video(path, fps=10)
    reader.close()
    tol = display_tolerance(0.01, reader.info.fps)  # GIF delays are centiseconds
    assert stamps == pick_displayed(starts, reader.targets, tol).tolist()
    assert video.stats.missing == 0


@pytest.mark.parametrize(
    "name, codec, kw, max_decoded",
    [
        pytest.param(
            "k20.mp4",
            "libx264",
            dict(options={"x264-params": "keyint=20:min-keyint=20:scenecut=0"}),
            150,
            id="h264_short_gop_seeks",
        ),
        pytest.param("intra.avi", "mjpeg", dict(pix_fmt="yuvj420p"), 20, id="mjpeg_every_frame_a_keyframe"),
        # A GOP (250 frames) longer than the gaps (150): seeks land behind us, the gap doubles, and
        # decoding goes on straight through; same frames either way.
        pytest.param(
            "k250.mp4",
            "libx264",
            dict(options={"x264-params": "keyint=250:min-keyint=250:scenecut=0"}),
            700,
            id="h264_long_gop",
        ),
    ],
)
def test_long_gaps_seek_instead_of_decoding_everything(make_video, name, codec, kw, max_decoded):
    # 60 s at 10 fps; 5 frames spread over the whole video.
    path = make_video(name, codec, size=(48, 120), frames=600, bits=10, **kw)
    fast = load_video(path, max_frames=5)
    assert [read_stamp(f, bits=10) for f in fast.frames] == [0, 150, 300, 449, 599]
    assert fast.stats.seeks >= 1
    assert fast.stats.decoded <= max_decoded, f"decoded {fast.stats.decoded} of 600 frames for 5 samples"
    # Slow twin: decoding straight through gives the same frames.
    slow = load_video(path, max_frames=5, limits=DecodeLimits(seek_gap_s=1e9))
    assert slow.stats.seeks == 0 and slow.stats.decoded == 600
    np.testing.assert_array_equal(fast.frames, slow.frames)
    np.testing.assert_array_equal(fast.timestamps, slow.timestamps)


def test_reader_is_lazy(make_video):
    path = make_video("long.mp4", size=(48, 120), frames=300, bits=10)
    reader = open_video(path, fps=10)
    first = next(iter(reader))
    assert read_stamp(first.pixels, bits=10) == 0
    assert reader.stats.decoded < 60, "opening must not decode the whole video"
    reader.close()


# --- image sequences --------------------------------------------------------------------------------


def _write_frames(folder: Path, count: int, names: str = "frame{}.png", sizes=None) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(count):
        h, w = sizes[i] if sizes else (48, 64)
        p = folder / names.format(i)
        Image.fromarray(stamp(i, h, w)).save(p)
        paths.append(p)
    return paths


def test_directory_is_an_image_sequence_in_natural_order(tmp_path):
    _write_frames(tmp_path / "seq", 12)  # frame2.png must come before frame10.png
    (tmp_path / "seq" / "notes.txt").write_text("not a frame")
    video = load_video(tmp_path / "seq")
    assert [read_stamp(f) for f in video.frames] == list(range(12))
    np.testing.assert_allclose(video.timestamps, np.arange(12) / 2.0)
    assert video.info.container == "image_sequence"


@pytest.mark.parametrize(
    "seq_fps, expected",
    [
        pytest.param(None, list(range(8)), id="list_at_sampling_fps_keeps_all"),
        pytest.param(
            4.0, [0, 2, 5, 7], id="sequence_at_4fps_sampled_at_2"
        ),  # linspace(0, 7, 4) = 0, 2.33, 4.67, 7
    ],
)
def test_image_sequence_list(tmp_path, seq_fps, expected):
    paths = _write_frames(tmp_path / "seq", 8)
    source = [str(p) for p in paths] if seq_fps is None else ImageSequence(paths, fps=seq_fps)
    video = load_video(source)
    assert [read_stamp(f) for f in video.frames] == expected


def test_image_sequence_of_mixed_sizes_uses_the_first_size(tmp_path):
    paths = _write_frames(tmp_path / "seq", 3, sizes=[(48, 64), (96, 128), (24, 32)])
    video = load_video(paths)
    assert video.frames.shape == (3, 48, 64, 3)
    assert [read_stamp(f) for f in video.frames] == [0, 1, 2]


# --- bad input ----------------------------------------------------------------------------------------


def _unknown_codec(path: Path) -> Path:
    # An MJPEG AVI whose codec tag is overwritten: FFmpeg sees a video stream it has no decoder for.
    write_video(path, "mjpeg", frames=3, pix_fmt="yuvj420p")
    path.write_bytes(path.read_bytes().replace(b"MJPG", b"ZZZZ"))
    return path


def _y4m(path: Path, width: int, height: int, frame_bytes: int) -> Path:
    # YUV4MPEG2 is a text header + raw frames: it can claim any size and hold no (complete) frame.
    path.write_bytes(
        f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\nFRAME\n".encode() + b"\x80" * frame_bytes
    )
    return path


def _truncated_mp4(path: Path) -> Path:
    write_video(path, frames=20)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the moov index sits at the end: nothing is readable
    return path


BAD_INPUTS = [
    pytest.param(lambda d: d / "missing.mp4", VideoOpenError, "does not exist", id="missing_path"),
    pytest.param(lambda d: b"", VideoOpenError, "empty", id="empty_bytes"),
    pytest.param(
        lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4",
        VideoOpenError,
        "empty",
        id="empty_file",
    ),
    pytest.param(lambda d: np.random.bytes(4000), VideoOpenError, "could not be opened", id="random_bytes"),
    pytest.param(lambda d: 42, VideoOpenError, "got int", id="wrong_type"),
    pytest.param(
        lambda d: write_audio_only(d / "a.wav"),
        NoVideoStreamError,
        "no video stream .*audio",
        id="audio_only",
    ),
    pytest.param(
        lambda d: _unknown_codec(d / "u.avi"), UnsupportedCodecError, "codec", id="unsupported_codec"
    ),
    pytest.param(
        lambda d: _y4m(d / "huge.y4m", 16000, 16000, 0), VideoTooLargeError, "16000x16000", id="absurd_size"
    ),
    pytest.param(
        lambda d: _y4m(d / "nofr.y4m", 64, 48, 100), EmptyVideoError, "no packets|no frame", id="zero_frames"
    ),
    pytest.param(
        lambda d: _truncated_mp4(d / "cut.mp4"), VideoOpenError, "could not be opened", id="truncated_mp4"
    ),
    pytest.param(
        lambda d: (d / "empty_dir").mkdir() or d / "empty_dir", EmptyVideoError, "no images", id="empty_dir"
    ),
    pytest.param(lambda d: [], EmptyVideoError, "empty image sequence", id="empty_list"),
    pytest.param(lambda d: [str(d / "nope.png")], VideoOpenError, "frame 0", id="sequence_missing_image"),
]


@pytest.mark.parametrize("make, error, message", BAD_INPUTS)
def test_bad_input_raises_a_named_video_error(tmp_path, make, error, message):
    source = make(tmp_path)
    with pytest.raises(error, match=message) as info:
        load_video(source)
    assert isinstance(info.value, VideoError) and isinstance(info.value, InputError)
    assert isinstance(info.value, ValueError)


def test_truncated_mkv_decodes_what_is_valid_and_reports_the_loss(make_video):
    path = make_video("cut.mkv", frames=40, options={"x264-params": "keyint=5"})
    data = path.read_bytes()
    with pytest.warns(TruncatedVideoWarning, match="sampled frames missing"):
        video = load_video(data[: len(data) * 7 // 10], fps=10)
    stamps = [read_stamp(f) for f in video.frames]
    assert 0 < len(stamps) < 40 and stamps == list(range(len(stamps)))
    assert video.stats.missing == 40 - len(stamps)


def test_healthy_file_does_not_warn(make_video):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_video(make_video("ok.webm", "libvpx-vp9"))


@pytest.mark.parametrize(
    "limits, error, message",
    [
        pytest.param(
            DecodeLimits(max_pixels=1000), VideoTooLargeError, "refused before decoding", id="pixels"
        ),
        pytest.param(DecodeLimits(max_side=50), VideoTooLargeError, "64x48", id="side"),
        pytest.param(
            DecodeLimits(max_decoded_frames=5), VideoDecodeError, "decoded over 5", id="frame_budget"
        ),
        pytest.param(DecodeLimits(timeout_s=1e-9), VideoDecodeError, "exceeded", id="wall_time"),
    ],
)
def test_work_per_file_is_bounded(make_video, limits, error, message):
    with pytest.raises(error, match=message):
        load_video(make_video("a.mp4"), limits=limits)


@pytest.mark.parametrize(
    "kw, message",
    [
        pytest.param(dict(fps=0), "fps", id="zero_fps"),
        pytest.param(dict(fps=float("nan")), "fps", id="nan_fps"),
        pytest.param(dict(max_frames=0), "max_frames", id="zero_max_frames"),
        pytest.param(dict(max_frames=2.5), "max_frames", id="float_max_frames"),
    ],
)
def test_bad_arguments(make_video, kw, message):
    with pytest.raises(VideoError, match=message):
        load_video(make_video("a.mp4"), **kw)
