"""An OpenAI-compatible chat-completions server over one `Model` (FastAPI + uvicorn).

    mm-model serve [SOURCE] --host 127.0.0.1 --port 8000 [--allowed-local-media-path DIR]
    python -m mm_model.server [SOURCE] ...                      (the same, without the CLI)

Routes: POST /v1/chat/completions (JSON or `stream: true` server-sent events in the OpenAI chunk
format, ending `data: [DONE]`), GET /v1/models, GET /v1/models/{id}, GET /health.

Request fields: messages (text, `image_url`, `video_url` parts), model, max_completion_tokens /
max_tokens, temperature, top_p, seed, stop, stream, stream_options.include_usage; and, outside the
OpenAI schema (the client's `extra_body`):
    thinking: bool | {"type": "enabled"|"disabled"}   think before answering (Moonshot API form too)
    chat_template_kwargs: {"thinking": bool}           the vLLM/SGLang switch for K2.5
    thinking_budget: int | "auto"                      Toggle budget (`Model.chat(budget=...)`)
    thinking_token_budget: int                         vLLM's name for the same
Thinking comes back as `reasoning_content` (DeepSeek, Kimi, older vLLM) and `reasoning` (vLLM >= 0.19,
OpenRouter) in the message or delta. `usage` adds vision_tokens, thinking_tokens, answer_tokens and
`completion_tokens_details.reasoning_tokens`; responses carry `timings` (as llama.cpp's server does).

Defaults differ from OpenAI's where the package's own differ: temperature 0 (greedy, as `Model.chat`),
thinking off, max_tokens 256.

Media rules (the processor itself would open any local path, so the server decides first): `data:`
URLs (base64) always; `file://` URLs only under `--allowed-local-media-path` after resolving symlinks
and `..`; http(s) and bare paths never. Videos are probed (container header and first frame) before
queueing and refused past `max_video_seconds`.

Concurrency: `Model` is not thread-safe, so one worker thread owns it and takes jobs from a bounded
queue; a full queue answers 503 with Retry-After. Generation runs in that thread and hands events to
the event loop, so streams flow token by token. A job is cancelled (checked at every streamed piece)
when its client disconnects or its deadline passes; a cancelled job still waiting is skipped.

Status codes: 400 bad input (every `InputError`), 401 wrong API key, 404 unknown model or route,
413 body over `max_body_bytes`, 503 queue full (Retry-After) or shutting down, 504 per-request
timeout (queue wait + generation; a stream already under way ends with an error event instead),
500 anything unexpected (logged with the request id). Bodies follow OpenAI's error JSON:
`{"error": {"message", "type", "param", "code"}}`.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at run time, and
# `Request` is imported inside `create_app` (the server extra stays optional for the rest of the package).

import argparse
import asyncio
import base64
import binascii
import contextlib
import hmac
import ipaddress
import json
import logging
import math
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from vision.errors import ImageError, InputError, VideoError

log = logging.getLogger(__name__)

MiB = 1 << 20


@dataclass(frozen=True)
class ServerLimits:
    """What one request may ask for. `None` disables a limit where noted."""

    max_body_bytes: int = 64 * MiB  # request JSON, media data URLs included (413 past it)
    max_media_items: int = 16  # images + videos per request
    max_video_seconds: float = 600.0  # per video, from its container header
    max_prompt_tokens: int | None = None  # None: the model's context window is the only bound
    default_max_tokens: int = 256  # when the request names none (as Model.chat)
    max_tokens_limit: int = 8192  # largest max_tokens accepted
    timeout_s: float = 600.0  # queue wait + generation
    queue_size: int = 16  # requests waiting behind the running one
    allowed_local_media_path: Path | None = None  # file:// URLs under this folder; None: refused

    def __post_init__(self) -> None:
        if self.queue_size < 1 or self.max_body_bytes < 1 or self.timeout_s <= 0:
            raise ValueError(f"queue_size, max_body_bytes and timeout_s must be positive: {self}")
        if self.allowed_local_media_path is not None:
            root = Path(self.allowed_local_media_path).resolve()
            if not root.is_dir():
                raise InputError(f"--allowed-local-media-path {str(root)!r} is not a directory")
            object.__setattr__(self, "allowed_local_media_path", root)


class APIError(Exception):
    """An HTTP error in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class PromptTooLongError(InputError):
    """The rendered prompt is longer than the server's `max_prompt_tokens`."""


def _input_error(exc: InputError) -> APIError:
    """`InputError` -> 400, with OpenAI's code for over-long prompts and ours for bad media."""
    # The processor and the generation loop both say "context window" when a prompt does not fit.
    if isinstance(exc, PromptTooLongError) or "context window" in str(exc):
        return APIError(400, str(exc), param="messages", code="context_length_exceeded")
    if isinstance(exc, (ImageError, VideoError)):
        code = "invalid_image" if isinstance(exc, ImageError) else "invalid_video"
        return APIError(400, str(exc), param="messages", code=code)
    return APIError(400, str(exc), code="invalid_request")


# ---- request parsing ---------------------------------------------------------------------------


@dataclass
class ChatRequest:
    """A validated chat-completions request: `messages` are ready for `Model.chat`."""

    messages: list[dict[str, Any]]
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    thinking: bool
    budget: int | str | None
    stream: bool
    include_usage: bool
    model: str


def _number(body: dict, name: str, lo: float, hi: float, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise APIError(400, f"{name} must be a number in [{lo}, {hi}], got {value!r}", param=name)
    return float(value)


def _int(body: dict, name: str, lo: int, hi: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise APIError(400, f"{name} must be an integer in [{lo}, {hi}], got {value!r}", param=name)
    return value


def _thinking(body: dict) -> bool:
    value = body.get("thinking")
    if value is None:
        kwargs = body.get("chat_template_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise APIError(400, "chat_template_kwargs must be an object", param="chat_template_kwargs")
        value = kwargs.get("thinking", kwargs.get("enable_thinking", False))
    if isinstance(value, dict):  # Moonshot's API: {"type": "enabled" | "disabled"}
        value = {"enabled": True, "disabled": False}.get(value.get("type"), value)
    if not isinstance(value, bool):
        raise APIError(400, f"thinking must be a bool or {{'type': 'enabled'|'disabled'}}, got {value!r}",
                       param="thinking")  # fmt: skip
    return value


def parse_request(body: Any, limits: ServerLimits, model_name: str) -> ChatRequest:
    """Check the OpenAI fields we support (media parts are resolved separately by `resolve_media`)."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    model = body.get("model", model_name)
    if model != model_name:
        raise APIError(404, f"model {model!r} does not exist; this server serves {model_name!r}",
                       param="model", code="model_not_found")  # fmt: skip
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "messages must be a non-empty list", param="messages")
    fmt = body.get("response_format") or {}
    for name, ok in (("n", body.get("n") in (None, 1)), ("tools", not body.get("tools")),
                     ("logprobs", not body.get("logprobs")),
                     ("response_format", isinstance(fmt, dict) and fmt.get("type", "text") == "text")):  # fmt: skip
        if not ok:
            raise APIError(400, f"{name}={body.get(name)!r} is not supported by this server", param=name)
    max_tokens = _int(body, "max_completion_tokens", 1, limits.max_tokens_limit)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", 1, limits.max_tokens_limit)
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not (isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) and s for s in stop)):
        raise APIError(400, "stop must be a non-empty string or a list of up to 4 of them", param="stop")
    thinking = _thinking(body)
    budget = body.get("thinking_budget", body.get("thinking_token_budget"))
    if (
        budget is not None
        and budget != "auto"
        and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0)
    ):
        raise APIError(400, f"thinking_budget must be a non-negative integer or 'auto', got {budget!r}",
                       param="thinking_budget")  # fmt: skip
    if budget is not None and not thinking:
        raise APIError(400, "thinking_budget needs thinking enabled", param="thinking_budget")
    options = body.get("stream_options") or {}
    return ChatRequest(
        messages=messages, max_new_tokens=max_tokens or min(limits.default_max_tokens, limits.max_tokens_limit),
        temperature=_number(body, "temperature", 0.0, 2.0, 0.0), top_p=_number(body, "top_p", 1e-6, 1.0, 1.0),
        seed=_int(body, "seed", -(2**63), 2**63 - 1), stop=stop, thinking=thinking, budget=budget,
        stream=bool(body.get("stream")), include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
        model=model_name,
    )  # fmt: skip


# ---- media policy ------------------------------------------------------------------------------

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
                value = part.get(part["type"])
                if isinstance(value, dict):
                    value = value.get("url")
                if not isinstance(value, str):
                    raise APIError(
                        400, f"{param}: expected {{'url': 'data:...' or 'file://...'}}", param=param
                    )
                if value.startswith("data:"):
                    source: Any = _decode_data_url(value, param)
                elif value.startswith("file:"):
                    source = _local_file(value, limits.allowed_local_media_path, param)
                else:
                    what = "remote URLs are not fetched" if "://" in value else "bare paths are not accepted"
                    raise APIError(400, f"{param}: {what}; send a data: URL (or a file:// URL under "
                                   "the allowed media folder)", param=param, code="media_url_not_allowed")  # fmt: skip
                if kind == "video":
                    seconds = probe(source, video_fps)
                    if seconds > limits.max_video_seconds:
                        raise APIError(400, f"{param}: video of {seconds:.1f} s is over the limit of "
                                       f"{limits.max_video_seconds:g} s", param=param, code="video_too_long")  # fmt: skip
                parts.append({"type": kind, kind: source})
            message["content"] = parts
        out.append(message)
    return out


def _video_seconds(source: Any, fps: float) -> float:
    """Duration from the container header (opens the file and decodes its first frame, nothing more)."""
    from video.decode import open_video

    with open_video(source, fps=fps) as reader:
        return reader.info.duration


# ---- the model worker --------------------------------------------------------------------------


class _PromptCheck:
    """Wraps `Model.processor`: enforces `max_prompt_tokens` and remembers the last prompt's size."""

    def __init__(self, inner: Any, max_prompt_tokens: int | None) -> None:
        self.inner, self.max_prompt_tokens = inner, max_prompt_tokens
        self.last_prompt_tokens = self.last_vision_tokens = 0

    def __call__(self, messages: Any, **kwargs: Any) -> Any:
        prompt = self.inner(messages, **kwargs)
        n = int(prompt.input_ids.numel())
        self.last_prompt_tokens, self.last_vision_tokens = n, prompt.vision_tokens
        if self.max_prompt_tokens is not None and n > self.max_prompt_tokens:
            raise PromptTooLongError(f"prompt of {n} tokens (of which {prompt.vision_tokens} vision) is over "
                                     f"this server's limit of {self.max_prompt_tokens}")  # fmt: skip
        return prompt

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Job:
    """One chat request on its way through the worker; `events` is read on the event loop.

    Events: ("piece", kind, text), ("done", thinking, answer, usage, finish_reason, timings), ("error", exc).
    """

    request: ChatRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, *event: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled.set()


class ModelWorker:
    """One thread that owns the model and runs jobs from a bounded queue, one at a time."""

    def __init__(self, model: Any, queue_size: int) -> None:
        self.model = model
        self.capacity = queue_size
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self.running: Job | None = None
        self.mean_job_s = 1.0  # running mean of job time, for Retry-After
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="mm-model-worker", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed

    def retry_after(self) -> int:
        return max(1, min(600, math.ceil(self.mean_job_s * (self.waiting + 1))))

    def _busy(self) -> APIError:
        return APIError(503, f"the server is busy ({self.capacity} requests waiting); retry later",
                        type="server_error", code="queue_full", headers={"Retry-After": str(self.retry_after())})  # fmt: skip

    def check_room(self) -> None:
        """Raise the 503 now if the queue is full (a cheap early check; `submit` decides)."""
        if self._closed:
            raise APIError(503, "the server is shutting down", type="server_error", code="shutting_down")
        if self._queue.full():
            raise self._busy()

    def submit(self, job: Job) -> None:
        self.check_room()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise self._busy() from None

    def close(self, timeout: float = 10.0) -> None:
        self._closed = True
        if self.running is not None:
            self.running.cancelled.set()
        while True:  # refuse what is still waiting, then wake the thread
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.emit("error", APIError(503, "the server is shutting down", type="server_error",
                                           code="shutting_down"))  # fmt: skip
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._closed:
                return
            if job.cancelled.is_set():
                continue  # its client gave up while it waited
            start = time.perf_counter()
            self.running = job
            try:
                self._run(job)
            finally:
                self.running = None
                self.mean_job_s = 0.8 * self.mean_job_s + 0.2 * (time.perf_counter() - start)

    def _run(self, job: Job) -> None:
        from mm_model.generation import StopStringFilter

        r = job.request
        try:
            stream = self.model.chat(
                r.messages, max_new_tokens=r.max_new_tokens, thinking=r.thinking, budget=r.budget,
                temperature=r.temperature, top_p=r.top_p, seed=r.seed, stream=True,
            )  # fmt: skip
            stops = StopStringFilter(r.stop) if r.stop else None
            texts: dict[str, list[str]] = {"thinking": [], "answer": []}
            for piece in stream:
                if job.cancelled.is_set():
                    return  # dropping `stream` closes the generator
                text = str(piece)
                if piece.kind == "answer" and stops is not None:
                    text = stops.push(text)
                if text:
                    texts[piece.kind].append(text)
                    job.emit("piece", piece.kind, text)
                if stops is not None and stops.stopped:
                    self._emit_stopped(job, texts)
                    return
            if stops is not None and (tail := stops.flush()):
                job.emit("piece", "answer", tail)
            res = stream.result
            finish = res.finish_reason if res.finish_reason in ("stop", "length") else "stop"
            job.emit("done", res.thinking, res.text, dict(res.usage), finish, dict(res.timings))
        except InputError as exc:
            job.emit("error", _input_error(exc))
        except Exception as exc:
            log.exception("generation failed")
            job.emit("error", APIError(500, f"internal error: {type(exc).__name__}", type="server_error",
                                       code="internal_error"))  # fmt: skip

    def _emit_stopped(self, job: Job, texts: dict[str, list[str]]) -> None:
        # Generation ended at a stop string, before `Model.chat` built its result: the prompt size
        # comes from the processor wrapper, the completion counts re-tokenize the returned text.
        thinking, answer = "".join(texts["thinking"]), "".join(texts["answer"])
        check = self.model.processor
        encode = self.model.tokenizer.encode
        n_think, n_answer = len(encode(thinking)) if thinking else 0, len(encode(answer)) if answer else 0
        usage = {"prompt_tokens": getattr(check, "last_prompt_tokens", 0),
                 "vision_tokens": getattr(check, "last_vision_tokens", 0), "thinking_tokens": n_think,
                 "answer_tokens": n_answer, "completion_tokens": n_think + n_answer + (1 if job.request.thinking else 0)}  # fmt: skip
        job.emit("done", thinking, answer, usage, "stop", {})


# ---- responses ---------------------------------------------------------------------------------


def _usage(u: dict[str, int]) -> dict[str, Any]:
    out = {
        "prompt_tokens": u.get("prompt_tokens", 0),
        "completion_tokens": u.get("completion_tokens", 0),
        "total_tokens": u.get("prompt_tokens", 0) + u.get("completion_tokens", 0),
        "completion_tokens_details": {"reasoning_tokens": u.get("thinking_tokens", 0)},
    }
    for key in ("vision_tokens", "thinking_tokens", "answer_tokens", "media_items_encoded"):
        if key in u:
            out[key] = u[key]
    return out


def _error_response(err: APIError) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


async def _read_body(request: Any, limit: int) -> bytes:
    too_big = APIError(413, f"request body over the limit of {limit:,} bytes", code="request_too_large")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, n = [], 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


class _Events:
    """A job's events on the event loop, with the deadline and client disconnects applied."""

    def __init__(self, job: Job, request: Any, deadline: float, timeout_s: float) -> None:
        self.job, self.request, self.deadline, self.timeout_s = job, request, deadline, timeout_s

    async def next(self) -> tuple:
        loop = asyncio.get_running_loop()
        while True:
            remaining = self.deadline - loop.time()
            if remaining <= 0:
                self.job.cancelled.set()
                raise APIError(504, f"the request took longer than {self.timeout_s:g} s and was cancelled",
                               type="timeout_error", code="timeout")  # fmt: skip
            try:
                return await asyncio.wait_for(self.job.events.get(), min(remaining, 1.0))
            except asyncio.TimeoutError:
                if await self.request.is_disconnected():
                    self.job.cancelled.set()
                    raise APIError(499, "client disconnected", code="client_disconnected") from None


def create_app(
    model_or_source: Any = "tiny",
    *,
    limits: ServerLimits | None = None,
    model_name: str | None = None,
    api_key: str | None = None,
    dtype: Any = None,
    device: str | None = None,
) -> Any:
    """A FastAPI app serving one model (a `Model`, or a source for `mm_model.load`).

    The app takes the model over: its worker thread is the only caller of `chat`, and
    `model.processor` is wrapped for the prompt-length limit (restored on shutdown).
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    limits = limits or ServerLimits()
    if isinstance(model_or_source, (str, os.PathLike)):
        import mm_model

        model = mm_model.load(model_or_source, dtype=dtype, device=device)
        default_name = str(model_or_source) if str(model_or_source) == "tiny" else Path(model_or_source).name
    else:
        model = model_or_source
        default_name = Path(model.path).name if getattr(model, "path", None) else "mm-model"
    name = model_name or default_name
    original_processor = model.processor
    model.processor = _PromptCheck(original_processor, limits.max_prompt_tokens)
    worker = ModelWorker(model, limits.queue_size)
    created = int(time.time())
    video_fps = getattr(original_processor, "video_fps", 2.0)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        worker.close()
        model.processor = original_processor

    app = FastAPI(title="mm-model", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.worker, app.state.limits, app.state.model_name = worker, limits, name

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else None
        return _error_response(APIError(exc.status_code, str(exc.detail), code=code))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s", request.url.path, exc_info=exc)
        return _error_response(APIError(500, f"internal error: {type(exc).__name__}", type="server_error",
                                        code="internal_error"))  # fmt: skip

    def authorize(request: Request) -> None:
        if api_key:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), api_key.encode()):
                raise APIError(401, "invalid API key", type="authentication_error", code="invalid_api_key")

    def model_card() -> dict[str, Any]:
        return {"id": name, "object": "model", "created": created, "owned_by": "mm-model",
                "max_model_len": model.config.text.max_position_embeddings}  # fmt: skip

    @app.get("/health")
    async def health() -> JSONResponse:
        body = {"status": "ok" if worker.alive else "stopped", "model": name,
                "queue": {"waiting": worker.waiting, "capacity": worker.capacity, "busy": worker.running is not None}}  # fmt: skip
        return JSONResponse(body, status_code=200 if worker.alive else 503)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authorize(request)
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model_info(model_id: str, request: Request) -> dict[str, Any]:
        authorize(request)
        if model_id != name:
            raise APIError(404, f"model {model_id!r} does not exist", param="model", code="model_not_found")
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        authorize(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.timeout_s
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        raw = await _read_body(request, limits.max_body_bytes)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise APIError(400, f"the request body is not valid JSON ({exc})") from None
        req = parse_request(body, limits, name)
        worker.check_room()  # fail fast, before decoding media
        try:
            req.messages = await asyncio.to_thread(resolve_media, req.messages, limits, video_fps)
        except InputError as exc:  # a video the probe could not open
            raise _input_error(exc) from None
        job = Job(req, loop)
        worker.submit(job)
        events = _Events(job, request, deadline, limits.timeout_s)
        try:
            first = await events.next()
        except APIError:
            job.cancelled.set()
            raise
        if first[0] == "error":
            raise first[1]
        if not req.stream:
            return await _complete(rid, req, first, events)
        return _SSEResponse(_stream(rid, req, first, events), on_close=job.cancelled.set)

    async def _complete(rid: str, req: ChatRequest, event: tuple, events: _Events) -> dict[str, Any]:
        texts: dict[str, list[str]] = {"thinking": [], "answer": []}
        while event[0] == "piece":
            texts[event[1]].append(event[2])
            event = await events.next()
        if event[0] == "error":
            raise event[1]
        _, thinking, answer, usage, finish, timings = event
        thinking = thinking or None
        return {
            "id": rid, "object": "chat.completion", "created": int(time.time()), "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer,
                                                 "reasoning_content": thinking, "reasoning": thinking},
                         "logprobs": None, "finish_reason": finish}],
            "usage": _usage(usage), "timings": timings,
        }  # fmt: skip

    async def _stream(rid: str, req: ChatRequest, event: tuple, events: _Events) -> AsyncIterator[str]:
        now = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            body = {"id": rid, "object": "chat.completion.chunk", "created": now, "model": name,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}  # fmt: skip
            if req.include_usage:
                body["usage"] = None
            return f"data: {json.dumps(body, separators=(',', ':'))}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        try:
            while event[0] == "piece":
                _, kind, text = event
                yield chunk(
                    {"reasoning_content": text, "reasoning": text}
                    if kind == "thinking"
                    else {"content": text}
                )
                event = await events.next()
            if event[0] == "error":
                raise event[1]
            _, _, _, usage, finish, timings = event
            yield chunk({}, finish)
            if req.include_usage:
                body = {"id": rid, "object": "chat.completion.chunk", "created": now, "model": name,
                        "choices": [], "usage": _usage(usage), "timings": timings}  # fmt: skip
                yield f"data: {json.dumps(body, separators=(',', ':'))}\n\n"
        except (
            APIError
        ) as err:  # headers are sent: the error travels as an event (the openai client raises it)
            events.job.cancelled.set()
            if err.status == 499:
                return
            yield f"data: {json.dumps(err.body())}\n\n"
        yield "data: [DONE]\n\n"

    class _SSEResponse(StreamingResponse):
        """Server-sent events that cancel their job however the response ends (disconnects included)."""

        def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None]) -> None:
            super().__init__(content, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip
            self._on_close = on_close

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                self._on_close()

    return app


# ---- running it --------------------------------------------------------------------------------


@contextlib.contextmanager
def background_server(
    app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> Iterator[str]:
    """Serve `app` from a thread on `host:port` (0: a free port) for the block; yields the base URL (…/v1)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5, lifespan="on")
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="mm-model-http", daemon=True
    )
    thread.start()
    start = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - start > 30:
            sock.close()
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def serve(
    source: Any = "tiny",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    **options: Any,
) -> None:
    """Load `source` and serve it until interrupted. options: `create_app` keywords and `ServerLimits` fields."""
    import uvicorn

    limit_names = {f.name for f in fields(ServerLimits)}
    limits = ServerLimits(**{k: v for k, v in options.items() if k in limit_names})
    app_options = {k: v for k, v in options.items() if k not in limit_names}
    if not _is_loopback(host) and not app_options.get("api_key"):
        log.warning(
            "serving on %s without --api-key: anyone who can reach this address can use the model", host
        )
    app = create_app(source, limits=limits, **app_options)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _add_serve_args(p: argparse.ArgumentParser) -> None:
    d = ServerLimits()
    p.add_argument("source", nargs="?", default="tiny", help="bundled model name or checkpoint directory")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--served-model-name", default=None, help="the model id clients send (default: the source name)"
    )
    p.add_argument("--api-key", default=os.environ.get("MM_MODEL_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on /v1 (default: $MM_MODEL_API_KEY, else none)")  # fmt: skip
    p.add_argument("--dtype", choices=["fp32", "bf16"], default=None)
    p.add_argument("--allowed-local-media-path", default=None, metavar="DIR",
                   help="allow file:// media under DIR (default: data: URLs only)")  # fmt: skip
    p.add_argument("--max-body-mb", type=float, default=d.max_body_bytes / MiB)
    p.add_argument("--max-media-items", type=int, default=d.max_media_items)
    p.add_argument("--max-video-seconds", type=float, default=d.max_video_seconds)
    p.add_argument("--max-prompt-tokens", type=int, default=None)
    p.add_argument("--default-max-tokens", type=int, default=d.default_max_tokens)
    p.add_argument("--max-tokens-limit", type=int, default=d.max_tokens_limit)
    p.add_argument(
        "--timeout", type=float, default=d.timeout_s, help="seconds per request, queue wait included"
    )
    p.add_argument("--queue-size", type=int, default=d.queue_size, help="requests waiting before 503s")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _cmd_serve(args: argparse.Namespace) -> int:
    import torch

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(
        args.source, host=args.host, port=args.port, log_level=args.log_level, model_name=args.served_model_name,
        api_key=args.api_key, dtype={None: None, "fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype],
        max_body_bytes=int(args.max_body_mb * MiB), max_media_items=args.max_media_items,
        max_video_seconds=args.max_video_seconds, max_prompt_tokens=args.max_prompt_tokens,
        default_max_tokens=args.default_max_tokens, max_tokens_limit=args.max_tokens_limit, timeout_s=args.timeout,
        queue_size=args.queue_size,
        allowed_local_media_path=Path(args.allowed_local_media_path) if args.allowed_local_media_path else None,
    )  # fmt: skip
    return 0


def add_serve_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add `serve` to an argparse subparsers object (the `mm-model` CLI); runs through `args.func(args)`."""
    p = subparsers.add_parser("serve", help="OpenAI-compatible chat-completions server")
    _add_serve_args(p)
    p.set_defaults(func=_cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mm_model.server", description="OpenAI-compatible server")
    _add_serve_args(parser)
    args = parser.parse_args(argv)
    try:
        return _cmd_serve(args)
    except InputError as exc:
        print(f"mm-model serve: {exc}")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
