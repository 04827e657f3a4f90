"""The frames lmms-eval 0.7.3's `openai_compatible` model sends for a video (`--frames lmms-eval`).

It sends no video: `max_frames_num` (default 10) frames spread over the whole file, each a separate
PNG image. Two classes answer to that name:
  "lmms-eval"        the chat class (`models/chat/openai.py`), which `--model openai_compatible`
                     resolves to in 0.7.3 (the registry prefers a chat class). Frames come from
                     qwen_vl_utils' `fetch_video(nframes=N)` (0.0.14): N rounded to an even count
                     (`round(N / 2) * 2`, which must lie in [2, frames in the file], else it raises),
                     indices `torch.linspace(0, T - 1, N).round()`, each frame resized by its
                     `smart_resize` to multiples of 28 px within [128, 768] x 28^2 pixels (small
                     frames are enlarged), bicubic; the images go before the text.
  "lmms-eval-simple" the simple class (`--force_simple`, `models/simple/openai.py`): indices
                     `np.linspace(0, T - 1, min(N, T), dtype=int)` (truncated), plus the last frame
                     if missing; full-size frames, after the text.
Difference: we resize with PIL's bicubic filter, not torchvision's antialiased one (pixel values may
differ by a little; sizes are the same).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmarks.video_suites.schema import Sample
from vision.errors import InputError

DEFAULT_FRAMES = 10  # OpenAICompatible(max_frames_num=10)
MODES = ("native", "lmms-eval", "lmms-eval-simple")
_FACTOR = 28  # qwen_vl_utils: image_patch_size 14 x spatial merge 2
_MIN_PIXELS = 128 * _FACTOR * _FACTOR  # VIDEO_MIN_TOKEN_NUM
_MAX_PIXELS = 768 * _FACTOR * _FACTOR  # VIDEO_MAX_TOKEN_NUM
_TOTAL_PIXELS = 128000 * _FACTOR * _FACTOR * 0.9  # MODEL_SEQ_LEN default


def chat_indices(total: int, n: int = DEFAULT_FRAMES) -> list[int]:
    """Frame indices the chat class samples from a `total`-frame video (qwen_vl_utils' rule)."""
    import torch

    count = round(n / 2) * 2
    if not 2 <= count <= total:
        raise InputError(f"lmms-eval's openai_compatible cannot take {count} frames from a {total}-frame video "
                         f"(qwen_vl_utils needs 2..{total}); lower --max-frames")  # fmt: skip
    return torch.linspace(0, total - 1, count).round().long().tolist()


def simple_indices(total: int, n: int = DEFAULT_FRAMES) -> list[int]:
    """Frame indices the simple class samples (`encode_video` without video_fps)."""
    if total <= 0:
        return []
    picked = np.linspace(0, total - 1, min(max(1, int(n)), total), dtype=int).tolist()
    return sorted({*picked, total - 1})


def smart_size(height: int, width: int, frames: int) -> tuple[int, int]:
    """(height, width) qwen_vl_utils resizes each of `frames` video frames to."""

    def by(x: float, rounding: Any) -> int:
        return int(rounding(x / _FACTOR) * _FACTOR)

    max_pixels = max(min(_MAX_PIXELS, _TOTAL_PIXELS / frames * 2), int(_MIN_PIXELS * 1.05))
    h, w = max(_FACTOR, by(height, round)), max(_FACTOR, by(width, round))
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = by(height / beta, math.floor), by(width / beta, math.floor)
    elif h * w < _MIN_PIXELS:
        beta = math.sqrt(_MIN_PIXELS / (height * width))
        h, w = by(height * beta, math.ceil), by(width * beta, math.ceil)
    return h, w


def _all_frames(sample: Sample) -> tuple[int, Any]:
    """(frame count, iterator of (index, PIL frame)) over the part of the video the question is about."""
    from PIL import Image

    if sample.frame_fps is None and sample.start is None and sample.end is None:
        import video

        reader = video.open_video(sample.video, fps=1e9)  # every frame (capped at the file's own rate)
        count = len(reader.indices)

        def stream() -> Any:
            with reader:
                for frame in reader:
                    yield frame.position, Image.fromarray(frame.pixels)

        return count, stream()
    from benchmarks.video_suites.backends import video_input

    frames = video_input(sample, 1e9)  # a segment or a frame folder, at its own rate
    return len(frames), enumerate(frames)


def lmms_frames(sample: Sample, mode: str, n: int | None = None) -> list[Any]:
    """The PIL frames lmms-eval's openai_compatible would send for `sample` in `mode`."""
    if mode not in MODES[1:]:
        raise InputError(f"frames mode {mode!r} is not one of {', '.join(MODES[1:])}")
    total, frames = _all_frames(sample)
    wanted = (chat_indices if mode == "lmms-eval" else simple_indices)(total, n or DEFAULT_FRAMES)
    keep = set(wanted)
    picked = {i: im for i, im in frames if i in keep}
    out = [picked[i] for i in wanted if i in picked]  # a file shorter than its header: what decoded
    if mode == "lmms-eval" and out:
        h, w = smart_size(out[0].height, out[0].width, len(wanted))
        from PIL import Image

        out = [im.resize((w, h), Image.Resampling.BICUBIC) for im in out]
    return out
