"""The one thread that owns the model: jobs from a bounded queue, streamed back to the event loop."""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mm_model.server.request import APIError, ChatRequest, PromptTooLongError, api_error_for
from vision.errors import InputError

log = logging.getLogger(__name__)


class PromptCheck:
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

    Events: ("piece", kind, text), ("call", index, id, name, arguments_piece) for tool calls,
    ("done", thinking, answer, usage, finish_reason, timings, tool_calls), ("error", exc).
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
    """One thread that owns the model and runs jobs from a bounded queue, one at a time.

    A model that decodes with a compiled step (`Model.compiled`) is warmed up first, on the same
    thread (`Model.warm_up`: the compile, tens of seconds): `warming_up` is True until then, and
    requests that arrive meanwhile wait in the queue.
    """

    def __init__(self, model: Any, queue_size: int) -> None:
        self.model = model
        self.warming_up = bool(getattr(model, "compiled", False))
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

    def _warm_up(self) -> None:
        log.info("compiling the decode step (once per process; requests wait in the queue meanwhile)")
        try:
            seconds = self.model.warm_up()
            log.info("decode step compiled and ready in %.1f s", seconds or 0.0)
        except Exception:  # the eager step still answers; say so and serve
            log.exception("warming up the decode step failed; serving anyway")
        finally:
            self.warming_up = False

    def _loop(self) -> None:
        if self.warming_up:
            self._warm_up()
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
                temperature=r.temperature, top_p=r.top_p, seed=r.seed, stream=True, tools=r.tools,
                tool_choice=r.tool_choice, **r.media.as_dict(),
            )  # fmt: skip
            stops = StopStringFilter(r.stop) if r.stop else None
            texts: dict[str, list[str]] = {"thinking": [], "answer": []}
            for piece in stream:
                if job.cancelled.is_set():
                    return  # dropping `stream` closes the generator
                if piece.kind == "tool_call":
                    if r.parallel_tool_calls or piece.index == 0:
                        job.emit("call", piece.index, piece.id, piece.name, str(piece))
                    continue
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
            finish = res.finish_reason if res.finish_reason in ("stop", "length", "tool_calls") else "stop"
            calls = res.tool_calls if r.parallel_tool_calls else res.tool_calls[:1]
            job.emit("done", res.thinking, res.text, dict(res.usage), finish, dict(res.timings), calls)
        except InputError as exc:
            job.emit("error", api_error_for(exc))
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
                 "answer_tokens": n_answer, "completion_tokens": n_think + n_answer + (1 if thinking else 0)}  # fmt: skip
        job.emit("done", thinking, answer, usage, "stop", {}, [])
