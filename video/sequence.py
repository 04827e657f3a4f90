"""Image sequences as videos: a directory of frames, a list of images, or an `ImageSequence`."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from video.errors import EmptyVideoError, VideoError, VideoOpenError
from video.reader import DecodeLimits, DecodeStats, SampledFrame, VideoInfo, VideoReader, check_size
from video.sample import sample_indices
from vision.errors import ImageError, describe_source
from vision.preprocess import load_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageSequence:
    """Still images shown one after another at `fps` frames per second (frame k at k / fps).

    A bare list or a directory passed as a source is read as an `ImageSequence` at the sampling fps
    (so default sampling keeps every image). A directory's images (by suffix, `IMAGE_SUFFIXES`) are
    ordered by name with digit runs compared as numbers (frame2 < frame10).
    """

    frames: Sequence[object]
    fps: float = 2.0


def _natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def as_sequence(source: object, fps: float) -> ImageSequence | None:
    if isinstance(source, ImageSequence):
        return source
    if isinstance(source, (list, tuple)):
        return ImageSequence(list(source), fps)
    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        path = os.fspath(source)
        names = sorted((n for n in os.listdir(path) if n.lower().endswith(IMAGE_SUFFIXES)), key=_natural_key)
        if not names:
            raise EmptyVideoError(
                f"video {describe_source(source)} is a directory with no images {IMAGE_SUFFIXES}"
            )
        return ImageSequence([os.path.join(path, n) for n in names], fps)
    return None


def open_sequence(
    seq: ImageSequence, name: str, fps: float, max_frames: int | None, rule: str, limits: DecodeLimits
) -> VideoReader:
    if not seq.frames:
        raise EmptyVideoError(f"video {name} is an empty image sequence")
    if not (seq.fps > 0 and math.isfinite(seq.fps)):
        raise VideoError(f"image sequence {name}: fps must be a positive number, got {seq.fps!r}")
    n = len(seq.frames)
    first = _load_still(seq.frames[0], 0, name, limits)
    info = VideoInfo(
        name, "image_sequence", "image", first.height, first.width, 0, float(seq.fps), n, n / seq.fps
    )
    indices = sample_indices(n, info.fps, fps, max_frames, rule)
    stats = DecodeStats()

    def frames() -> Iterator[SampledFrame]:
        for position, index in enumerate(indices.tolist()):
            image = first if index == 0 else _load_still(seq.frames[index], index, name, limits)
            if image.size != first.size:
                # One grid per video: later stills of another size are fitted to the first one's.
                image = image.resize(first.size, Image.Resampling.BICUBIC)
            stats.decoded += 1
            stats.kept += 1
            stats.last_time = index / info.fps
            yield SampledFrame(position, np.asarray(image, dtype=np.uint8), index / info.fps)

    return VideoReader(info, indices, frames(), stats)


def _load_still(item: object, index: int, name: str, limits: DecodeLimits) -> Image.Image:
    try:
        image = load_image(item, max_pixels=limits.max_pixels)
    except ImageError as exc:
        raise VideoOpenError(f"image sequence {name}, frame {index}: {exc}") from exc
    check_size(image.height, image.width, f"{name} frame {index}", limits)
    return image


__all__ = ["IMAGE_SUFFIXES", "ImageSequence", "as_sequence", "open_sequence"]
