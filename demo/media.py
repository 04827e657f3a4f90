"""What the demo checks and shows about attached files before the model sees them.

Pure helpers over file paths and header metadata (no tensors, no model): which kind a file is, the
upload limits, the Media controls as `Model.chat` options, and the "how this video will be sampled"
preview (frames kept, chunks, timestamps, vision tokens) computed from the container header and the
resize plan with those options, without decoding frames.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image

from mm_model import InputError
from mm_model.media_options import MediaOptions, image_config, video_config
from video import format_timestamp, iter_chunks
from vision.config import MediaConfig
from vision.preprocess import num_tokens

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v", ".gif", ".ts"})
TEXT_SUFFIXES = frozenset({".txt"})  # Gradio turns long pasted text into pasted_text.txt


@dataclass(frozen=True)
class Limits:
    """Per-file upload size (MB) and video duration (s) the demo accepts."""

    max_upload_mb: float = 50.0
    max_video_seconds: float = 120.0


def kind_of(path: str | os.PathLike) -> str:
    """ "image", "video" or "text" by file suffix; anything else is refused with a clear message."""
    suffix = Path(path).suffix.lower()
    for kind, suffixes in (("image", IMAGE_SUFFIXES), ("video", VIDEO_SUFFIXES), ("text", TEXT_SUFFIXES)):
        if suffix in suffixes:
            return kind
    raise InputError(
        f"{Path(path).name}: unsupported file type {suffix or '(none)'!r}; "
        f"attach an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a video ({', '.join(sorted(VIDEO_SUFFIXES))})"
    )


def check_file(path: str | os.PathLike, limits: Limits) -> str:
    """The file's kind, after checking its size and (for a video) its duration from the header."""
    kind = kind_of(path)
    name = Path(path).name
    size_mb = os.path.getsize(path) / 2**20
    if size_mb > limits.max_upload_mb:
        raise InputError(
            f"{name} is {size_mb:.1f} MB; this demo accepts files up to {limits.max_upload_mb:g} MB"
        )
    if kind == "video":
        seconds = video_plan(path).duration
        if seconds > limits.max_video_seconds:
            raise InputError(
                f"{name} lasts {seconds:.1f} s; this demo accepts videos up to {limits.max_video_seconds:g} s "
                "(trim it, or start the demo with a larger --max-video-seconds)"
            )
    return kind


@dataclass(frozen=True)
class VideoPlan:
    """How a video will be sampled and what it costs, known from its header."""

    name: str
    duration: float
    fps: float
    size: tuple[int, int]  # (width, height) displayed
    frames_kept: int
    chunks: int
    grid_hw: tuple[int, int]  # patches per frame
    tokens_per_chunk: int
    timestamps: tuple[str, ...]  # first frame of each chunk, as the prompt carries it

    @property
    def vision_tokens(self) -> int:
        return self.chunks * self.tokens_per_chunk


def chat_options(
    fps: Any, max_frames: Any, max_patches: Any, cfg: MediaConfig, default_fps: float
) -> dict[str, Any]:
    """The Media controls as `Model.chat` keywords (fps, num_frames, max_patches), checked.

    A control left at the model's own value is not sent, so by default the model samples as it always
    does (a call-wide max_patches would also cap video frames: `mm_model.media_options`); max_frames 0
    means no cap."""
    whole = lambda v: int(v) if isinstance(v, float) and v.is_integer() else v  # noqa: E731 (UI numbers)
    out: dict[str, Any] = {}
    if fps is not None and fps != default_fps:
        out["fps"] = fps
    if max_frames:
        out["num_frames"] = whole(max_frames)
    if max_patches is not None and max_patches != cfg.in_patch_limit:
        out["max_patches"] = whole(max_patches)
    return MediaOptions.checked(**out).as_dict()  # InputError naming the option and the value


def effective_config(
    cfg: MediaConfig, options: dict[str, Any] | None = None
) -> tuple[MediaConfig, int | None]:
    """(`cfg` with a call's media options applied as the processor applies them, frame cap)."""
    call = MediaOptions.checked(**(options or {}))
    video, cap = video_config(cfg, MediaOptions(), call)
    return replace(video, in_patch_limit=image_config(cfg, MediaOptions(), call).in_patch_limit), cap


def video_plan(
    path: str | os.PathLike, cfg: MediaConfig | None = None, max_frames: int | None = None
) -> VideoPlan:
    """Open the video, plan its sampling and resize exactly as the processor will, and close it."""
    cfg = cfg or MediaConfig()
    stream = iter_chunks(
        path, fps=cfg.sample_fps, chunk_frames=cfg.temporal_merge_kernel_size, max_frames=max_frames, cfg=cfg
    )
    try:
        info, k = stream.info, cfg.temporal_merge_kernel_size
        times = stream.indices / info.fps
        return VideoPlan(
            Path(path).name, info.duration, info.fps, (info.width, info.height), len(stream.indices),
            stream.num_chunks, stream.grid_hw, stream.tokens_per_chunk,
            tuple(format_timestamp(float(t)) for t in times[::k]),
        )  # fmt: skip
    finally:
        stream.close()


def describe(
    paths: list[str], cfg: MediaConfig, limits: Limits, options: dict[str, Any] | None = None
) -> str:
    """Markdown for the side panel: per attached file, its sampling (videos) and vision token cost,
    with `options` (`Model.chat`'s fps / num_frames / max_patches) applied."""
    try:
        cfg, cap = effective_config(cfg, options)
    except InputError as exc:
        return f"Media settings: {exc}"
    lines = []
    for path in paths:
        name = Path(path).name
        try:
            kind = kind_of(path)
            if kind == "image":
                with Image.open(path) as im:
                    w, h = im.size
                lines.append(f"**{name}**: image {w}x{h} -> **{num_tokens(h, w, cfg)} vision tokens**")
            elif kind == "video":
                p = video_plan(path, cfg, cap)
                stamps = ", ".join(p.timestamps[:8]) + (" ..." if len(p.timestamps) > 8 else "")
                lines.append(
                    f"**{name}**: video {p.size[0]}x{p.size[1]}, {p.duration:.1f} s at {p.fps:g} fps\n"
                    f"- sampled at {cfg.sample_fps:g} fps{f', at most {cap} frames' if cap else ''}: "
                    f"**{p.frames_kept} frames kept** in **{p.chunks} chunks** of {cfg.temporal_merge_kernel_size}\n"
                    f"- each chunk {p.grid_hw[0]}x{p.grid_hw[1]} patches -> {p.tokens_per_chunk} tokens\n"
                    f"- chunk timestamps: {stamps}\n"
                    f"- **{p.vision_tokens} vision tokens** in all"
                )
                if p.duration > limits.max_video_seconds:
                    lines.append(f"  - too long: this demo accepts up to {limits.max_video_seconds:g} s")
            else:
                lines.append(f"**{name}**: text, added to the message")
        except (InputError, OSError) as exc:
            lines.append(f"**{name}**: cannot be used: {exc}")
    return "\n\n".join(lines) or "Attach a video or an image to see how it will be sampled and what it costs."
