"""Where answers come from: `local` (our model in-process) or `openai` (any OpenAI-compatible endpoint).

A backend turns a `Request` (video + prompt + decoding settings) into a `Reply` (text, thinking,
usage, timings). The runner owns threading: `workers` says how many requests a backend takes at once
(1 for local: one model, one CPU). Video segments (MVBench bounds) and frame folders are cut here,
client-side, into a frame list (local) or a small MP4 (openai), so both backends see the same frames.
"""

from __future__ import annotations

import base64
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
        from video.sequence import IMAGE_SUFFIXES, _natural_key

        names = sorted(
            (n for n in os.listdir(sample.video) if n.lower().endswith(IMAGE_SUFFIXES)), key=_natural_key
        )
        times = [i / sample.frame_fps for i in range(len(names))]
        keep, next_t = [], start
        for name, t in zip(names, times):
            if start <= t <= end and t + 1e-9 >= next_t:
                keep.append(Image.open(os.path.join(sample.video, name)).convert("RGB"))
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
            def video_items(self, source):
                start = time.perf_counter()
                items = super().video_items(source)
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
        messages = [{"role": "user", "content": [{"type": "video", "video": request.video},
                                                 {"type": "text", "text": request.prompt}]}]  # fmt: skip
        with self._lock:
            self._stats.decode_s, self._stats.frames = 0.0, 0
            start = time.perf_counter()
            r = self.model.chat(
                messages, max_new_tokens=request.max_new_tokens, thinking=request.thinking, budget=request.budget,
                temperature=request.temperature, top_p=request.top_p, seed=request.seed,
            )  # fmt: skip
            total = time.perf_counter() - start
        return Reply(r.text, r.thinking, dict(r.usage), r.timings.get("time_to_first_token_s"), total,
                     self._stats.decode_s, self._stats.frames, r.finish_reason)  # fmt: skip


# ---- openai -------------------------------------------------------------------------------------


def _data_url(video: Any, fps: float) -> str:
    if isinstance(video, (str, os.PathLike)):
        data, suffix = Path(video).read_bytes(), Path(video).suffix.lstrip(".").lower() or "mp4"
    else:
        data, suffix = frames_to_mp4(video, fps), "mp4"
    mime = {"mkv": "x-matroska", "mov": "quicktime", "avi": "x-msvideo"}.get(suffix, suffix)
    return f"data:video/{mime};base64," + base64.b64encode(data).decode()


class OpenAIBackend:
    """Any OpenAI-compatible chat-completions endpoint (our `mm-model serve`, vLLM, SGLang).

    The video goes as a `video_url` data URL; thinking, budget and sampling controls go in
    `extra_body` (`thinking`, `thinking_budget`, `video_fps`, `max_video_frames`,
    `max_patches_per_frame`, only those set). Streams, so time to first token is measured
    client-side; token counts come from the endpoint's `usage`.
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
        fps: float | None = None,
        max_frames: int | None = None,
        max_patches_per_frame: int | None = None,
    ) -> None:
        import openai

        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY", "EMPTY"),
                                    timeout=timeout, max_retries=2)  # fmt: skip
        self.model = model or os.environ.get("OPENAI_MODEL") or self.client.models.list().data[0].id
        self.workers = max(1, int(workers))
        self.fps = fps or 2.0
        self.controls = {k: v for k, v in {"video_fps": fps, "max_video_frames": max_frames,
                                          "max_patches_per_frame": max_patches_per_frame}.items() if v is not None}  # fmt: skip

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai", "base_url": self.base_url, "model": self.model, **self.controls}

    def answer(self, request: Request) -> Reply:
        content = [{"type": "video_url", "video_url": {"url": _data_url(request.video, self.fps)}},
                   {"type": "text", "text": request.prompt}]  # fmt: skip
        extra: dict[str, Any] = dict(self.controls)
        if request.thinking:
            extra["thinking"] = True
            if request.budget is not None:
                extra["thinking_budget"] = request.budget
        start = time.perf_counter()
        stream = self.client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": content}], max_tokens=request.max_new_tokens,
            temperature=request.temperature, top_p=request.top_p, seed=request.seed, stream=True,
            stream_options={"include_usage": True}, extra_body=extra or None,
        )  # fmt: skip
        text, thinking, usage, first, finish = [], [], {}, None, "stop"
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage.model_dump(exclude_none=True)
            for choice in chunk.choices:
                delta = choice.delta
                piece = getattr(delta, "content", None)
                reasoning = getattr(delta, "reasoning_content", None) or (delta.model_extra or {}).get(
                    "reasoning_content"
                )
                if (piece or reasoning) and first is None:
                    first = time.perf_counter() - start
                if piece:
                    text.append(piece)
                if reasoning:
                    thinking.append(reasoning)
                finish = choice.finish_reason or finish
        total = time.perf_counter() - start
        usage = _normalize_usage(usage)
        return Reply("".join(text), "".join(thinking), usage, first, total, None, None, finish)


def _normalize_usage(usage: dict[str, Any]) -> dict[str, int]:
    """OpenAI usage -> our keys (prompt_tokens, completion_tokens, vision_tokens, thinking_tokens, answer_tokens)."""
    out = {k: int(v) for k, v in usage.items() if isinstance(v, (int, float))}
    details = usage.get("completion_tokens_details") or {}
    if "thinking_tokens" not in out and details.get("reasoning_tokens") is not None:
        out["thinking_tokens"] = int(details["reasoning_tokens"])
    if "answer_tokens" not in out and "completion_tokens" in out:
        out["answer_tokens"] = out["completion_tokens"] - out.get("thinking_tokens", 0)
    return out
