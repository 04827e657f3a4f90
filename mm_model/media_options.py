"""Per-request media options (`fps`, `num_frames`, `max_patches`): checks, precedence, vLLM's fields.

Names and meanings follow transformers' Kimi-K2.5 processors (`Kimi_K25VideoProcessor.fps`,
`BaseVideoProcessor.sample_frames(num_frames=)`, `Kimi_K25ImageProcessor.max_patches` /
`Kimi_K25VideoProcessor.max_patches`); where they leave a choice open we follow vLLM's video loader:

- `fps`: frames sampled per second (K2.5's native rate is 2; never above the video's own rate).
- `num_frames`: a cap on the frames kept. A video whose `fps` sampling would give more keeps
  `num_frames` frames spread over the whole clip (first and last included); fewer are never padded
  out. This is vLLM's `VideoBackend` rule (the smaller of `num_frames` and duration x `fps`, spread
  with linspace). transformers instead makes `fps` and `num_frames` mutually exclusive and takes
  exactly `num_frames` (raising past the video's length); a cap composes with `fps` and cannot fail.
- `max_patches`: the patch budget `navit_resize` shrinks to (never upscales). On an image part it is
  that image's budget; on a video part, each frame's. Given per call or per process it is a flat
  processor kwarg as in transformers (`processor(..., max_patches=N)` reaches the image and the video
  processor alike): images get N, video frames min(N, their own budget) -- difference from
  transformers: a call-wide N above the frame budget (4096 for K2.5) does not enlarge frames, so a
  large image budget cannot multiply a video's cost.

Precedence: part > call > process > model config (`MediaConfig`). Limits are the release's: 16384
patches an image, 4096 a frame (`media_proc_cfg`), at least 4 (one merged 2x2 token).

On the wire (vLLM's chat-completions fields): `media_io_kwargs={"video": {"fps": F, "num_frames": N}}`
is what vLLM's video loader samples with (N = -1: no cap); `mm_processor_kwargs={"max_patches": P}`
is the processor kwarg (transformers' name; vLLM's K2.5 processor currently ignores it). `from_vllm`
reads both (`mm_processor_kwargs` may also carry fps / num_frames), `to_vllm` writes them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace
from typing import Any

from vision.config import MediaConfig
from vision.errors import InputError

MAX_IMAGE_PATCHES = 16384  # the release's in_patch_limit
MAX_FRAME_PATCHES = 4096  # the release's in_patch_limit_each_frame
MIN_PATCHES = 4  # one 2x2 merge: a single LM token
NATIVE_FPS = 2.0  # K2.5's sample_fps
# Beyond 60 fps samples would only repeat frames of nearly every video (sampling never goes above the
# video's own rate), so a larger value is a mistake, e.g. a frame count passed as a rate.
MAX_FPS = 60.0
# 16384 frames = 4096 chunks = 2 h 16 min at 2 fps; in the release's 262,144-token context that leaves
# 64 tokens a chunk (a 224x224 frame): more frames cannot be seen at any useful size.
MAX_NUM_FRAMES = 16384
NAMES = ("fps", "num_frames", "max_patches")


class MediaOptionError(InputError):
    """A media option is out of range or of the wrong type; `field` names it as the caller wrote it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def _fail(where: str, name: str, rule: str, value: Any) -> MediaOptionError:
    return MediaOptionError(f"{where}{name} must be {rule}, got {value!r}", name)


def check_fps(value: Any, name: str = "fps", where: str = "") -> float | None:
    """A sampling rate in (0, MAX_FPS], as float; None passes. `where` prefixes the message."""
    if value is None:
        return None
    rule = f"a number > 0 and <= {MAX_FPS:g}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(where, name, rule, value)
    if not (math.isfinite(value) and 0 < value <= MAX_FPS):
        raise _fail(where, name, rule, value)
    return float(value)


def check_num_frames(value: Any, name: str = "num_frames", where: str = "") -> int | None:
    """A frame cap in [1, MAX_NUM_FRAMES], as int; None passes."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= MAX_NUM_FRAMES:
        raise _fail(where, name, f"an integer >= 1 and <= {MAX_NUM_FRAMES}", value)
    return int(value)


def check_max_patches(
    value: Any, name: str = "max_patches", where: str = "", limit: int = MAX_IMAGE_PATCHES
) -> int | None:
    """A patch budget in [MIN_PATCHES, limit], as int; None passes."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not MIN_PATCHES <= value <= limit
    ):
        raise _fail(where, name, f"an integer >= {MIN_PATCHES} and <= {limit}", value)
    return int(value)


@dataclass(frozen=True)
class MediaOptions:
    """fps, num_frames, max_patches; None: not given here (the next level down decides)."""

    fps: float | None = None
    num_frames: int | None = None
    max_patches: int | None = None

    @classmethod
    def checked(
        cls,
        fps: Any = None,
        num_frames: Any = None,
        max_patches: Any = None,
        *,
        where: str = "",
        names: Any = None,
    ) -> MediaOptions:
        """Validated options; `names` maps each option to the name the caller used (e.g. video_fps)."""
        names = {**dict(zip(NAMES, NAMES)), **(names or {})}
        return cls(
            check_fps(fps, names["fps"], where),
            check_num_frames(num_frames, names["num_frames"], where),
            check_max_patches(max_patches, names["max_patches"], where),
        )

    def over(self, base: MediaOptions) -> MediaOptions:
        """These options where given, `base`'s elsewhere."""
        return MediaOptions(*(getattr(self, f.name) if getattr(self, f.name) is not None
                              else getattr(base, f.name) for f in fields(self)))  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """The options that are set, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def part_options(part: dict[str, Any], kind: str, where: str = "") -> MediaOptions:
    """The options written on one content part (`kind` "image" or "video"), validated.

    A video part's `max_patches` is its per-frame budget (at most 4096); fps / num_frames on an image
    part are refused rather than ignored.
    """
    if kind == "image":
        for name in ("fps", "num_frames"):
            if part.get(name) is not None:
                raise MediaOptionError(f"{where}{name} applies to video parts, not image parts", name)
    limit = MAX_FRAME_PATCHES if kind == "video" else MAX_IMAGE_PATCHES
    return MediaOptions(
        check_fps(part.get("fps"), where=where),
        check_num_frames(part.get("num_frames"), where=where),
        check_max_patches(part.get("max_patches"), where=where, limit=limit),
    )


def image_config(cfg: MediaConfig, part: MediaOptions, inherited: MediaOptions) -> MediaConfig:
    """`cfg` with an image's patch budget: the part's max_patches, else the call's / process's."""
    budget = part.max_patches if part.max_patches is not None else inherited.max_patches
    return cfg if budget is None else replace(cfg, in_patch_limit=budget)


def video_config(
    cfg: MediaConfig, part: MediaOptions, inherited: MediaOptions
) -> tuple[MediaConfig, int | None]:
    """(`cfg` with the video's sampling rate and per-frame budget, frame cap) for one video part.

    The frame budget is the part's own max_patches, else the call's / process's capped at `cfg`'s
    per-frame budget (module doc). The rate is part > inherited > `cfg.sample_fps`.
    """
    opts = part.over(inherited)
    changes: dict[str, Any] = {}
    if opts.fps is not None:
        changes["sample_fps"] = opts.fps
    if part.max_patches is not None:
        changes["in_patch_limit_each_frame"] = part.max_patches
    elif inherited.max_patches is not None:
        changes["in_patch_limit_each_frame"] = min(inherited.max_patches, cfg.in_patch_limit_each_frame)
    return (replace(cfg, **changes) if changes else cfg), opts.num_frames


# ---- vLLM's request fields ------------------------------------------------------------------------


def _dict(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MediaOptionError(f"{name} must be an object, got {value!r}", name)
    return value


def from_vllm(mm_processor_kwargs: Any = None, media_io_kwargs: Any = None) -> tuple[MediaOptions, list[str]]:
    """Request-level options from vLLM's `mm_processor_kwargs` and `media_io_kwargs`; also the keys
    we do not use (vLLM passes those on to its processor / loader; the caller logs them).

    `media_io_kwargs.video.num_frames = -1` is vLLM's "no cap". A value given in both fields must agree.
    Raises `MediaOptionError` whose `field` is the dotted path (`mm_processor_kwargs.fps`).
    """
    proc = _dict(mm_processor_kwargs, "mm_processor_kwargs")
    io = _dict(media_io_kwargs, "media_io_kwargs")
    video = _dict(io.get("video"), "media_io_kwargs.video")
    ignored = [f"mm_processor_kwargs.{k}" for k in proc if k not in NAMES]
    ignored += [f"media_io_kwargs.{k}" for k in io if k != "video"]
    ignored += [f"media_io_kwargs.video.{k}" for k in video if k not in ("fps", "num_frames")]
    a = MediaOptions(
        check_fps(proc.get("fps"), "mm_processor_kwargs.fps"),
        check_num_frames(proc.get("num_frames"), "mm_processor_kwargs.num_frames"),
        check_max_patches(proc.get("max_patches"), "mm_processor_kwargs.max_patches"),
    )
    frames = video.get("num_frames")
    b = MediaOptions(
        check_fps(video.get("fps"), "media_io_kwargs.video.fps"),
        None if frames == -1 else check_num_frames(frames, "media_io_kwargs.video.num_frames"),
    )
    for name in ("fps", "num_frames"):
        x, y = getattr(a, name), getattr(b, name)
        if x is not None and y is not None and x != y:
            raise MediaOptionError(f"mm_processor_kwargs.{name} {x!r} and media_io_kwargs.video.{name} {y!r} "
                                   "disagree; give one", f"mm_processor_kwargs.{name}")  # fmt: skip
    return a.over(b), ignored


def to_vllm(video: MediaOptions | None, max_patches: int | None, *, native: bool = True) -> dict[str, Any]:
    """Request fields (for `extra_body`) that make vLLM (and our server) sample as asked.

    video: the request's video options (None: it has no video). With `native`, a video request always
    states a rate, K2.5's native 2 fps where none is given: vLLM's own default is 32 frames spread over
    the video whatever its length (`VideoMediaIO(num_frames=32)`). A rate is always sent with a cap
    (-1: none), since vLLM drops the server's default num_frames when a request gives only fps
    (`VideoMediaIO.merge_kwargs`) and would fall back to those 32 frames.
    """
    body: dict[str, Any] = {}
    if video is not None:
        fps = video.fps if video.fps is not None else (NATIVE_FPS if native else None)
        if fps is not None:  # a rate always travels with its cap, -1 where none: see above
            cap = video.num_frames if video.num_frames is not None else -1
            body["media_io_kwargs"] = {"video": {"fps": fps, "num_frames": cap}}
        elif video.num_frames is not None:
            body["media_io_kwargs"] = {"video": {"num_frames": video.num_frames}}
    if max_patches is not None:
        body["mm_processor_kwargs"] = {"max_patches": max_patches}
    return body


__all__ = [
    "MAX_FPS",
    "MAX_FRAME_PATCHES",
    "MAX_IMAGE_PATCHES",
    "MAX_NUM_FRAMES",
    "MIN_PATCHES",
    "NATIVE_FPS",
    "MediaOptionError",
    "MediaOptions",
    "check_fps",
    "check_max_patches",
    "check_num_frames",
    "from_vllm",
    "image_config",
    "part_options",
    "to_vllm",
    "video_config",
]
