"""A model served elsewhere, behind the same `chat` as a local `Model`.

    m = mm_model.load("http://gpu-box:8000/v1")              # vLLM, SGLang, `mm-model serve`, ...
    m.name, m.url, m.describe()                               # "model moonshotai/Kimi-K2.5 at http://..."
    r = m.chat(messages, max_new_tokens=64, thinking=True)    # a `ChatResult`, as `Model.chat` gives
    for piece in m.chat(messages, stream=True): ...           # `TextPiece`s; then `.result`

`load` asks the endpoint for its models (GET /v1/models, a short timeout) before returning, so a
wrong URL, a server that is not OpenAI-compatible, or a model it does not serve fails at once with an
`EndpointError` (an `InputError`) naming the URL. Chat goes through `mm_model.client.OpenAIBackend`:
every keyword is forwarded to it (max_new_tokens as max_tokens); thinking=None sends no switch, so
the endpoint's own default applies. Bad input the endpoint refuses (HTTP 400/404/413/422) is an
`InputError` with its message; the endpoint failing (connection refused or dropped, timeout, 5xx,
a refused API key) is an `EndpointError` naming the URL, not an `openai`/`httpx` traceback.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from mm_model.api import ChatResult, ChatStream, TextPiece
from mm_model.client import OpenAIBackend
from vision.errors import InputError

PROBE_TIMEOUT_S = 10.0
# Model.chat arguments of the Toggle policy, which runs inside our own decoding loop only (and their defaults).
LOCAL_ONLY = {"task_kind": None, "answer_budget": None, "ramp": 0.0}


class EndpointError(InputError):
    """The endpoint at a URL cannot be used: unreachable, not OpenAI-compatible, or failing."""


def is_url(source: Any) -> bool:
    """Whether a model source names an endpoint (http:// or https://) rather than a local model."""
    return isinstance(source, str) and source.strip().lower().startswith(("http://", "https://"))


def base_url(url: str) -> str:
    """The API base: trailing slashes dropped; a bare http://host:port gets /v1, as vLLM serves it."""
    url = url.strip().rstrip("/")
    return url + "/v1" if urlsplit(url).path == "" else url


def list_models(url: str, api_key: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> list[str]:
    """The model ids of GET {url}/models; `EndpointError` saying what is wrong with the endpoint otherwise."""
    # The standard library, not the openai client: its errors say exactly what failed, and there are no retries.
    request = urllib.request.Request(
        f"{url}/models", headers={"Authorization": f"Bearer {api_key}"} if api_key else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            status, kind, raw = r.status, r.headers.get("content-type") or "no content type", r.read()
    except urllib.error.HTTPError as exc:
        exc.close()
        status, kind, raw = exc.code, "", b""
    except TimeoutError:
        raise EndpointError(f"the endpoint {url} did not answer within {timeout:g} s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise EndpointError(f"the endpoint {url} did not answer within {timeout:g} s") from None
        raise EndpointError(
            f"cannot connect to the endpoint {url} ({exc.reason}): is the server running?"
        ) from None
    except http.client.HTTPException as exc:  # an answer, but not in HTTP
        raise EndpointError(f"the endpoint {url} does not speak HTTP ({type(exc).__name__}: {exc})") from None
    except (OSError, ValueError) as exc:  # reset connections, malformed URLs
        raise EndpointError(f"cannot use the endpoint {url}: {exc}") from None
    if status in (401, 403):
        raise EndpointError(f"the endpoint {url} refused the API key (HTTP {status}): pass api_key= "
                            "or set OPENAI_API_KEY")  # fmt: skip
    if status == 404:
        raise EndpointError(f"the endpoint {url} has no /models (HTTP 404): not an OpenAI-compatible API "
                            "(its base URL usually ends in /v1)")  # fmt: skip
    if status != 200:
        raise EndpointError(f"the endpoint {url} answered HTTP {status} to GET /models")
    try:
        body = json.loads(raw)
    except ValueError:
        raise EndpointError(f"the endpoint {url} answered GET /models with {kind}, not JSON: "
                            "not an OpenAI-compatible API") from None  # fmt: skip
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise EndpointError(f"the endpoint {url} answered GET /models without a model list: "
                            "not an OpenAI-compatible API")  # fmt: skip
    ids = [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
    if not ids:
        raise EndpointError(f"the endpoint {url} serves no models")
    return ids


class RemoteModel:
    """An OpenAI-compatible endpoint as a model: `.chat` as `Model.chat`; `.url`, `.name` (model id).

    There are no local weights: `.config`, `.tokenizer` and `.path` are None, `.default_thinking`
    is None (the endpoint's own default, which the request leaves alone), and there is no local step
    to compile (`.compiled` False, `warm_up` a no-op).
    """

    default_thinking: bool | None = None
    config = None
    tokenizer = None
    path = None
    compiled = False

    def warm_up(self) -> None:
        """Nothing to warm here: the endpoint decodes."""
        return None

    def __init__(
        self,
        url: str,
        model: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 600.0,
        probe_timeout: float = PROBE_TIMEOUT_S,
        max_retries: int = 2,
        media: str = "data",
    ) -> None:
        """timeout: per request; probe_timeout: for GET /models at load; max_retries: the openai client's
        (408/429/5xx); media: "data" (base64) or "file" (file:// URLs for a server on this machine)."""
        try:
            import openai  # noqa: F401
        except ImportError as exc:
            raise InputError(
                f"an endpoint URL needs the openai package: pip install 'mm-model[server]' ({exc})"
            ) from None
        self.url = base_url(url)
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self.models = list_models(self.url, api_key, probe_timeout)
        if model is not None and model not in self.models:
            raise EndpointError(
                f"the endpoint {self.url} does not serve model {model!r}; it serves {', '.join(self.models)}"
            )
        self.name: str = model or self.models[0]
        self.timeout = timeout
        self.backend = OpenAIBackend(self.url, self.name, api_key, timeout=timeout, max_retries=max_retries,
                                     media=media)  # fmt: skip

    def describe(self) -> str:
        return f"model {self.name} at {self.url}"

    def __repr__(self) -> str:
        return f"RemoteModel({self.url!r}, model={self.name!r})"

    def chat(
        self,
        messages: Sequence[dict[str, Any]] | str,
        *,
        max_new_tokens: int = 256,
        thinking: bool | None = None,
        budget: int | str | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stream: bool = False,
        **options: Any,
    ) -> ChatResult | ChatStream:
        """The endpoint's reply to `messages`, as `Model.chat` gives it; `options` (tools, tool_choice,
        fps, num_frames, max_patches, ...) go to `OpenAIBackend.chat` as they are."""
        for name, default in LOCAL_ONLY.items():
            if options.pop(name, default) != default:
                raise InputError(f"{name} works with a local model only, not with the endpoint {self.url}")
        # thinking None sends no switch: the endpoint's default
        kwargs = dict(max_tokens=max_new_tokens, thinking=thinking, budget=budget, temperature=temperature,
                      top_p=top_p, seed=seed, stream=stream, **options)  # fmt: skip
        try:
            out = self.backend.chat(messages, **kwargs)
        except InputError:
            raise
        except Exception as exc:
            raise self._failure(exc) or exc from None
        return self._guarded(out) if stream else out

    def _guarded(self, inner: ChatStream) -> ChatStream:
        """`inner` with endpoint failures mid-stream turned into `EndpointError`s; closing it closes `inner`."""

        def pieces() -> Iterator[TextPiece]:
            try:
                yield from inner  # a close() of the outer stream reaches inner.close() through this
            except InputError:
                raise
            except Exception as exc:
                raise self._failure(exc) or exc from None
            outer.result = inner.result

        outer = ChatStream(pieces())
        return outer

    def _failure(self, exc: Exception) -> EndpointError | None:
        """What went wrong with the endpoint, naming it; None for errors that are not the endpoint's."""
        import openai

        url = self.url
        transport = _transport_error(exc)  # raised as is by some openai versions while a stream is read
        if isinstance(exc, openai.APITimeoutError) or (transport and "Timeout" in type(exc).__name__):
            return EndpointError(f"the endpoint {url} did not answer within {self.timeout:g} s")
        if isinstance(exc, openai.APIConnectionError) or transport:
            cause = exc.__cause__ if isinstance(exc, openai.APIConnectionError) and exc.__cause__ else exc
            if type(cause).__name__ == "ConnectError":  # it went away since `load`
                return EndpointError(
                    f"cannot connect to the endpoint {url} ({cause}): is the server running?"
                )
            return EndpointError(
                f"lost the connection to the endpoint {url} ({type(cause).__name__}: {cause})"
            )
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return EndpointError(f"the endpoint {url} refused the API key (HTTP {exc.status_code})")
        if isinstance(exc, openai.APIStatusError):
            return EndpointError(f"the endpoint {url} failed: HTTP {exc.status_code}: {_message(exc)}")
        if isinstance(exc, openai.APIError):  # e.g. an error event in a stream
            return EndpointError(f"the endpoint {url} failed: {_message(exc)}")
        return None


def _transport_error(exc: Exception) -> bool:
    """An exception of the HTTP stack under `openai` (httpx; httpx2 from openai 3): the network failed."""
    return type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2")


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if inner.get("message"):
            return str(inner["message"])
    return str(getattr(exc, "message", None) or exc)
