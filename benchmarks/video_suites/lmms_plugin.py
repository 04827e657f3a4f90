"""`lmms-eval --model mm_model`: our local model inside lmms-eval, reading video the K2.5 way (in chunks).

    pip install 'mm-model[lmms]'     # lmms-eval itself; its dependencies are heavy, so an extra of its own
    lmms-eval --model mm_model --model_args pretrained=tiny,fps=2,max_frames=64 --tasks videomme,mlvu_dev

Registration is lmms-eval 0.7's: the `lmms_eval.models` entry point (pyproject.toml) names `manifest`,
which returns a `ModelManifest` pointing at `benchmarks.video_suites.lmms_model.MMModel` (a simple
model: lmms-eval hands it the prompt and the task's `doc_to_visual`). This module imports nothing of
lmms-eval at import time, so its logic is tested without it:
  - each request's visuals become message parts: a video path is one video part, which our processor
    samples at `fps` and cuts into 4-frame chunks with timestamps (not lmms-eval's separate frames);
    PIL images (LongVideoBench's interleaved task) become image parts; media go before the prompt;
  - generation kwargs map to `Model.chat`: max_new_tokens (lmms-eval's default 1024 when a task sets
    none), temperature (0 when do_sample is false), top_p; `until` stop strings are not applied (the
    model stops at its end-of-turn token), num_beams is ignored;
  - the answer text comes back without the thinking (as an endpoint that separates reasoning
    returns it), with token counts.
model_args: pretrained (bundled name or checkpoint dir; default tiny), fps, max_frames,
max_patches_per_frame, thinking (true/false), budget (tokens or auto), dtype, device.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.video_suites.backends import LocalBackend, Reply, Request
from vision.errors import InputError

MODEL_ID = "mm_model"
CLASS_PATH = "benchmarks.video_suites.lmms_model.MMModel"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".flv", ".wmv", ".webm", ".mkv")


def manifest() -> Any:
    """The `lmms_eval.models` entry point: lmms-eval 0.7's ModelManifest for `--model mm_model`."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH)


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


def _opt(value: Any, kind: Callable[[Any], Any]) -> Any:
    return None if value in (None, "", "none", "None") else kind(value)


def visual_parts(visuals: Sequence[Any]) -> tuple[Any, str]:
    """(what `Request.video` holds, how it goes): one video path as a video; PIL images as images first."""
    videos = [
        v for v in visuals if isinstance(v, (str, os.PathLike)) and str(v).lower().endswith(VIDEO_SUFFIXES)
    ]
    images = [v for v in visuals if hasattr(v, "convert")]
    if len(videos) + len(images) != len(visuals):
        raise InputError(f"mm_model takes video files and PIL images from doc_to_visual, got {visuals!r}")
    if (videos and images) or len(videos) > 1:
        raise InputError(
            f"mm_model takes one video (or only images) per request, got {len(videos)} videos, {len(images)} images"
        )
    return (videos[0], "") if videos else (images, "before")


def sampling(gen_kwargs: dict[str, Any]) -> dict[str, Any]:
    """lmms-eval generation kwargs -> ours."""
    temperature = float(gen_kwargs.get("temperature", 0) or 0)
    if gen_kwargs.get("do_sample") is False:
        temperature = 0.0
    return {"max_new_tokens": int(gen_kwargs.get("max_new_tokens", 1024)), "temperature": temperature,
            "top_p": float(gen_kwargs.get("top_p", 1.0) or 1.0)}  # fmt: skip


class Generator:
    """What `MMModel.generate_until` does, without lmms-eval: requests in, (text, token counts) out."""

    def __init__(
        self,
        pretrained: str | Any = "tiny",
        *,
        fps: Any = None,
        max_frames: Any = None,
        max_patches_per_frame: Any = None,
        thinking: Any = False,
        budget: Any = None,
        dtype: Any = None,
        device: Any = None,
        **ignored: Any,  # lmms-eval passes batch_size and others
    ) -> None:
        import mm_model

        model = (
            pretrained
            if hasattr(pretrained, "chat")
            else mm_model.load(pretrained, dtype=_opt(dtype, _dtype), device=_opt(device, str))
        )
        self.backend = LocalBackend(model, fps=_opt(fps, float), max_frames=_opt(max_frames, int),
                                    max_patches_per_frame=_opt(max_patches_per_frame, int))  # fmt: skip
        self.thinking = _flag(thinking)
        self.budget = (
            None if _opt(budget, str) is None else (budget if str(budget) == "auto" else int(budget))
        )

    def request(
        self, context: str, gen_kwargs: dict[str, Any], visuals: Sequence[Any], key: str = ""
    ) -> Request:
        video, images = visual_parts(visuals)
        s = sampling(gen_kwargs)
        return Request(key, video, context, s["max_new_tokens"], self.thinking, self.budget if self.thinking else None,
                       s["temperature"], s["top_p"], None, images)  # fmt: skip

    def generate(
        self, args: Sequence[tuple], task_dict: dict[str, Any], progress: bool = True
    ) -> list[tuple[str, dict[str, int]]]:
        """lmms-eval request args `(context, gen_kwargs, doc_to_visual, doc_id, task, split)` -> (text, counts)."""
        from tqdm import tqdm

        out = []
        for context, gen_kwargs, doc_to_visual, doc_id, task, split in tqdm(
            args, desc="mm_model", disable=not progress
        ):
            visuals = doc_to_visual(task_dict[task][split][doc_id]) or []
            reply: Reply = self.backend.answer(self.request(context, gen_kwargs, visuals, f"{task}/{doc_id}"))
            u = reply.usage
            out.append((reply.text, {"input_tokens": u.get("prompt_tokens"), "reasoning_tokens": u.get("thinking_tokens"),
                                     "output_tokens": (u.get("answer_tokens") or 0) + (u.get("thinking_tokens") or 0)}))  # fmt: skip
        return out


def _dtype(name: str) -> Any:
    import torch

    value = getattr(torch, str(name), None)
    if not isinstance(value, torch.dtype):
        raise InputError(f"dtype {name!r} is not a torch dtype (e.g. bfloat16, float32)")
    return value
