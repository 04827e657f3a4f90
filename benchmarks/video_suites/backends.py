"""Where answers come from: `local` (our model in-process) or `openai` (any OpenAI-compatible endpoint).

A backend turns a `Request` (video + prompt + decoding settings) into a `Reply` (text, thinking,
usage, timings). The runner owns threading: `workers` says how many requests a backend takes at once
(1 for local: one model, one CPU). Video segments (MVBench bounds) and frame folders are cut here,
client-side, into a frame list (local) or a small MP4 (openai), so both backends see the same frames.
"""

from __future__ import annotations

import io
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from benchmarks.video_suites.schema import Sample


@dataclass(frozen=True)
class Request:
    sample_id: str
    video: Any  # a path, or a list of PIL frames at `fps` (segments, frame folders)
    prompt: str
    max_new_tokens: int = 32
    thinking: bool = False
    budget: int | str | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    # "": `video` goes as one video part; "before"/"after": `video` is a frame list sent as separate
    # images before/after the text (lmms-eval's openai_compatible, `lmms_frames`)
    images: str = ""


def content(request: Request, video: Any = None) -> list[dict[str, Any]]:
    """The user message's parts for `request` (`video` overrides `request.video`, e.g. re-encoded)."""
    video = request.video if video is None else video
    text = [{"type": "text", "text": request.prompt}]
    if not request.images:
        return [{"type": "video", "video": video}, *text]
    images = [{"type": "image", "image": im} for im in request.video]
    return [*images, *text] if request.images == "before" else [*text, *images]


@dataclass
class Reply:
    text: str
    thinking: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    ttft_s: float | None = None
    total_s: float | None = None
    decode_s: float | None = None  # video decode + resize (local only)
    frames: int | None = None  # sampled frames fed to the encoder (local only)
    finish_reason: str = "stop"


class Backend(Protocol):
    name: str
    workers: int

    def answer(self, request: Request) -> Reply: ...

    def describe(self) -> dict[str, Any]: ...


# ---- video inputs -------------------------------------------------------------------------------


def video_input(sample: Sample, fps: float) -> Any:
    """The video of `sample` as a backend takes it: its path, or a frame list at `fps` for segments/frame folders."""
    if sample.frame_fps is None and sample.start is None and sample.end is None:
        return sample.video
    from PIL import Image

    start, end = sample.start or 0.0, sample.end if sample.end is not None else float("inf")
    if (
        sample.frame_fps is not None
    ):  # a folder of frames at frame_fps: keep those on the fps grid in [start, end]
        from video.sequence import as_sequence

        names = list(as_sequence(sample.video, sample.frame_fps).frames)  # image paths in natural order
        times = [i / sample.frame_fps for i in range(len(names))]
        keep, next_t = [], start
        for name, t in zip(names, times):
            if start <= t <= end and t + 1e-9 >= next_t:
                keep.append(Image.open(name).convert("RGB"))
                next_t += 1.0 / fps
        return keep
    import video

    decoded = video.load_video(sample.video, fps=fps)
    frames = [Image.fromarray(f) for f, t in zip(decoded.frames, decoded.timestamps) if start <= t <= end]
    return frames or [Image.fromarray(decoded.frames[-1])]


def frames_to_mp4(frames: list[Any], fps: float) -> bytes:
    """Encode PIL frames as a small MP4 (mpeg4, near-lossless) at `fps` for endpoints that take files."""
    import av  # benchmark-side encoding; the package's decoding stays in video/decode.py
    import numpy as np

    buf = io.BytesIO()
    w, h = frames[0].size
    w, h = w - w % 2, h - h % 2
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=round(fps) if float(fps).is_integer() else fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"qscale": "1"}
        for im in frames:
            arr = np.asarray(im.convert("RGB"))[:h, :w]
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


# ---- local --------------------------------------------------------------------------------------


class LocalBackend:
    """Our model in-process through `mm_model.api.Model.chat`, with the sampling controls applied."""

    name = "local"
    workers = 1

    def __init__(
        self,
        source: str | Path | Any = "tiny",
        *,
        fps: float | None = None,
        max_frames: int | None = None,
        max_patches_per_frame: int | None = None,
        dtype: Any = None,
    ) -> None:
        import mm_model
        from mm_model.api import Model
        from mm_model.processor import Processor

        base = source if hasattr(source, "chat") else mm_model.load(source, dtype=dtype)
        cfg = base.config
        if max_patches_per_frame is not None:
            cfg = cfg.replace(media=replace(cfg.media, in_patch_limit_each_frame=int(max_patches_per_frame)))
        stats = self._stats = threading.local()

        class TimedProcessor(Processor):
            # Times video decode + resize + patchify and counts the frames the encoder gets.
            def video_items(self, source, *args, **kwargs):
                start = time.perf_counter()
                items = super().video_items(source, *args, **kwargs)
                stats.decode_s = getattr(stats, "decode_s", 0.0) + time.perf_counter() - start
                stats.frames = getattr(stats, "frames", 0) + sum(i.grid[0] for i in items)
                return items

        processor = TimedProcessor(cfg, base.tokenizer, video_fps=fps, max_video_frames=max_frames)
        self.model = Model(base.model, base.tokenizer, path=base.path, processor=processor,
                           calibration=base.calibration)  # fmt: skip
        self.source = str(getattr(base, "path", source))
        self.fps = processor.video_fps
        self.max_frames = max_frames
        self.max_patches_per_frame = cfg.media.in_patch_limit_each_frame
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {"backend": "local", "model": self.source, "fps": self.fps, "max_frames": self.max_frames,
                "max_patches_per_frame": self.max_patches_per_frame}  # fmt: skip

    def answer(self, request: Request) -> Reply:
        messages = [{"role": "user", "content": content(request)}]
        with self._lock:
            self._stats.decode_s, self._stats.frames = 0.0, 0
            start = time.perf_counter()
            r = self.model.chat(
                messages, max_new_tokens=request.max_new_tokens, thinking=request.thinking, budget=request.budget,
                temperature=request.temperature, top_p=request.top_p, seed=request.seed,
            )  # fmt: skip
            total = time.perf_counter() - start
        return Reply(r.text, r.thinking, dict(r.usage), r.timings.get("time_to_first_token_s"), total,
                     self._stats.decode_s, self._stats.frames or (len(request.video) if request.images else 0),
                     r.finish_reason)  # fmt: skip


# ---- openai -------------------------------------------------------------------------------------


class OpenAIBackend:
    """Any OpenAI-compatible chat-completions endpoint (our `mm-model serve`, vLLM, SGLang), through
    `mm_model.client.OpenAIBackend` (the official `openai` package).

    The video goes as a `video_url` data URL (segments and frame folders as a small MP4); thinking and
    the Toggle budget as the client sends them (`chat_template_kwargs.thinking`, `thinking_token_budget`
    / `thinking_budget`). Streams, so time to first token is measured here; token counts come from
    the endpoint's `usage`. Video sampling is sent with each request as the local backend applies it:
    fps (default 2, K2.5's), max_frames and max_patches_per_frame become vLLM's `media_io_kwargs` /
    `mm_processor_kwargs` (`mm_model.media_options`), so a remote K2.5 sees the frames a local one does.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        *,
        api_key: str | None = None,
        workers: int = 4,
        timeout: float = 600.0,
        fps: float = 2.0,
        max_frames: int | None = None,
        max_patches_per_frame: int | None = None,
    ) -> None:
        from mm_model.client import OpenAIBackend as Client
        from mm_model.media_options import MAX_FRAME_PATCHES, check_fps, check_max_patches, check_num_frames

        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
        self.client = Client(self.base_url, model or os.environ.get("OPENAI_MODEL"), api_key, timeout=timeout)
        self.workers = max(1, int(workers))
        self.fps = check_fps(fps, "--fps")  # sent, and used to cut segments client-side
        self.max_frames = check_num_frames(max_frames, "--max-frames")
        self.max_patches_per_frame = check_max_patches(max_patches_per_frame, "--max-patches-per-frame",
                                                       limit=MAX_FRAME_PATCHES)  # fmt: skip

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai", "base_url": self.base_url, "model": self.client.model}

    def answer(self, request: Request) -> Reply:
        video = request.video
        if not request.images and not isinstance(video, (str, os.PathLike)):
            video = frames_to_mp4(video, self.fps)
        parts = content(request, video)
        if not request.images:  # a video part: each frame's patch budget rides on it
            parts[0]["max_patches"] = self.max_patches_per_frame
        messages = [{"role": "user", "content": parts}]
        stream = self.client.chat(
            messages, max_tokens=request.max_new_tokens, thinking=request.thinking, budget=request.budget,
            temperature=request.temperature, top_p=request.top_p, seed=request.seed, stream=True,
            fps=self.fps, num_frames=self.max_frames,
        )  # fmt: skip
        for _ in stream:
            pass
        r = stream.result
        return Reply(r.text, r.thinking, dict(r.usage), r.timings.get("time_to_first_token_s"),
                     r.timings.get("total_s"), None, None, r.finish_reason)  # fmt: skip
