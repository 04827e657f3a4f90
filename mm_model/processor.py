"""Messages in, model inputs out: the K2.5 chat template, media loading and placeholder expansion.

Template (assembled from the model card and renderers that follow the released jinja template,
research/moonvit3d.md §8.4):

    <|im_system|>system<|im_middle|>{system}<|im_end|>
    <|im_user|>user<|im_middle|>{text and media}<|im_end|>
    <|im_assistant|>assistant<|im_middle|><think></think>{answer}<|im_end|>      (history: reasoning dropped)
    <|im_assistant|>assistant<|im_middle|><think>                               (thinking mode prompt)
    <|im_assistant|>assistant<|im_middle|><think></think>                       (instant mode prompt)

An image is `<|media_begin|>image<|media_content|>` + N x `<|media_pad|>` + `<|media_end|>\n`; a
video is, per 4-frame chunk, `HH:MM:SS.mmm<|media_begin|>video<|media_content|>` + N pads +
`<|media_end|>`, chunks back to back. N is the item's merged token count, so `input_ids` arrive at
the model already expanded.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from mm_model import tools as tool_calls
from mm_model.config import MEDIA_PAD, ModelConfig
from mm_model.media_options import MediaOptions, image_config, part_options, video_config
from mm_model.tokenizer import Tokenizer, token_id
from video.chunks import iter_chunks
from vision.errors import InputError
from vision.packing import patchify
from vision.preprocess import image_pixels

K25_DEFAULT_SYSTEM = "You are Kimi, an AI assistant created by Moonshot AI."
IMAGE_BEGIN = "<|media_begin|>image<|media_content|>"
VIDEO_BEGIN = "<|media_begin|>video<|media_content|>"
MEDIA_END = "<|media_end|>"


class MessageError(InputError):
    """A chat message is malformed: unknown role or content type, missing fields."""


@dataclass(frozen=True)
class MediaItem:
    """One encoder item (an image, or one chunk of a video) of a prompt.

    patches: (t*h*w, 3, p, p); key: content hash, for reusing features across turns.
    """

    kind: str  # "image" or "video"
    patches: Tensor
    grid: tuple[int, int, int]
    tokens: int
    key: str
    source: str
    timestamp: str | None = None


@dataclass
class Prompt:
    """What the model needs for one conversation: ids with expanded placeholders and packed media."""

    input_ids: Tensor  # (S,) int64
    media: list[MediaItem] = field(default_factory=list)
    text: str = ""

    @property
    def pixel_values(self) -> Tensor | None:
        """(N, 3, p, p), all items in prompt order, or None."""
        return torch.cat([m.patches for m in self.media]) if self.media else None

    @property
    def grid_thws(self) -> Tensor | None:
        """(M, 3) int64 [t, h, w] per item, or None."""
        return torch.tensor([m.grid for m in self.media], dtype=torch.int64) if self.media else None

    @property
    def vision_tokens(self) -> int:
        return sum(m.tokens for m in self.media)


def _describe(value: Any) -> str:
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        return text if len(text) < 80 else text[:60] + "..."
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return f"<{type(value).__name__}>"


def _decode_data_url(url: str, what: str) -> bytes:
    head, _, data = url.partition(",")
    if ";base64" not in head:
        raise MessageError(f"{what} data URL must be base64-encoded")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MessageError(f"{what} data URL is not valid base64 ({exc})") from exc


def media_value(part: dict[str, Any], kind: str, keys: Sequence[str], where: str = "") -> tuple[str, Any]:
    """(key, value) of the one field among `keys` a media part gives; a raw `base64` string comes back
    decoded to bytes (a base64 data URL is left for the caller). The server's media policy shares it."""
    given = [k for k in keys if part.get(k) is not None]
    if not given:
        others = f"{', '.join(keys[1:-1])} or {keys[-1]}"
        raise MessageError(f"{where}{kind} content part has no {keys[0]!r} field (nor {others})")
    if len(given) > 1:
        raise MessageError(f"{where}{kind} content part has {' and '.join(given)}: give one of them")
    key, value = given[0], part[given[0]]
    if key == "base64":
        if not isinstance(value, str):
            raise MessageError(f"{where}{kind} base64 must be a string, got {_describe(value)}")
        if not value.startswith("data:"):
            try:
                return key, base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise MessageError(f"{where}{kind} base64 is not valid base64 ({exc})") from exc
    return key, value


def _media_source(part: dict[str, Any], kind: str, where: str = "") -> Any:
    """The image/video value of a content part in HF form (`{"type": "image", "image" | "url" | "path" |
    "base64": ...}`, as transformers' chat templates take them) or OpenAI form (`image_url: {"url"}`).

    `base64` is a raw base64 string or a data URL; `url` and `path` follow the same rules as `image`.
    """
    key, value = media_value(part, kind, (kind, f"{kind}_url", "url", "path", "base64"), where)
    if isinstance(value, dict) and key == f"{kind}_url":
        value = value.get("url")
    if key == "url" and not isinstance(value, str):
        raise MessageError(f"{where}{kind} url must be a string, got {_describe(value)}")
    if key == "path" and not isinstance(value, (str, os.PathLike)):
        raise MessageError(f"{where}{kind} path must be a string or path, got {_describe(value)}")
    if isinstance(value, str) and value.startswith("data:"):
        return _decode_data_url(value, kind)
    if isinstance(value, str) and value.startswith("file://"):
        return value[len("file://") :]
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        raise MessageError(f"{kind} URLs are not fetched (no network access): {value[:80]}")
    return value


def _hash(patches: Tensor, grid: tuple[int, ...]) -> str:
    digest = hashlib.sha1(repr(grid).encode())
    digest.update(patches.numpy().tobytes())
    return digest.hexdigest()


class Processor:
    """Renders chats with the K2.5 template and turns their media into packed encoder inputs."""

    def __init__(
        self,
        config: ModelConfig,
        tokenizer: Tokenizer | None,
        *,
        default_system: str | None = K25_DEFAULT_SYSTEM,
        video_fps: float | None = None,
        max_video_frames: int | None = None,
        max_patches: int | None = None,
    ) -> None:
        """video_fps, max_video_frames, max_patches: this process's media defaults (None: the config's);
        a call's and a part's options override them (`mm_model.media_options`)."""
        self.config = config
        self.tokenizer = tokenizer
        self.default_system = default_system
        self.defaults = MediaOptions.checked(video_fps, max_video_frames, max_patches,
                                             names={"fps": "video_fps", "num_frames": "max_video_frames"})  # fmt: skip

    @property
    def video_fps(self) -> float:
        """The process's video sampling rate (the config's unless set)."""
        return self.defaults.fps or self.config.media.sample_fps

    @property
    def max_video_frames(self) -> int | None:
        return self.defaults.num_frames

    @property
    def max_patches(self) -> int | None:
        return self.defaults.max_patches

    def with_media_defaults(
        self, fps: float | None = None, num_frames: int | None = None, max_patches: int | None = None
    ) -> Processor:
        """A copy whose process defaults are these where given (`mm-model serve --fps ...`)."""
        new = copy.copy(self)
        new.defaults = MediaOptions.checked(fps, num_frames, max_patches).over(self.defaults)
        return new

    # ---- media --------------------------------------------------------------------------------
    def image_item(
        self, source: Any, options: MediaOptions | None = None, call: MediaOptions | None = None
    ) -> MediaItem:
        """One image as an encoder item. options: the part's own; call: the call's (over the process's)."""
        if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)):
            raise MessageError(f"image must be a path, bytes or PIL.Image, got {type(source).__name__}")
        cfg = image_config(
            self.config.media, options or MediaOptions(), (call or MediaOptions()).over(self.defaults)
        )
        patches, grid = patchify(image_pixels(source, cfg), self.config.vision.patch_size)
        m = self.config.vision.merge_kernel_size
        return MediaItem("image", patches, grid, (grid[1] // m[0]) * (grid[2] // m[1]), _hash(patches, grid),
                         _describe(source))  # fmt: skip

    def video_items(
        self, source: Any, options: MediaOptions | None = None, call: MediaOptions | None = None
    ) -> list[MediaItem]:
        """A video's chunks as encoder items. options: the part's own; call: the call's (over the process's)."""
        if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview, list, tuple)):
            raise MessageError(
                f"video must be a path, bytes or a list of frame images, got {type(source).__name__}"
            )
        cfg, max_frames = video_config(
            self.config.media, options or MediaOptions(), (call or MediaOptions()).over(self.defaults)
        )
        items = []
        stream = iter_chunks(
            source, fps=cfg.sample_fps, chunk_frames=cfg.temporal_merge_kernel_size, max_frames=max_frames, cfg=cfg,
        )  # fmt: skip
        try:
            for chunk in stream:
                patches = chunk.patches()
                items.append(MediaItem("video", patches, chunk.grid, chunk.num_tokens, _hash(patches, chunk.grid),
                                       _describe(source), chunk.timestamp_text))  # fmt: skip
        finally:
            stream.close()
        return items

    # ---- template -----------------------------------------------------------------------------
    def render(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        thinking: bool = False,
        tools: Sequence[dict[str, Any]] | None = None,
        fps: float | None = None,
        num_frames: int | None = None,
        max_patches: int | None = None,
    ) -> tuple[str, list[MediaItem]]:
        """The prompt text (placeholders expanded) and its media items, in order.

        As the release's template: tools declared first (`tools.declare`), then the default system
        turn unless the chat opens with one; assistant turns up to the last one that calls no tool
        lose their reasoning (`<think></think>`), later ones (a tool loop under way) keep it.
        fps, num_frames, max_patches: this call's media options, under each part's own and over the
        process defaults (`mm_model.media_options`).
        """
        call = MediaOptions.checked(fps, num_frames, max_patches)
        if isinstance(messages, dict):
            messages = [messages]
        if not isinstance(messages, (list, tuple)) or not messages:
            raise MessageError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
        roles = [_role(m, i) for i, m in enumerate(messages)]
        parts: list[str] = [tool_calls.declare(tool_calls.check_tools(tools))] if tools else []
        media: list[MediaItem] = []
        if self.default_system is not None and roles[0] != "system":
            parts.append(f"<|im_system|>system<|im_middle|>{self.default_system}<|im_end|>")
        history_end = max((i for i, m in enumerate(messages) if roles[i] == "assistant" and not m.get("tool_calls")),
                          default=-1)  # fmt: skip
        n_calls = 0  # calls so far in the conversation: numbers those given without an id
        for i, message in enumerate(messages):
            role, where = roles[i], f"message {i}"
            name = message.get("name") or role
            if not isinstance(name, str):
                raise MessageError(f"{where}: name must be a string, got {name!r:.80}")
            content = message.get("content")
            if role == "assistant" and content is None and message.get("tool_calls"):
                content = ""
            body = self._content(content, i, media, allow_media=role in ("user", "tool"), call=call)
            if role == "user":
                parts.append(f"<|im_user|>{name}<|im_middle|>{body}<|im_end|>")
            elif role == "assistant":
                reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
                if not isinstance(reasoning, str):
                    raise MessageError(f"{where}: reasoning_content must be a string")
                think = f"<think>{reasoning if i > history_end else ''}</think>"
                calls = message.get("tool_calls")
                section = tool_calls.render_calls(calls, where, n_calls) if calls else ""
                n_calls += len(calls or ())
                parts.append(f"<|im_assistant|>{name}<|im_middle|>{think}{body}{section}<|im_end|>")
            else:  # system and tool turns
                head = tool_calls.result_header(message, where) if role == "tool" else ""
                parts.append(f"<|im_system|>{name}<|im_middle|>{head}{body}<|im_end|>")
        parts.append(
            "<|im_assistant|>assistant<|im_middle|>" + ("<think>" if thinking else "<think></think>")
        )
        return "".join(parts), media

    def _content(
        self, content: Any, index: int, media: list[MediaItem], *, allow_media: bool, call: MediaOptions
    ) -> str:
        if isinstance(content, str):
            return content
        if content is None or not isinstance(content, (list, tuple)):
            raise MessageError(
                f"message {index}: content must be a string or a list of parts, got {_describe(content)}"
            )
        out = []
        for j, part in enumerate(content):
            if isinstance(part, str):
                out.append(part)
                continue
            if not isinstance(part, dict) or "type" not in part:
                raise MessageError(
                    f"message {index} part {j}: expected a dict with a 'type', got {_describe(part)}"
                )
            kind = part["type"]
            if kind == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise MessageError(f"message {index} part {j}: text part needs a string 'text'")
                out.append(text)
            elif kind in ("image", "image_url", "video", "video_url"):
                if not allow_media:
                    raise MessageError(
                        f"message {index} part {j}: media are only accepted in user and tool messages"
                    )
                base = kind.removesuffix("_url")
                where = f"message {index} part {j}: "
                source = _media_source(part, base, where)
                options = part_options(part, base, where)
                if base == "image":
                    item = self.image_item(source, options, call)
                    media.append(item)
                    out.append(f"{IMAGE_BEGIN}{MEDIA_PAD * item.tokens}{MEDIA_END}\n")
                else:
                    for item in self.video_items(source, options, call):
                        media.append(item)
                        out.append(f"{item.timestamp}{VIDEO_BEGIN}{MEDIA_PAD * item.tokens}{MEDIA_END}")
            else:
                raise MessageError(
                    f"message {index} part {j}: unknown content type {kind!r} "
                    "(expected text, image, image_url, video or video_url)"
                )
        return "".join(out)

    def __call__(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        thinking: bool = False,
        max_new_tokens: int = 0,
        tools: Sequence[dict[str, Any]] | None = None,
        fps: float | None = None,
        num_frames: int | None = None,
        max_patches: int | None = None,
    ) -> Prompt:
        """Render, tokenize and check length: the `Prompt` for `messages` (media options as `render`)."""
        if self.tokenizer is None:
            raise InputError(
                "this model has no tokenizer files: chat needs one (use generate() with token ids)"
            )
        text, media = self.render(
            messages, thinking=thinking, tools=tools, fps=fps, num_frames=num_frames, max_patches=max_patches
        )
        ids = self.tokenizer.encode(text)
        pad = token_id(self.tokenizer, MEDIA_PAD)
        if pad != self.config.media_placeholder_token_id:
            raise InputError(
                f"tokenizer's {MEDIA_PAD} id {pad} != config media_placeholder_token_id "
                f"{self.config.media_placeholder_token_id}"
            )
        n_pad = sum(1 for t in ids if t == pad)
        if n_pad != sum(m.tokens for m in media):
            raise InputError(
                f"the text itself contains {MEDIA_PAD}: {n_pad} placeholders for {sum(m.tokens for m in media)} "
                "media tokens; remove the literal placeholder from the text"
            )
        limit = self.config.text.max_position_embeddings
        if len(ids) + max_new_tokens > limit:
            raise InputError(
                f"prompt of {len(ids)} tokens (of which {n_pad} vision) + max_new_tokens {max_new_tokens} "
                f"exceeds the context window of {limit} tokens"
            )
        return Prompt(torch.tensor(ids, dtype=torch.int64), media, text)


def _role(message: Any, index: int) -> str:
    if not isinstance(message, dict):
        raise MessageError(
            f"message {index} must be a dict with 'role' and 'content', got {_describe(message)}"
        )
    role = message.get("role")
    if role not in ("system", "user", "assistant", "tool"):
        raise MessageError(
            f"message {index}: unknown role {role!r} (expected system, user, assistant or tool)"
        )
    return role
