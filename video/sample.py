"""Which frames of a video to keep, and how chunk timestamps are written. Pure functions, no I/O.

Two conventions exist for Kimi K2.5 and they disagree; both are here.

- **Moonshot** (the released model's processor, `kimi_k25_vision_processing.split_video_chunks`, and
  our default): with N frames at average rate F and a target rate s = min(fps, F),
  n = max(round(N * s / F), 1) frames at indices round(linspace(0, N - 1, n)). The first and last
  frames are always kept and the picks spread over the whole clip. A `max_frames` cap lowers n and
  keeps the spread.
- **transformers 5.23** (`BaseVideoProcessor.sample_frames` -> `video_utils.default_sample_indices_fn`,
  which `Kimi_K25VideoProcessor` does not override): n = max(1, int(N / F * fps)), indices
  arange(n) * N // n. It raises when n > N (a video slower than `fps`); we clamp n to N instead.
  For a 300-frame 30 fps clip: Moonshot [0, 16, 31, 47, ...], transformers [0, 15, 30, 45, ...].

Indices are turned into times (index / F) by the decoder, which then keeps the frame on screen at
each time (the last one starting at or before it): on constant-frame-rate files that is exactly frame
`index`; on variable-frame-rate files it is what a viewer saw at that moment, which an index cannot
express.

A chunk's timestamp is the time of its first frame, printed `HH:MM:SS.mmm` with the milliseconds
truncated (`int(t % 1 * 1000)`, so 2.3 s prints as 00:00:02.299), as both references do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

RULES = ("moonshot", "transformers")


def moonshot_indices(
    num_frames: int, video_fps: float, fps: float = 2.0, max_frames: int | None = None
) -> np.ndarray:
    """Frame indices kept by Moonshot's rule (see module doc). int64 (n,), sorted, within [0, N)."""
    _check(num_frames, video_fps, fps, max_frames)
    rate = min(fps, video_fps)
    # Python's round() (half to even) and numpy's .round() (half to even), as the reference uses them.
    n = max(round(num_frames * rate / video_fps), 1)
    if max_frames is not None:
        n = min(n, max_frames)
    return np.linspace(0, num_frames - 1, n).round().astype(np.int64)


def transformers_indices(
    num_frames: int, video_fps: float, fps: float = 2.0, max_frames: int | None = None
) -> np.ndarray:
    """Frame indices kept by transformers' default sampler (see module doc). int64 (n,).

    Difference from reference: where transformers raises (n > N) we keep every frame.
    """
    _check(num_frames, video_fps, fps, max_frames)
    n = min(max(1, int(num_frames / video_fps * fps)), num_frames)
    if max_frames is not None:
        n = min(n, max_frames)
    return np.arange(n, dtype=np.int64) * num_frames // n


def sample_indices(
    num_frames: int, video_fps: float, fps: float = 2.0, max_frames: int | None = None, rule: str = "moonshot"
) -> np.ndarray:
    """Dispatch to `moonshot_indices` or `transformers_indices` by `rule`."""
    if rule == "moonshot":
        return moonshot_indices(num_frames, video_fps, fps, max_frames)
    if rule == "transformers":
        return transformers_indices(num_frames, video_fps, fps, max_frames)
    raise ValueError(f"sampling rule must be one of {RULES}, got {rule!r}")


def _check(num_frames: int, video_fps: float, fps: float, max_frames: int | None) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not (video_fps > 0 and math.isfinite(video_fps)):
        raise ValueError(f"video_fps must be a positive number, got {video_fps}")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")


def pick_displayed(frame_times: Sequence[float], targets: Sequence[float], tol: float = 1e-9) -> np.ndarray:
    """For each target time, the index of the frame on screen then: the last frame starting at or
    before it (within `tol`); targets before the first frame get frame 0.

    The whole-array twin of the streaming choice in `video.decode`: frame times sorted, (n,) int64.
    """
    times = np.asarray(frame_times, dtype=np.float64)
    want = np.asarray(targets, dtype=np.float64)
    return (np.searchsorted(times, want + tol, side="right") - 1).clip(0).astype(np.int64)


def chunk_spans(num_frames: int, chunk_frames: int = 4) -> list[tuple[int, int]]:
    """[start, stop) frame ranges of consecutive chunks; the last holds the remainder (1..chunk_frames)."""
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    return [(s, min(s + chunk_frames, num_frames)) for s in range(0, num_frames, chunk_frames)]


def format_timestamp(seconds: float) -> str:
    """`HH:MM:SS.mmm` with milliseconds truncated, as the references print a chunk's start time.

    Difference from reference: the references format hours with `strftime("%H")` of a UTC time, which
    wraps after 24 h; we keep counting hours (identical below 24 h).
    """
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise ValueError(f"timestamp must be a finite number >= 0, got {seconds}")
    whole = int(seconds)
    millis = int(seconds % 1 * 1000)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}.{millis:03d}"


__all__ = [
    "RULES",
    "chunk_spans",
    "format_timestamp",
    "moonshot_indices",
    "pick_displayed",
    "sample_indices",
    "transformers_indices",
]
