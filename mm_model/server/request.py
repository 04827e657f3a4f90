"""What a request may ask for and how it is checked: `ServerLimits`, OpenAI-shaped `APIError`s,
and `parse_request` (a chat-completions body -> `ChatRequest` for `Model.chat`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mm_model.media_options import MediaOptionError, MediaOptions, from_vllm
from mm_model.tools import ToolError, check_tool_choice, check_tools
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


def api_error_for(exc: InputError) -> APIError:
    """`InputError` -> 400, with OpenAI's code for over-long prompts and ours for bad media."""
    # The processor and the generation loop both say "context window" when a prompt does not fit.
    if isinstance(exc, PromptTooLongError) or "context window" in str(exc):
        return APIError(400, str(exc), param="messages", code="context_length_exceeded")
    if isinstance(exc, (ImageError, VideoError)):
        code = "invalid_image" if isinstance(exc, ImageError) else "invalid_video"
        return APIError(400, str(exc), param="messages", code=code)
    return APIError(400, str(exc), code="invalid_request")


# ---- request parsing ---------------------------------------------------------------------------

# Fields read below (or that do not change an answer: user, metadata, store, service_tier). Others
# are ignored with a warning in the log, as vLLM does ("...present in the request but ignored").
KNOWN_FIELDS = frozenset(
    [
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "seed",
        "stop",
        "stream",
        "stream_options",
        "n",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "presence_penalty",
        "frequency_penalty",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "thinking",
        "chat_template_kwargs",
        "thinking_budget",
        "thinking_token_budget",
        "mm_processor_kwargs",
        "media_io_kwargs",
        "user",
        "metadata",
        "store",
        "service_tier",
    ]
)


@dataclass
class ChatRequest:
    """A validated chat-completions request: `messages` are ready for `Model.chat`."""

    messages: list[dict[str, Any]]
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    thinking: bool | None
    budget: int | str | None
    stream: bool
    include_usage: bool
    model: str
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    ignored: tuple[str, ...] = ()  # request fields this server does not read (logged, as vLLM does)
    media: MediaOptions = field(default_factory=MediaOptions)  # this request's fps / num_frames / max_patches


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


def _thinking(body: dict) -> bool | None:
    """The request's thinking switch, or None: the served model's default (the release's: on)."""
    value = body.get("thinking")
    if value is None:
        kwargs = body.get("chat_template_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise APIError(400, "chat_template_kwargs must be an object", param="chat_template_kwargs")
        value = kwargs.get("thinking", kwargs.get("enable_thinking"))
    if value is None:
        return None
    if isinstance(value, dict):  # Moonshot's API: {"type": "enabled" | "disabled"}
        value = {"enabled": True, "disabled": False}.get(value.get("type"), value)
    if not isinstance(value, bool):
        raise APIError(400, f"thinking must be a bool or {{'type': 'enabled'|'disabled'}}, got {value!r}",
                       param="thinking")  # fmt: skip
    return value


def _media_options(body: dict) -> MediaOptions:
    """vLLM's `mm_processor_kwargs` and `media_io_kwargs` -> this request's media options.

    Keys we do not use are ignored with a warning, as vLLM and transformers ignore a processor kwarg
    they do not know (vLLM hands both dicts to its processor / video loader)."""
    try:
        options, ignored = from_vllm(body.get("mm_processor_kwargs"), body.get("media_io_kwargs"))
    except MediaOptionError as exc:
        raise APIError(400, str(exc), param=exc.field) from None
    if ignored:
        log.warning("ignoring request fields this server does not use: %s", ", ".join(ignored))
    return options


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
    for name, ok in (("n", body.get("n") in (None, 1)), ("logprobs", not body.get("logprobs")),
                     ("top_logprobs", not body.get("top_logprobs")), ("logit_bias", not body.get("logit_bias")),
                     ("presence_penalty", not body.get("presence_penalty")),
                     ("frequency_penalty", not body.get("frequency_penalty")),
                     ("response_format", isinstance(fmt, dict) and fmt.get("type", "text") == "text")):  # fmt: skip
        if not ok:  # each would change the answer: refuse rather than answer something else
            raise APIError(400, f"{name}={body.get(name)!r} is not supported by this server", param=name)
    tools = body.get("tools") or None
    try:
        tools = check_tools(tools) if tools is not None else None
        choice = check_tool_choice(body.get("tool_choice"), tools)
    except ToolError as exc:
        param = "tool_choice" if "tool_choice" in str(exc) else "tools"
        raise APIError(400, str(exc), param=param) from None
    parallel = body.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise APIError(
            400, f"parallel_tool_calls must be a bool, got {parallel!r}", param="parallel_tool_calls"
        )
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
    if budget is not None and thinking is False:
        raise APIError(400, "thinking_budget needs thinking enabled", param="thinking_budget")
    options = body.get("stream_options") or {}
    media = _media_options(body)
    return ChatRequest(
        messages=messages, max_new_tokens=max_tokens or min(limits.default_max_tokens, limits.max_tokens_limit),
        temperature=_number(body, "temperature", 0.0, 2.0, 0.0), top_p=_number(body, "top_p", 1e-6, 1.0, 1.0),
        seed=_int(body, "seed", -(2**63), 2**63 - 1), stop=stop, thinking=thinking, budget=budget,
        stream=bool(body.get("stream")), include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
        model=model_name, tools=tools, tool_choice=choice, parallel_tool_calls=parallel,
        ignored=tuple(sorted(k for k in body if k not in KNOWN_FIELDS)), media=media,
    )  # fmt: skip
