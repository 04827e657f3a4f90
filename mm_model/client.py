"""Chat with any OpenAI-compatible endpoint (our `mm-model serve`, vLLM, SGLang) through the official `openai` package.

    from mm_model.client import OpenAIBackend
    backend = OpenAIBackend("http://127.0.0.1:8000/v1")        # model: the endpoint's first, unless named
    r = backend.chat([{"role": "user", "content": [{"type": "video", "video": "clip.mp4"},
                                                   {"type": "text", "text": "What happens?"}]}], max_tokens=64)
    r.text, r.thinking, r.usage, r.finish_reason, r.timings      # an `mm_model.ChatResult`, as Model.chat gives
    for piece in backend.chat(messages, stream=True): ...        # `TextPiece`s (.kind); then `.result`

Messages take the same content parts as `Model.chat`: {"type": "image", "image": path|bytes|PIL.Image},
{"type": "video", "video": path|bytes}, text, and ready-made `image_url`/`video_url` parts. Local media
are sent as base64 data URLs, or with `media="file"` as file:// URLs (for a server on this machine
started with `--allowed-local-media-path`; saves the base64 copy of big videos).

What is sent for thinking: `chat_template_kwargs={"thinking": ...}` (vLLM/SGLang's switch for K2.5,
which our server reads too) and, with a budget, `thinking_token_budget` (vLLM's field) or, for "auto",
`thinking_budget` (ours only). Thinking is read from `reasoning_content` or `reasoning`.

Media options (`fps`, `num_frames`, `max_patches`, `mm_model.media_options`), per call or written on
parts, are sent under the names vLLM reads: `media_io_kwargs={"video": {"fps", "num_frames"}}` (what its
video loader samples with; our server reads it too) and `mm_processor_kwargs={"max_patches"}`. A request
carries one value of each, so options on parts are hoisted: all video parts must agree on fps and
num_frames, all media parts on max_patches, else `InputError`. A request with a video and no fps is sent
K2.5's native 2 fps with no frame cap (vLLM would otherwise keep 32 frames of any video), unless the
backend is made with `native_video=False` (the endpoint's own default: vLLM's 32 frames, our `--fps`).

`usage` has prompt_tokens and completion_tokens, thinking_tokens (from reasoning_tokens) and
answer_tokens (the rest) where the endpoint reports them, plus vision_tokens and media_items_encoded
from our server. `timings`: total_s and (streaming, or from our server) time_to_first_token_s and
tokens_per_s. Bad input (HTTP 400, 404, 413, 422) raises `InputError` with the server's message;
other failures raise the `openai` exceptions.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mm_model.api import ChatResult, ChatStream, TextPiece, ToolCallPiece
from mm_model.media_options import NAMES, MediaOptions, part_options, to_vllm
from vision.errors import InputError

_DEFAULT_MIME = {"image": "image/png", "video": "video/mp4"}


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def media_url(value: Any, kind: str, media: str = "data") -> str:
    """A data: (or file://) URL for an image/video given as a path, bytes or a PIL image."""
    if isinstance(value, str) and value.startswith(("data:", "file://", "http://", "https://")):
        return value
    if isinstance(value, (str, os.PathLike)):
        path = Path(value).resolve()
        if media == "file":
            return path.as_uri()
        if not path.is_file():
            raise InputError(f"{kind} {str(value)!r} does not exist")
        return _data_url(path.read_bytes(), mimetypes.guess_type(path.name)[0] or _DEFAULT_MIME[kind])
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _data_url(bytes(value), _DEFAULT_MIME[kind])
    if kind == "image" and hasattr(value, "save"):  # a PIL image
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return _data_url(buf.getvalue(), "image/png")
    raise InputError(f"{kind} must be a path, bytes{' or a PIL image' if kind == 'image' else ''}, "
                     f"got {type(value).__name__}")  # fmt: skip


def to_openai_messages(messages: Sequence[dict[str, Any]] | str, media: str = "data") -> list[dict[str, Any]]:
    """`Model.chat` messages -> OpenAI chat messages (media parts as `image_url`/`video_url`)."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind in ("image", "video"):
                    value = next((part[k] for k in (kind, "url", "path") if part.get(k) is not None), None)
                    raw = part.get("base64")  # HF's key: raw base64 or a data URL
                    if value is None and isinstance(raw, str):
                        value = raw if raw.startswith("data:") else f"data:{_DEFAULT_MIME[kind]};base64,{raw}"
                    parts.append(
                        {"type": f"{kind}_url", f"{kind}_url": {"url": media_url(value, kind, media)}}
                    )
                elif isinstance(part, str):
                    parts.append({"type": "text", "text": part})
                elif kind in ("image_url", "video_url"):  # options travel hoisted (media_options_body)
                    parts.append({k: v for k, v in part.items() if k not in NAMES})
                else:
                    parts.append(part)
            message = {**message, "content": parts}
        out.append(message)
    return out


def media_options_body(
    messages: Sequence[dict[str, Any]] | str,
    fps: float | None = None,
    num_frames: int | None = None,
    max_patches: int | None = None,
    *,
    native_video: bool = True,
) -> dict[str, Any]:
    """The request fields (`media_io_kwargs`, `mm_processor_kwargs`) for these call options and the
    options written on `messages`' parts, hoisted to one value each (module doc); {} when none apply."""
    call = MediaOptions.checked(fps, num_frames, max_patches)
    videos: set[tuple[Any, Any]] = set()
    budgets: set[Any] = set()
    for i, message in enumerate([] if isinstance(messages, str) else messages):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            kind = str(part.get("type")).removesuffix("_url") if isinstance(part, dict) else None
            if kind not in ("image", "video"):
                continue
            own = part_options(part, kind, f"message {i} part {j}: ").over(call)
            budgets.add(own.max_patches)
            if kind == "video":
                videos.add((own.fps, own.num_frames))
    if len(videos) > 1:
        raise InputError(f"video parts ask for different (fps, num_frames): {sorted(videos, key=str)}; an "
                         "OpenAI-compatible request carries one (media_io_kwargs.video): send them separately")  # fmt: skip
    if len(budgets) > 1:
        raise InputError(f"media parts ask for different max_patches: {sorted(budgets, key=str)}; an OpenAI-"
                         "compatible request carries one (mm_processor_kwargs): send them separately")  # fmt: skip
    video = MediaOptions(*videos.pop()) if videos else None
    return to_vllm(video, budgets.pop() if budgets else call.max_patches, native=native_video)


def _usage(usage: Any) -> dict[str, int]:
    if usage is None:
        return {}
    u = usage.model_dump() if hasattr(usage, "model_dump") else dict(usage)
    out = {k: u[k] for k in ("prompt_tokens", "completion_tokens") if u.get(k) is not None}
    thinking = u.get("thinking_tokens")
    if thinking is None:
        thinking = (u.get("completion_tokens_details") or {}).get("reasoning_tokens")
    if thinking is not None:
        out["thinking_tokens"] = thinking
        out["answer_tokens"] = u.get("answer_tokens", out.get("completion_tokens", 0) - thinking)
    for key in ("vision_tokens", "media_items_encoded"):
        if u.get(key) is not None:
            out[key] = u[key]
    return out


def _reasoning(obj: Any) -> str:
    extra = getattr(obj, "model_extra", None) or {}
    return (
        getattr(obj, "reasoning_content", None)
        or extra.get("reasoning_content")
        or extra.get("reasoning")
        or ""
    )


class OpenAIBackend:
    """`chat()` against an OpenAI-compatible endpoint, returning what `Model.chat` returns."""

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 600.0,
        max_retries: int = 2,
        media: str = "data",
        native_video: bool = True,
    ) -> None:
        """api_key: default $OPENAI_API_KEY (a placeholder when unset: local servers need none).

        max_retries: the openai client's own retries (on 408/429/5xx, honouring Retry-After).
        media: "data" (inline base64) or "file" (file:// URLs, for a server on this machine).
        native_video: send K2.5's native 2 fps, no frame cap, when a video request names no fps.
        """
        import openai

        if media not in ("data", "file"):
            raise InputError(f"media must be 'data' or 'file', got {media!r}")
        self.client = openai.OpenAI(
            base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=timeout, max_retries=max_retries,
        )  # fmt: skip
        self._model = model
        self.media = media
        self.native_video = native_video

    @property
    def model(self) -> str:
        if self._model is None:
            self._model = next(iter(self.client.models.list())).id
        return self._model

    def chat(
        self,
        messages: Sequence[dict[str, Any]] | str,
        *,
        max_tokens: int = 256,
        thinking: bool | None = None,
        budget: int | str | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stream: bool = False,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        fps: float | None = None,
        num_frames: int | None = None,
        max_patches: int | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> ChatResult | ChatStream:
        """One assistant reply (or a `ChatStream` of `TextPiece`s); arguments as `Model.chat` (max_tokens = max_new_tokens).

        tools / tool_choice go as OpenAI's fields; the reply's `tool_calls` come back on the result
        (streamed as `ToolCallPiece`s, as the endpoint streams them). fps, num_frames, max_patches:
        media options, sent as vLLM's fields (module doc); `extra_body` is sent last, so a field given
        there wins.
        """
        import openai

        # thinking None: the endpoint's default (K2.5's template, as vLLM serves it: on)
        body: dict[str, Any] = {} if thinking is None else {"chat_template_kwargs": {"thinking": thinking}}
        if budget is not None:
            body["thinking_budget" if budget == "auto" else "thinking_token_budget"] = budget
        body.update(
            media_options_body(messages, fps, num_frames, max_patches, native_video=self.native_video)
        )
        body.update(extra_body or {})
        kwargs: dict[str, Any] = {
            "model": self.model, "messages": to_openai_messages(messages, self.media), "max_tokens": max_tokens,
            "temperature": temperature, "top_p": top_p, "extra_body": body,
        }  # fmt: skip
        if seed is not None:
            kwargs["seed"] = seed
        if tools:
            kwargs["tools"] = list(tools)
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        start = time.perf_counter()
        try:
            if not stream:
                response = self.client.chat.completions.create(**kwargs)
                return self._result(response, start)
            events = self.client.chat.completions.create(
                **kwargs, stream=True, stream_options={"include_usage": True}
            )
        except openai.APIStatusError as exc:
            raise _bad_input(exc) or exc from None
        return self._stream(events, start)

    def _result(self, response: Any, start: float) -> ChatResult:
        choice = response.choices[0]
        timings = {"total_s": time.perf_counter() - start}
        server = (response.model_extra or {}).get("timings") or {}
        timings.update({k: server[k] for k in ("time_to_first_token_s", "tokens_per_s") if k in server})
        calls = [c.model_dump(include={"id", "type", "function"}) for c in choice.message.tool_calls or ()]
        return ChatResult(choice.message.content or "", _reasoning(choice.message), _usage(response.usage),
                          choice.finish_reason or "stop", timings, calls)  # fmt: skip

    def _stream(self, events: Any, start: float) -> ChatStream:
        import openai

        def pieces() -> Iterator[TextPiece]:
            texts = {"thinking": [], "answer": []}
            calls: dict[int, dict[str, Any]] = {}  # by the stream's index
            usage, finish, first = None, "stop", None
            try:
                for event in events:
                    usage = event.usage or usage
                    for choice in event.choices:
                        finish = choice.finish_reason or finish
                        for kind, text in (
                            ("thinking", _reasoning(choice.delta)),
                            ("answer", choice.delta.content),
                        ):
                            if text:
                                first = first or time.perf_counter()
                                texts[kind].append(text)
                                yield TextPiece(text, kind)
                        for delta in choice.delta.tool_calls or ():
                            first = first or time.perf_counter()
                            yield _merge_call(calls, delta)
            except openai.APIStatusError as exc:
                raise _bad_input(exc) or exc from None
            finally:
                events.close()  # also when the caller stops early: frees the connection, cancels the job
            end = time.perf_counter()
            u = _usage(usage)
            timings = {"total_s": end - start, "time_to_first_token_s": (first or end) - start}
            n = u.get("completion_tokens", 0)
            timings["tokens_per_s"] = (n - 1) / (end - first) if first and end > first and n > 1 else 0.0
            out.result = ChatResult("".join(texts["answer"]), "".join(texts["thinking"]), u, finish, timings,
                                    [calls[i] for i in sorted(calls)])  # fmt: skip

        out = ChatStream(pieces())
        return out


def _merge_call(calls: dict[int, dict[str, Any]], delta: Any) -> ToolCallPiece:
    """Fold one streamed tool-call delta into `calls` (OpenAI's shape: id and name first, then
    argument pieces) and return it as a `ToolCallPiece`."""
    fn = delta.function
    call = calls.setdefault(
        delta.index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
    )
    name = fn.name if fn is not None else None
    if delta.id:
        call["id"] = delta.id
    if name:
        call["function"]["name"] += name
    args = (fn.arguments if fn is not None else None) or ""
    call["function"]["arguments"] += args
    return ToolCallPiece(args, delta.index, delta.id, name)


def _bad_input(exc: Any) -> InputError | None:
    if exc.status_code not in (400, 404, 413, 422):
        return None
    body = exc.body if isinstance(exc.body, dict) else {}
    error = InputError(body.get("message") or str(exc))
    error.status_code = exc.status_code
    return error
