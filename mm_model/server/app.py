"""The FastAPI app: routes, streaming responses in OpenAI's chunk format, errors in its JSON shape."""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at run time, and
# `Request` is imported inside `create_app` (the server extra stays optional for the rest of the package).

import asyncio
import contextlib
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from mm_model.server.media import resolve_media
from mm_model.server.request import APIError, ChatRequest, ServerLimits, api_error_for, parse_request
from mm_model.server.worker import Job, ModelWorker, PromptCheck
from vision.errors import InputError

log = logging.getLogger(__name__)


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
    fps: float | None = None,
    num_frames: int | None = None,
    max_patches: int | None = None,
    compile: bool | None = None,
) -> Any:
    """A FastAPI app serving one model (a `Model`, or a source for `mm_model.load`).

    fps, num_frames, max_patches: the served model's media defaults (`mm-model serve --fps ...`);
    a request's `mm_processor_kwargs` / `media_io_kwargs` and a part's own options override them.

    compile: for a source, decode with the compiled step (`mm_model.lm.compiled`); None reads
    `MM_MODEL_COMPILE`, else on: a server answers many requests, and pays the compile once, at
    start-up, before the first (`/health` says "warming_up" until then). A `Model` is served as given.

    The app takes the model over: its worker thread is the only caller of `chat`, and
    `model.processor` is wrapped for the prompt-length limit (restored on shutdown).
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    limits = limits or ServerLimits()
    if isinstance(model_or_source, (str, os.PathLike)):
        import mm_model
        from mm_model.lm.compiled import compile_requested

        model = mm_model.load(
            model_or_source, dtype=dtype, device=device, compile=compile_requested(compile, default=True)
        )
        default_name = str(model_or_source) if str(model_or_source) == "tiny" else Path(model_or_source).name
    else:
        model = model_or_source
        default_name = Path(model.path).name if getattr(model, "path", None) else "mm-model"
    name = model_name or default_name
    original_processor = served = model.processor
    if (fps, num_frames, max_patches) != (None, None, None):
        served = served.with_media_defaults(fps, num_frames, max_patches)
    model.processor = PromptCheck(served, limits.max_prompt_tokens)
    worker = ModelWorker(model, limits.queue_size)
    created = int(time.time())
    video_fps = getattr(served, "video_fps", 2.0)

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
        status = "stopped" if not worker.alive else "warming_up" if worker.warming_up else "ok"
        body = {"status": status, "model": name,
                "queue": {"waiting": worker.waiting, "capacity": worker.capacity, "busy": worker.running is not None}}  # fmt: skip
        return JSONResponse(body, status_code=200 if status == "ok" else 503)

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
        if req.ignored:  # as vLLM: answered, and the log says what was not read
            log.warning("The following fields were present in the request but ignored: %s", set(req.ignored))
        worker.check_room()  # fail fast, before decoding media
        try:
            req.messages = await asyncio.to_thread(
                resolve_media, req.messages, limits, req.media.fps or video_fps
            )
        except InputError as exc:  # a video the probe could not open
            raise api_error_for(exc) from None
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
        while event[0] in ("piece", "call"):
            event = await events.next()
        if event[0] == "error":
            raise event[1]
        _, thinking, answer, usage, finish, timings, calls = event
        thinking = thinking or None
        message = {"role": "assistant", "content": answer if answer or not calls else None,
                   "reasoning_content": thinking, "reasoning": thinking}  # fmt: skip
        if calls:
            message["tool_calls"] = calls
        return {
            "id": rid, "object": "chat.completion", "created": int(time.time()), "model": name,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
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
            while event[0] in ("piece", "call"):
                if event[0] == "call":  # OpenAI's shape: id, type and name once, then argument pieces
                    _, index, cid, fn_name, text = event
                    call: dict[str, Any] = {"index": index, "function": {"arguments": text}}
                    if cid is not None:
                        call.update(id=cid, type="function")
                        call["function"]["name"] = fn_name
                    yield chunk({"tool_calls": [call]})
                else:
                    _, kind, text = event
                    yield chunk(
                        {"reasoning_content": text, "reasoning": text}
                        if kind == "thinking"
                        else {"content": text}
                    )
                event = await events.next()
            if event[0] == "error":
                raise event[1]
            _, _, _, usage, finish, timings, _ = event
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
