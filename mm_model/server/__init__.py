"""An OpenAI-compatible chat-completions server over one `Model` (FastAPI + uvicorn).

    mm-model serve [SOURCE] --host 127.0.0.1 --port 8000 [--allowed-local-media-path DIR]
    python -m mm_model.server [SOURCE] ...                      (the same, without the CLI)

Routes: POST /v1/chat/completions (JSON or `stream: true` server-sent events in the OpenAI chunk
format, ending `data: [DONE]`), GET /v1/models, GET /v1/models/{id}, GET /health.

Request fields: messages (text, `image_url`, `video_url` parts; `tool` turns and assistant turns
with `tool_calls`), model, max_completion_tokens / max_tokens, temperature, top_p, seed, stop, stream,
stream_options.include_usage, tools, tool_choice ("auto" | "none" | "required" | a named function),
parallel_tool_calls; and, outside the OpenAI schema (the client's `extra_body`):
    thinking: bool | {"type": "enabled"|"disabled"}   think before answering (Moonshot API form too)
    chat_template_kwargs: {"thinking": bool}           the vLLM/SGLang switch for K2.5
    thinking_budget: int | "auto"                      Toggle budget (`Model.chat(budget=...)`)
    thinking_token_budget: int                         vLLM's name for the same
Thinking comes back as `reasoning_content` (DeepSeek, Kimi, older vLLM) and `reasoning` (vLLM >= 0.19,
OpenRouter) in the message or delta. `usage` adds vision_tokens, thinking_tokens, answer_tokens and
`completion_tokens_details.reasoning_tokens`; responses carry `timings` (as llama.cpp's server does).

Tool calls (Kimi K2's format, `mm_model.tools`) come back as the message's `tool_calls` with
finish_reason "tool_calls" (a named tool_choice keeps "stop", as OpenAI and vLLM do), and stream as
OpenAI streams them: a delta with the call's index, id, type and name, then argument pieces. As vLLM,
arguments are passed on as the model wrote them and names are not checked against the tools.

Defaults differ from OpenAI's where the package's own differ: temperature 0 (greedy, as `Model.chat`),
thinking as the served model's template says (the release's: on, as vLLM serves K2.5; the bundled
tiny model: off), max_tokens 256.

Fields this server does not read: those that would change the answer (n > 1, logprobs, top_logprobs,
logit_bias, presence_penalty, frequency_penalty, a non-text response_format) get a 400 naming the
field; any other unknown field is ignored and logged as a warning, as vLLM does.

Media rules (the processor itself would open any local path, so the server decides first): `data:`
URLs (base64) always; `file://` URLs only under `--allowed-local-media-path` after resolving symlinks
and `..`; http(s) and bare paths never. Videos are probed (container header and first frame) before
queueing and refused past `max_video_seconds`.

Media options (`mm_model.media_options`), under vLLM's field names: `mm_processor_kwargs` {"fps",
"num_frames", "max_patches"} and `media_io_kwargs` {"video": {"fps", "num_frames"}} (num_frames -1: no
cap) set this request's; keys on a media part (`{"type": "video_url", ..., "fps": 1}`) set that part's;
`mm-model serve --fps F --num-frames N --max-patches P` the served defaults. A bad value is a 400 whose
`param` names the field (`mm_processor_kwargs.fps`); keys of those two objects we do not use are
ignored with a logged warning, as vLLM passes them on to its processor. Media parts may also come in
Hugging Face form: `{"type": "image"|"video", "url" | "base64" | "path": ...}` (path: absolute, under
the allowed folder).

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

from mm_model.server.app import create_app
from mm_model.server.request import APIError, ChatRequest, ServerLimits, parse_request
from mm_model.server.run import add_serve_command, background_server, main, serve

__all__ = [
    "APIError",
    "ChatRequest",
    "ServerLimits",
    "add_serve_command",
    "background_server",
    "create_app",
    "main",
    "parse_request",
    "serve",
]
