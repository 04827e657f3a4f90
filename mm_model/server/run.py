"""Running the server: in a background thread (tests, benchmarks), or until interrupted (`mm-model serve`)."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from mm_model.cli import add_compile_arg, add_media_args, compile_choice, media_options
from mm_model.server.app import create_app
from mm_model.server.request import MiB, ServerLimits
from vision.errors import InputError

log = logging.getLogger(__name__)


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
    add_compile_arg(p, "on")
    add_media_args(p)  # the served model's media defaults; a request's mm_processor_kwargs override them


def _cmd_serve(args: argparse.Namespace) -> int:
    import torch

    media = media_options(args).as_dict()  # bad values fail before the model loads
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(
        args.source, host=args.host, port=args.port, log_level=args.log_level, model_name=args.served_model_name,
        api_key=args.api_key, dtype={None: None, "fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype],
        max_body_bytes=int(args.max_body_mb * MiB), max_media_items=args.max_media_items,
        max_video_seconds=args.max_video_seconds, max_prompt_tokens=args.max_prompt_tokens,
        default_max_tokens=args.default_max_tokens, max_tokens_limit=args.max_tokens_limit, timeout_s=args.timeout,
        queue_size=args.queue_size, compile=compile_choice(args),
        allowed_local_media_path=Path(args.allowed_local_media_path) if args.allowed_local_media_path else None,
        **media,
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
