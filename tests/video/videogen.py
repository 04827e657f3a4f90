"""Synthetic test videos written with PyAV, and a frame-number stamp that survives codecs.

Every frame carries its own number as a row of black/white blocks across the top (bit b of the
number in block b), so a test can read back which source frame it got, through lossy codecs and
after chunking, and fail if frames are dropped, repeated or shuffled.
"""

from __future__ import annotations

import fractions
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np

STAMP_BITS = 8


def stamp(index: int, height: int, width: int, bits: int = STAMP_BITS) -> np.ndarray:
    """uint8 (H, W, 3): frame `index` in binary across the top third, a red marker bottom-left."""
    frame = np.full((height, width, 3), 96, np.uint8)
    block = width // bits
    top = max(8, height // 3)
    for b in range(bits):
        if index >> b & 1:
            frame[:top, b * block : (b + 1) * block] = 255
        else:
            frame[:top, b * block : (b + 1) * block] = 0
    frame[-max(4, height // 4) :, : max(4, width // 4)] = (255, 0, 0)  # orientation marker
    return frame


def read_stamp(frame: np.ndarray, bits: int = STAMP_BITS) -> int:
    """Inverse of `stamp` for an upright uint8 (H, W, 3) frame (or a larger, zero-padded one of width `width`)."""
    height, width = frame.shape[:2]
    return _read(frame, height, width, bits)


def _read(frame: np.ndarray, height: int, width: int, bits: int) -> int:
    block = width // bits
    top = max(8, height // 3)
    value = 0
    for b in range(bits):
        cell = frame[2 : top - 2, b * block + 2 : (b + 1) * block - 2].astype(np.float64)
        if cell.mean() > 127:
            value |= 1 << b
    return value


def read_stamp_sized(frame: np.ndarray, height: int, width: int, bits: int = STAMP_BITS) -> int:
    """`read_stamp` for a frame padded beyond its content size (height, width)."""
    return _read(frame, height, width, bits)


def write_video(
    path: Path,
    codec: str = "libx264",
    *,
    size: tuple[int, int] = (48, 64),
    frames: int = 30,
    fps: int = 10,
    pix_fmt: str = "yuv420p",
    times: Sequence[float] | None = None,
    rotation: int | None = None,
    options: dict[str, str] | None = None,
    bits: int = STAMP_BITS,
) -> Path:
    """Encode stamped frames. `times` (seconds) gives a variable frame rate through explicit pts."""
    height, width = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if options:
            stream.options = options
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if times is not None:
            stream.codec_context.time_base = fractions.Fraction(1, 1000)
        count = len(times) if times is not None else frames
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(stamp(i, height, width, bits), format="rgb24")
            if times is not None:
                frame.pts = round(times[i] * 1000)
                frame.time_base = fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path) -> Path:
    """A WAV file: a container with one audio stream and no video."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
