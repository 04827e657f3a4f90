"""The server's media policy: `data:` URLs always, `file://` only under the allowed folder, nothing
else; videos probed for their length before they are queued.

Parts come in OpenAI form (`image_url` / `video_url: {"url"}`) or Hugging Face form (`{"type": "image",
"image" | "url" | "base64" | "path": ...}`; `base64` raw or a data URL, `path` an absolute path under
the allowed folder). A part may carry its own media options (`fps`, `num_frames`, `max_patches`,
`mm_model.media_options`): checked here, kept on the part for the processor."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mm_model.media_options import MediaOptionError, part_options
from mm_model.processor import MessageError, media_value
from mm_model.server.request import APIError, ServerLimits

_MEDIA_TYPES = {"image_url": "image", "video_url": "video", "image": "image", "video": "video"}


def _decode_data_url(url: str, param: str) -> bytes:
    head, comma, data = url.partition(",")
    if not comma or ";base64" not in head:
        raise APIError(400, f"{param}: data URLs must be base64 ('data:<type>;base64,...')", param=param)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise APIError(400, f"{param}: the data URL is not valid base64 ({exc})", param=param) from None


def _local_file(url: str, root: Path | None, param: str) -> str:
    """The resolved path of a file:// URL inside `root`; refuses anything else.

    Checked when the request arrives; the processor opens the resolved path (no symlinks left in it)
    moments later, so a folder whose contents untrusted users can change is not a safe `root`.
    """
    if root is None:
        raise APIError(400, f"{param}: local files are disabled on this server (start it with "
                       "--allowed-local-media-path DIR); send a data: URL instead", param=param,
                       code="media_url_not_allowed")  # fmt: skip
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise APIError(
            400, f"{param}: file URLs must name a local path, got host {parsed.netloc!r}", param=param
        )
    # Resolve symlinks and '..' first, then check containment, then existence (so files outside the
    # folder are refused the same way whether or not they exist).
    path = Path(unquote(parsed.path)).resolve()
    if root not in path.parents:
        raise APIError(
            400,
            f"{param}: {unquote(parsed.path)!r} is outside the allowed media folder",
            param=param,
            code="media_url_not_allowed",
        )
    if not path.is_file():
        raise APIError(400, f"{param}: {unquote(parsed.path)!r} is not a file in the allowed media folder",
                       param=param)  # fmt: skip
    return str(path)


def resolve_media(
    messages: list[Any],
    limits: ServerLimits,
    video_fps: float,
    probe: Callable[[Any, float], float] | None = None,
) -> list[dict[str, Any]]:
    """Messages with media parts turned into `{"type": "image"|"video", ...: bytes | path}` under the server's rules.

    Counts media items, decodes data URLs, checks local paths against the allow-list and probes each
    video's duration. Other parts and fields pass through for the processor to check.
    """
    probe = probe or _video_seconds
    out, count = [], 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise APIError(400, f"messages[{i}] must be an object", param=f"messages[{i}]")
        message = dict(message)
        if message.get("role") == "developer":  # OpenAI's newer name for the system turn
            message["role"] = "system"
        if message.get("role") == "assistant" and message.get("content") is None:
            message["content"] = ""
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                kind = _MEDIA_TYPES.get(part.get("type")) if isinstance(part, dict) else None
                if kind is None:
                    parts.append(part)
                    continue
                param = f"messages[{i}].content[{j}]"
                count += 1
                if count > limits.max_media_items:
                    raise APIError(400, f"more than {limits.max_media_items} media items in one request",
                                   param=param, code="too_many_media_items")  # fmt: skip
                try:
                    options = part_options(part, kind, f"{param}: ")
                except MediaOptionError as exc:
                    raise APIError(400, str(exc), param=f"{param}.{exc.field}") from None
                value = _hf_value(part, kind, param) if part["type"] == kind else part.get(part["type"])
                if isinstance(value, dict):
                    value = value.get("url")
                if isinstance(value, bytes):
                    source: Any = value
                elif not isinstance(value, str):
                    raise APIError(
                        400, f"{param}: expected {{'url': 'data:...' or 'file://...'}}", param=param
                    )
                elif value.startswith("data:"):
                    source = _decode_data_url(value, param)
                elif value.startswith("file:"):
                    source = _local_file(value, limits.allowed_local_media_path, param)
                else:
                    what = "remote URLs are not fetched" if "://" in value else "bare paths are not accepted"
                    raise APIError(400, f"{param}: {what}; send a data: URL (or a file:// URL under "
                                   "the allowed media folder)", param=param, code="media_url_not_allowed")  # fmt: skip
                if kind == "video":
                    seconds = probe(source, options.fps or video_fps)
                    if seconds > limits.max_video_seconds:
                        raise APIError(400, f"{param}: video of {seconds:.1f} s is over the limit of "
                                       f"{limits.max_video_seconds:g} s", param=param, code="video_too_long")  # fmt: skip
                parts.append({"type": kind, kind: source, **options.as_dict()})
            message["content"] = parts
        out.append(message)
    return out


def _hf_value(part: dict[str, Any], kind: str, param: str) -> Any:
    """The media of a Hugging Face style part: a URL string, or bytes decoded from `base64`."""
    try:
        key, value = media_value(part, kind, (kind, "url", "path", "base64"), f"{param}: ")
    except MessageError as exc:
        raise APIError(400, str(exc), param=param) from None
    if key == "path":
        if not isinstance(value, str) or not Path(value).is_absolute():
            raise APIError(400, f"{param}: path must be an absolute path string, got {value!r}", param=param)
        return Path(value).as_uri()
    return value


def _video_seconds(source: Any, fps: float) -> float:
    """Duration from the container header (opens the file and decodes its first frame, nothing more)."""
    from video.decode import open_video

    with open_video(source, fps=fps) as reader:
        return reader.info.duration
