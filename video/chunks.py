"""Sampled frames -> 4-frame chunks: one resize grid per video, normalized pixels, timestamp text.

A chunk is the unit MoonViT-3D encodes: t <= 4 consecutive sampled frames (the last chunk of a video
holds the remainder, t = 1..3, as the reference's `range(0, T, 4)` slicing does), all frames of the
video resized to ONE size chosen by `navit_resize` with the per-frame budget (4096 patches, 512 per
side) from the displayed size, bicubic-resized with PIL and zero-padded bottom/right to multiples of
28. Each chunk costs (h/2)*(w/2) LM tokens whatever its t, and is announced in the prompt by the
`HH:MM:SS.mmm` time of its first frame.

`iter_chunks` streams: it holds one chunk of frames at a time, so memory does not grow with the
video. `chunk_video` does the same from a whole `DecodedVideo` (its slow twin, tested equal).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from video.decode import DecodedVideo, DecodeLimits, SampledFrame, VideoInfo, VideoSource, open_video
from video.sample import chunk_spans, format_timestamp
from vision.config import MediaConfig
from vision.packing import patchify
from vision.preprocess import ResizePlan, normalize, plan_for, resize_and_pad

MEDIA_BEGIN = "<|media_begin|>video<|media_content|>"
MEDIA_END = "<|media_end|>"


@dataclass(frozen=True)
class VideoChunk:
    """One encoder item of a video.

    Attributes:
        index: position of the chunk in the video (0, 1, ...).
        pixels: float32 (t, 3, H, W) normalized, H and W multiples of patch * merge.
        grid: (t, H/patch, W/patch) in patches.
        timestamps: (t,) presentation time of each frame, seconds.
        frame_indices: (t,) the planned frame indices.
        timestamp_text: `HH:MM:SS.mmm` of the first frame, as the prompt carries it.
    """

    index: int
    pixels: Tensor
    grid: tuple[int, int, int]
    timestamps: tuple[float, ...]
    frame_indices: tuple[int, ...]
    timestamp_text: str
    merge_kernel_size: int = 2

    @property
    def num_frames(self) -> int:
        return self.grid[0]

    @property
    def num_tokens(self) -> int:
        """LM tokens after temporal pooling and the 2x2 merge: (h/2)*(w/2), independent of t."""
        m = self.merge_kernel_size
        return (self.grid[1] // m) * (self.grid[2] // m)

    def patches(self) -> Tensor:
        """(t*h*w, 3, p, p) in the encoder's order (frame, row, column)."""
        patch = self.pixels.shape[-1] // self.grid[2]
        return patchify(self.pixels, patch)[0]

    def prompt(self, pad_token: str = "<|media_pad|>") -> str:
        """`HH:MM:SS.mmm<|media_begin|>video<|media_content|>` + pads + `<|media_end|>` for this chunk."""
        return f"{self.timestamp_text}{MEDIA_BEGIN}{pad_token * self.num_tokens}{MEDIA_END}"


def video_plan(height: int, width: int, cfg: MediaConfig | None = None) -> ResizePlan:
    """The one resize plan for every frame of a video of this displayed size (per-frame budget)."""
    return plan_for(height, width, cfg or MediaConfig(), video=True)


def frames_to_pixels(frames: np.ndarray, plan: ResizePlan, cfg: MediaConfig | None = None) -> Tensor:
    """uint8 (t, H, W, 3) -> float32 (t, 3, H', W'): PIL bicubic resize + zero pad, then normalize."""
    cfg = cfg or MediaConfig()
    resized = np.stack([resize_and_pad(Image.fromarray(f), plan) for f in frames])  # (t, H', W', 3)
    return normalize(resized, cfg)


def make_chunk(
    index: int,
    frames: np.ndarray,
    timestamps: list[float],
    frame_indices: list[int],
    plan: ResizePlan,
    cfg: MediaConfig | None = None,
) -> VideoChunk:
    """Build one `VideoChunk` from its uint8 (t, H, W, 3) frames."""
    cfg = cfg or MediaConfig()
    pixels = frames_to_pixels(frames, plan, cfg)
    t, _, height, width = pixels.shape
    grid = (t, height // cfg.patch_size, width // cfg.patch_size)
    return VideoChunk(
        index=index,
        pixels=pixels,
        grid=grid,
        timestamps=tuple(float(x) for x in timestamps),
        frame_indices=tuple(int(i) for i in frame_indices),
        timestamp_text=format_timestamp(float(timestamps[0])),
        merge_kernel_size=cfg.merge_kernel_size,
    )


def chunk_video(
    video: DecodedVideo, chunk_frames: int = 4, cfg: MediaConfig | None = None
) -> list[VideoChunk]:
    """All chunks of an in-memory video (the whole-clip twin of `iter_chunks`)."""
    plan = video_plan(video.frames.shape[1], video.frames.shape[2], cfg)
    return [
        make_chunk(
            i, video.frames[a:b], video.timestamps[a:b].tolist(), video.indices[a:b].tolist(), plan, cfg
        )
        for i, (a, b) in enumerate(chunk_spans(len(video.frames), chunk_frames))
    ]


class ChunkStream:
    """An opened video, iterated chunk by chunk. Known before decoding past the first frame:
    `info`, `plan` (resize), `grid_hw`, `num_chunks`, `tokens_per_chunk` (for prompts and progress bars).

    Iterate once; `stats` (decode cost and losses) is complete when iteration ends.
    """

    def __init__(
        self,
        source: VideoSource,
        fps: float,
        chunk_frames: int,
        max_frames: int | None,
        cfg: MediaConfig | None,
        rule: str,
        limits: DecodeLimits | None,
    ) -> None:
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.cfg = cfg or MediaConfig()
        self.chunk_frames = chunk_frames
        self._reader = open_video(source, fps, max_frames, rule=rule, limits=limits)
        self.info: VideoInfo = self._reader.info
        self.plan = video_plan(self.info.height, self.info.width, self.cfg)
        p, m = self.cfg.patch_size, self.cfg.merge_kernel_size
        self.grid_hw = (self.plan.padded[0] // p, self.plan.padded[1] // p)
        self.tokens_per_chunk = (self.grid_hw[0] // m) * (self.grid_hw[1] // m)
        self.indices = self._reader.indices
        self.num_chunks = -(-len(self.indices) // chunk_frames)
        self.stats = self._reader.stats

    def __iter__(self) -> Iterator[VideoChunk]:
        pending: list[SampledFrame] = []
        index = 0
        with self._reader as reader:
            for frame in reader:
                pending.append(frame)
                if len(pending) == self.chunk_frames:
                    yield self._chunk(index, pending)
                    index += 1
                    pending = []
            if pending:
                yield self._chunk(index, pending)

    def _chunk(self, index: int, frames: list[SampledFrame]) -> VideoChunk:
        return make_chunk(
            index,
            np.stack([f.pixels for f in frames]),
            [f.time for f in frames],
            [int(self.indices[f.position]) for f in frames],
            self.plan,
            self.cfg,
        )

    def close(self) -> None:
        self._reader.close()


def iter_chunks(
    source: VideoSource,
    fps: float = 2.0,
    chunk_frames: int = 4,
    *,
    max_frames: int | None = None,
    cfg: MediaConfig | None = None,
    rule: str = "moonshot",
    limits: DecodeLimits | None = None,
) -> ChunkStream:
    """Open `source` and stream its `VideoChunk`s without holding the whole video.

    Sampling as in `video.load_video`; `cfg` gives the resize budget and normalization (K2.5 defaults).
    Bad input raises a `VideoError` here, at open, not halfway through iteration.
    """
    return ChunkStream(source, fps, chunk_frames, max_frames, cfg, rule, limits)


def stack_chunks(chunks: list[VideoChunk]) -> tuple[Tensor, Tensor]:
    """Concatenate chunks as the reference lays them out: patches (sum t*h*w, 3, p, p), grids (M, 3) int64."""
    patches = torch.cat([c.patches() for c in chunks])
    grids = torch.tensor([c.grid for c in chunks], dtype=torch.int64)
    return patches, grids


__all__ = [
    "ChunkStream",
    "VideoChunk",
    "chunk_video",
    "frames_to_pixels",
    "iter_chunks",
    "make_chunk",
    "stack_chunks",
    "video_plan",
]
