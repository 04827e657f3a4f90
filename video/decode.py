"""Video files in, sampled RGB frames with their times out. The only module that imports `av`.

`open_video` probes the container, plans which frames to keep (`video.sample`), and returns a
`VideoReader` whose iteration decodes forward and yields each kept frame as soon as it is known, so
callers can stream. `load_video` collects them into a `DecodedVideo`.

How decoding stays cheap and bounded:
- only kept frames are converted to RGB; the rest stay in the decoder's own format;
- when the next kept frame is more than `DecodeLimits.seek_gap_s` ahead, seek to the keyframe before
  it instead of decoding through (pays off for `max_frames`-capped long videos, not for 2 fps on
  short GOPs); a seek that lands past its target turns seeking off for the file, one that lands
  behind the current position doubles the gap;
- frames are matched to planned times by presentation timestamp (pts * time_base), never by a
  running index, so variable frame rates and threaded decoding (whose `frame.index` is unreliable,
  PyAV #1158) give the right frames;
- every file has a budget: frames decoded, packets in a row without a frame, wall time. Past it we
  raise `VideoDecodeError` rather than hang.

Sources: a path, bytes, a binary file object, or an image sequence (a directory of images, a list of
image paths/bytes/PIL images, or an `ImageSequence` with its own frame rate; read by
`video.sequence`). Animated GIFs are ordinary videos to FFmpeg. The types every source yields
(`VideoReader`, `VideoInfo`, `DecodedVideo`, ...) live in `video.reader`.
"""

from __future__ import annotations

import io
import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from fractions import Fraction

import av
import numpy as np

from video.errors import (
    EmptyVideoError,
    NoVideoStreamError,
    TruncatedVideoWarning,
    UnsupportedCodecError,
    VideoDecodeError,
    VideoError,
    VideoOpenError,
)
from video.reader import (
    DecodedVideo,
    DecodeLimits,
    DecodeStats,
    SampledFrame,
    VideoInfo,
    VideoReader,
    check_size,
)
from video.sample import sample_indices
from video.sequence import ImageSequence, as_sequence, open_sequence
from vision.errors import check_file_or_bytes, describe_source

VideoSource = (
    str | os.PathLike | bytes | bytearray | memoryview | io.IOBase | ImageSequence | Sequence[object]
)


def open_video(
    source: VideoSource,
    fps: float = 2.0,
    max_frames: int | None = None,
    *,
    rule: str = "moonshot",
    limits: DecodeLimits | None = None,
) -> VideoReader:
    """Probe `source` and plan the frames to keep; decoding happens while the reader is iterated.

    Args:
        fps: target sampling rate (the video's own rate if lower).
        max_frames: cap on kept frames, spread uniformly over the whole video.
        rule: "moonshot" (released model, default) or "transformers" (the port's sampler); see `video.sample`.
    Raises:
        `VideoError` subclasses (all `InputError`s) naming the input: `VideoOpenError`,
        `NoVideoStreamError`, `UnsupportedCodecError`, `VideoTooLargeError`, `EmptyVideoError`.
    """
    limits = limits or DecodeLimits()
    if not (isinstance(fps, (int, float)) and fps > 0 and math.isfinite(fps)):
        raise VideoError(f"fps must be a positive number, got {fps!r}")
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise VideoError(f"max_frames must be a positive int or None, got {max_frames!r}")
    sequence = as_sequence(source, fps)
    if sequence is not None:
        return open_sequence(sequence, describe_source(source), fps, max_frames, rule, limits)
    return _open_av(source, fps, max_frames, rule, limits)


def load_video(
    source: VideoSource,
    fps: float = 2.0,
    max_frames: int | None = None,
    *,
    rule: str = "moonshot",
    limits: DecodeLimits | None = None,
) -> DecodedVideo:
    """Decode the sampled frames of a video into memory: `DecodedVideo(frames (T, H, W, 3) uint8, timestamps (T,) s)`.

    Holds the whole sampled clip; for long videos stream with `video.iter_chunks` instead. A file that
    ends early returns what decoded and warns `TruncatedVideoWarning` (`stats.missing` says how much).
    """
    reader = open_video(source, fps, max_frames, rule=rule, limits=limits)
    with reader:
        kept = list(reader)
    frames = np.stack([f.pixels for f in kept])
    times = np.array([f.time for f in kept], dtype=np.float64)
    indices = reader.indices[[f.position for f in kept]]
    return DecodedVideo(frames, times, indices, reader.info, reader.stats)


# --- PyAV containers -------------------------------------------------------------------------------


def _open_av(
    source: object, fps: float, max_frames: int | None, rule: str, limits: DecodeLimits
) -> VideoReader:
    name = describe_source(source)
    container = _open_container(source, name)
    try:
        stream = _video_stream(container, name)
        ctx = stream.codec_context
        check_size(ctx.height, ctx.width, name, limits)
        start_pts = stream.start_time
        duration = _duration(container, stream)
        if duration is None:
            # A raw elementary stream (no container timing): FFmpeg's average rate is then its 25 fps
            # default, while the guessed rate reads the codec's own timing (H.264 VUI).
            rate = _first_truthy(stream.guessed_rate, stream.average_rate, stream.base_rate)
        else:
            rate = _first_truthy(stream.average_rate, stream.guessed_rate, stream.base_rate)
        num_frames = int(stream.frames or 0)
        estimated = num_frames <= 0
        if (estimated and duration is None) or rate is None:
            # No usable header: one demux-only pass (no decoding) counts packets and finds the end.
            count, first_pts, end_pts = _count_packets(source, name)
            if count == 0:
                raise EmptyVideoError(f"video {name} has a video stream with no packets")
            start_pts = first_pts if start_pts is None else start_pts
            if end_pts is not None and end_pts > (start_pts or 0):
                duration = float((end_pts - (start_pts or 0)) * stream.time_base)
            if num_frames <= 0:
                num_frames, estimated = count, False  # counted, not estimated
            if rate is None:
                rate = num_frames / duration if duration else None
        if rate is None or rate <= 0:
            raise VideoOpenError(f"video {name} declares no frame rate and none could be derived")
        if num_frames <= 0:
            num_frames = max(1, round(duration * rate))
        if duration is None:
            duration = num_frames / rate
        stream.thread_type = "AUTO"  # frame + slice threads: ~5x on full decodes (PyAV docs)
        indices = sample_indices(num_frames, float(rate), fps, max_frames, rule)
        info = VideoInfo(
            source=name,
            container=container.format.name,
            codec=ctx.name,
            height=ctx.height,
            width=ctx.width,
            rotation=0,
            fps=float(rate),
            num_frames=num_frames,
            duration=float(duration),
            frames_estimated=estimated,
        )
        stats = DecodeStats()
        frames = _decode(container, stream, start_pts, indices / info.fps, info, stats, limits)
        first = next(frames, None)  # decodes the first kept frame now: rotation and real size known
        if first is None:
            raise EmptyVideoError(f"video {name}: no frame could be decoded")
        rotation, (height, width) = first[1], first[2].pixels.shape[:2]
        info = replace(info, rotation=rotation, height=height, width=width)
        return VideoReader(info, indices, _chain(first[2], (f for _, _, f in frames)), stats, container)
    except BaseException:
        container.close()
        raise


def _open_container(source: object, name: str) -> av.container.InputContainer:
    if hasattr(source, "read"):
        # Read into memory: a probe pass reopens the source, and two containers cannot share one
        # file position.
        return _open_container(source.read(), name)
    target = check_file_or_bytes(source, "video", VideoOpenError, name)
    if target is None:
        raise VideoOpenError(
            f"video input must be a path, bytes, a binary file, a directory or list of images, "
            f"got {type(source).__name__}"
        )
    try:
        return av.open(target, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise VideoOpenError(
            f"video {name} could not be opened as a media file ({exc.strerror or exc})"
        ) from exc


def _video_stream(container: av.container.InputContainer, name: str) -> av.video.stream.VideoStream:
    # Cover art in audio files shows up as a one-picture "video" stream: not a video.
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise NoVideoStreamError(f"video {name} has no video stream (streams: {', '.join(kinds)})")
    stream = streams[0]
    if stream.codec_context is None:
        raise UnsupportedCodecError(
            f"video {name}: its video codec is unknown to, or has no decoder in, the bundled FFmpeg"
        )
    return stream


def _first_truthy(*rates: object) -> Fraction | None:
    # PyAV 19 returns a falsy AVRational(0, 1) for unset rates, older versions None.
    for r in rates:
        if r:
            return Fraction(r.numerator, r.denominator)
    return None


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _count_packets(source: object, name: str) -> tuple[int, int | None, int | None]:
    """Demux (no decoding) to count the video packets and find the first and end timestamps."""
    with _open_container(source, name) as c:
        stream = _video_stream(c, name)
        count, first, end = 0, None, None
        for packet in c.demux(stream):
            if packet.size == 0:
                continue  # the flush packet at the end
            count += 1
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:  # raw elementary streams carry no timestamps: the count must do
                continue
            first = ts if first is None else min(first, ts)
            stop = ts + (packet.duration or 0)
            end = stop if end is None else max(end, stop)
        return count, first, end


def _rotation(frame: av.VideoFrame) -> int:
    return round((getattr(frame, "rotation", 0) or 0) / 90) % 4 * 90


def _to_rgb(frame: av.VideoFrame, rotation: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 (H, W, 3) upright RGB. `size` (width, height): streams that change resolution midway
    are scaled back to their first frame's size, since a video gets one grid."""
    if size is not None and (frame.width, frame.height) != size:
        rgb = frame.to_ndarray(format="rgb24", width=size[0], height=size[1], interpolation="BICUBIC")
    else:
        rgb = frame.to_ndarray(format="rgb24")
    if rotation:
        # Display matrix angles are counter-clockwise; np.rot90 with k > 0 turns counter-clockwise.
        rgb = np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))
    return rgb


def _decode(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    start_pts: int | None,
    targets: np.ndarray,
    info: VideoInfo,
    stats: DecodeStats,
    limits: DecodeLimits,
) -> Iterator[tuple[int, int, SampledFrame]]:
    """Yield (position, rotation, frame) for each planned time: the frame on screen at that time.

    Streaming twin of `video.sample.pick_displayed`: the frame on screen at time x is the last one
    starting at or before x (within `tol`, for timestamps rounded to the container's time base). It is
    known once the next frame starts after x, so one frame is held back.
    """
    name, n = info.source, len(targets)
    tb = stream.time_base
    deadline = time.monotonic() + limits.timeout_s if limits.timeout_s else math.inf
    step = 1.0 / info.fps
    tol = display_tolerance(float(tb), info.fps)
    seek_gap, can_seek = limits.seek_gap_s, True
    k = 0
    prev: tuple[float, av.VideoFrame, float] | None = None  # (start, frame, end) of the frame on screen
    converted: tuple[av.VideoFrame, np.ndarray] | None = None  # the last converted frame, its pixels
    rotation, coded_size = 0, None
    origin = start_pts
    after_seek = False

    def emit(t: float, frame: av.VideoFrame) -> tuple[int, int, SampledFrame]:
        nonlocal converted
        # Compare identity while holding the frame: an id() of a freed frame can be reused.
        if converted is None or converted[0] is not frame:
            converted = (frame, _to_rgb(frame, rotation, coded_size))
        stats.kept += 1
        return k, rotation, SampledFrame(k, converted[1], t)

    def frames() -> Iterator[av.VideoFrame]:
        idle = 0
        for packet in container.demux(stream):
            if time.monotonic() > deadline:
                raise VideoDecodeError(f"video {name}: decoding exceeded {limits.timeout_s:.0f} s; stopped")
            try:
                decoded = packet.decode()
            except av.error.FFmpegError:
                stats.errors += 1  # a corrupt packet: skip it, the decoder resyncs on the next keyframe
                decoded = []
            idle = 0 if decoded else idle + 1
            if idle > limits.max_packets_without_frame:
                raise VideoDecodeError(
                    f"video {name}: {idle} packets in a row gave no frame; the stream looks corrupt"
                )
            for frame in decoded:
                stats.decoded += 1
                if stats.decoded > limits.max_decoded_frames:
                    raise VideoDecodeError(
                        f"video {name}: decoded over {limits.max_decoded_frames:,} frames; stopped"
                    )
                yield frame

    while k < n:
        sought = False
        try:
            for frame in frames():
                if frame.pts is None:
                    t = prev[2] if prev else 0.0
                else:
                    origin = frame.pts if origin is None else origin
                    t = float((frame.pts - origin) * tb)
                if stats.decoded == 1:
                    rotation, coded_size = _rotation(frame), (frame.width, frame.height)
                if after_seek:
                    after_seek = False
                    if prev is not None and t <= prev[0]:
                        seek_gap *= 2  # the keyframe was behind us: seeking bought nothing at this gap
                    elif t > targets[k] + tol and can_seek:
                        # Landed past the target: this container seeks inexactly. Go back to where we
                        # were and decode straight through from now on.
                        can_seek = False
                        _seek(container, stream, prev[0] if prev else 0.0, origin, tb)
                        stats.seeks += 1
                        sought = True
                        break
                if prev is not None and t <= prev[0]:
                    continue  # already passed (after a seek), or a duplicate / out-of-order timestamp
                while k < n and t > targets[k] + tol:
                    # Planned time k has passed: the frame on screen then was the previous one (or, for
                    # times before the first frame, this one).
                    yield emit(*prev[:2]) if prev is not None else emit(t, frame)
                    k += 1
                if k == n:
                    return
                duration = float(frame.duration * tb) if frame.duration else step
                prev = (t, frame, t + duration)
                stats.last_time = t
                if can_seek and targets[k] - t > seek_gap:
                    _seek(container, stream, float(targets[k]), origin, tb)
                    stats.seeks += 1
                    sought = after_seek = True
                    break
        except VideoError:
            raise
        except av.error.FFmpegError as exc:
            # Demuxing broke (cut file, I/O error): keep what decoded and report the loss below.
            stats.errors += 1
            warnings.warn(
                f"video {name}: stream error after {stats.last_time:.3f} s ({exc})",
                TruncatedVideoWarning,
                stacklevel=2,
            )
        if not sought:
            break
    if k < n and prev is not None:
        # The stream has ended: planned times inside the last frame's display interval get it; later
        # ones would have shown frames that are not in the file.
        while k < n and targets[k] < prev[2] - 1e-9:
            yield emit(*prev[:2])
            k += 1
        if k < n:
            stats.missing = n - k
            warnings.warn(
                f"video {name}: frames end at {prev[2]:.3f} s but {info.duration:.3f} s were announced; "
                f"{n - k} of {n} sampled frames missing (truncated or damaged file)",
                TruncatedVideoWarning,
                stacklevel=2,
            )


def display_tolerance(time_base: float, fps: float) -> float:
    """Slack when comparing frame start times with planned times: one time-base tick (timestamps are
    rounded to it, e.g. whole milliseconds in WebM), at most a quarter frame."""
    return min(time_base, 0.25 / fps) + 1e-9


def _seek(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    seconds: float,
    origin: int | None,
    tb: Fraction,
) -> None:
    # backward=True lands on the keyframe at or before the target; we decode forward from there.
    offset = int(seconds / tb) + (origin or 0)
    container.seek(offset, backward=True, any_frame=False, stream=stream)


def _chain(first: SampledFrame, rest: Iterator[SampledFrame]) -> Iterator[SampledFrame]:
    yield first
    yield from rest


__all__ = [
    "DecodeLimits",
    "DecodeStats",
    "DecodedVideo",
    "ImageSequence",
    "SampledFrame",
    "VideoInfo",
    "VideoReader",
    "load_video",
    "open_video",
]
