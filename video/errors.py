"""Bad-video errors: every one is a `vision.errors.VideoError`, hence an `InputError` (a `ValueError`).

Each names the input (via `describe_source`) and what was wrong with it, so a caller can show the
message as it is.
"""

from __future__ import annotations

from vision.errors import VideoError


class VideoOpenError(VideoError):
    """The input is missing, of the wrong type, or not a container FFmpeg can read."""


class NoVideoStreamError(VideoError):
    """The container holds no video stream (audio-only file, subtitles, cover art only)."""


class UnsupportedCodecError(VideoError):
    """The video stream's codec has no decoder in the bundled FFmpeg."""


class VideoTooLargeError(VideoError):
    """The header claims absurd dimensions; refused before any frame is decoded."""


class EmptyVideoError(VideoError):
    """Not a single frame could be decoded."""


class VideoDecodeError(VideoError):
    """Decoding failed or ran past its work budget (frames, packets or wall time)."""


class TruncatedVideoWarning(UserWarning):
    """The stream ended (or broke) before the end its header announced; what decoded is returned."""


__all__ = [
    "EmptyVideoError",
    "NoVideoStreamError",
    "TruncatedVideoWarning",
    "UnsupportedCodecError",
    "VideoDecodeError",
    "VideoError",
    "VideoOpenError",
    "VideoTooLargeError",
]
