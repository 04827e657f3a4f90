"""What every video source yields, PyAV file or image sequence: plan, metadata, frames, costs.

`VideoReader` is one pass over the planned frames of an opened video; `load_video` collects a pass
into a `DecodedVideo`. Nothing here decodes; `video.decode` (PyAV) and `video.sequence` (stills) do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from video.errors import VideoTooLargeError


@dataclass(frozen=True)
class DecodeLimits:
    """Per-file bounds. Dimensions are checked on the header, before any frame is decoded."""

    max_side: int = 16384
    max_pixels: int = 1 << 26  # 67M: above 8K x 8K, far above anything the 4096-patch budget needs
    max_decoded_frames: int = 2_000_000
    max_packets_without_frame: int = 10_000
    timeout_s: float | None = 3600.0
    seek_gap_s: float = 8.0


@dataclass(frozen=True)
class VideoInfo:
    """What the container says, plus what the first frame showed.

    `height`/`width` are the displayed size (after `rotation`); `num_frames` is from the header, or
    estimated as round(duration * fps) when the header has none (`frames_estimated`).
    """

    source: str
    container: str
    codec: str
    height: int
    width: int
    rotation: int  # degrees counter-clockwise the frames are turned to display upright
    fps: float
    num_frames: int
    duration: float
    frames_estimated: bool = False


@dataclass
class DecodeStats:
    """What decoding cost and what it lost; filled in while a `VideoReader` is iterated."""

    decoded: int = 0
    kept: int = 0
    seeks: int = 0
    missing: int = 0  # planned frames past the last decodable one (truncated or over-announced file)
    errors: int = 0  # packets the decoder rejected (skipped)
    last_time: float = 0.0


@dataclass(frozen=True)
class SampledFrame:
    """One kept frame: `pixels` uint8 (H, W, 3) upright RGB, `time` in seconds from the stream start."""

    position: int  # index in the sampling plan
    pixels: np.ndarray
    time: float


@dataclass
class DecodedVideo:
    """A sampled video in memory.

    Attributes:
        frames: uint8 (T, H, W, 3) upright RGB.
        timestamps: float64 (T,) presentation time of each frame, seconds from the stream start.
        indices: int64 (T,) the planned frame indices (time = index / fps on constant-rate files).
        info: container metadata; stats: decode cost and losses.
    """

    frames: np.ndarray
    timestamps: np.ndarray
    indices: np.ndarray
    info: VideoInfo
    stats: DecodeStats = field(default_factory=DecodeStats)


class VideoReader:
    """Iterate to decode the planned frames in order (`SampledFrame`s). One pass; close when done.

    Attributes:
        info: `VideoInfo`. indices: int64 (n,) planned frame indices. targets: float64 (n,) their
        times in seconds. stats: `DecodeStats`, complete once iteration ends.
    """

    def __init__(
        self,
        info: VideoInfo,
        indices: np.ndarray,
        frames: Iterator[SampledFrame],
        stats: DecodeStats,
        closer: object = None,
    ) -> None:
        self.info = info
        self.indices = indices
        self.targets = indices / info.fps
        self.stats = stats
        self._frames = frames
        self._closer = closer

    def __iter__(self) -> Iterator[SampledFrame]:
        try:
            yield from self._frames
        finally:
            self.close()

    def close(self) -> None:
        if self._closer is not None:
            self._closer.close()
            self._closer = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_size(height: int, width: int, name: str, limits: DecodeLimits) -> None:
    """Refuse absurd frame sizes (from a header, before decoding)."""
    if height < 0 or width < 0:
        raise VideoTooLargeError(f"video {name} declares a negative size {width}x{height}")
    if max(height, width) > limits.max_side or height * width > limits.max_pixels:
        raise VideoTooLargeError(
            f"video {name} is {width}x{height}, over the limit of {limits.max_side} per side and "
            f"{limits.max_pixels:,} pixels per frame; refused before decoding"
        )


__all__ = [
    "DecodeLimits",
    "DecodeStats",
    "DecodedVideo",
    "SampledFrame",
    "VideoInfo",
    "VideoReader",
    "check_size",
]
