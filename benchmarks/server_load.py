"""Bounded load test of `mm-model serve`: concurrent chat requests over loopback, latency and memory.

    python -m benchmarks.server_load [--source DIR] [--requests 32] [--queue-size 8] [--max-tokens 8]

Starts the server as a subprocess on a free 127.0.0.1 port (default: a tiny random model written to
a temporary folder, since the bundled "tiny" may be absent), computes each request's expected answer
with `Model.chat` in this process (distinct prompts and seeds, temperature 1, so answers tell
requests apart), then fires `--requests` streaming requests at once with the official `openai` client
(no retries), for `--rounds` rounds. Each request completes (its answer is checked against its own
expected answer) or is refused with 503; anything else counts as failed. Measures, per round,
request and output-token throughput, end-to-end latency and time to first token (mean, p50, p90,
p99; vLLM's `e2el`/`ttft` names), and the server's RSS before and after (from /proc).
Prints a table, then the JSON as the last line (also under benchmarks/results/).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks.common import machine, print_table, write_json

CORPUS = [
    "hello world, the cat sat on the mat. what is in the picture? a red square and a blue circle.",
    "the video shows a ball moving left to right; then it turns green. answer with one word.",
]


def tiny_model(path: Path) -> Path:
    """A tiny random checkpoint with a tokenizer (the test suite's recipe, default init)."""
    from mm_model.checkpoint import save_model
    from mm_model.config import ModelConfig
    from mm_model.multimodal import KimiK25Model
    from mm_model.tokenizer import train_tokenizer

    tok = train_tokenizer(CORPUS * 10, 360)
    cfg = ModelConfig.tiny(
        vocab_size=tok.vocab_size, media_placeholder_token_id=tok.special_tokens["<|media_pad|>"]
    )
    torch.manual_seed(1234)
    save_model(KimiK25Model.build(cfg), path)
    tok.save(path / "tokenizer.json")
    return path


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, MiB."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(base: str) -> dict[str, Any] | None:
    import json

    try:
        with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
            return json.load(r)
    except OSError:
        return None


def wait_for(base: str, idle: bool, within_s: float) -> None:
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        h = health(base)
        if h is not None and (not idle or (not h["queue"]["busy"] and h["queue"]["waiting"] == 0)):
            return
        time.sleep(0.1)
    raise RuntimeError(f"server at {base} not {'idle' if idle else 'up'} after {within_s} s")


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    q = np.percentile(values, [50, 90, 99])
    return {"mean": statistics.fmean(values), "p50": q[0], "p90": q[1], "p99": q[2]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", default=None, help="checkpoint dir (default: a tiny random model)")
    p.add_argument("--requests", type=int, default=32, help="requests fired at once per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--queue-size", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument(
        "--no-image", action="store_true", help="text-only prompts (default: one small image each)"
    )
    p.add_argument("--timeout", type=float, default=120.0, help="per request, client and server")
    p.add_argument("--threads", type=int, default=2, help="torch threads, here and in the server")
    p.add_argument(
        "--client-retries", type=int, default=0, help="openai client retries (503s honour Retry-After)"
    )
    args = p.parse_args()
    import openai

    import mm_model

    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    source = Path(args.source) if args.source else tiny_model(Path(tmp.name))
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(buf, "PNG")
    png = buf.getvalue()
    image_url = "data:image/png;base64," + base64.b64encode(png).decode()

    def messages(i: int, served: bool) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = [{"type": "text", "text": f"request {i}: what is in the picture?"}]
        if not args.no_image:
            parts.insert(0, {"type": "image_url", "image_url": {"url": image_url}} if served
                         else {"type": "image", "image": png})  # fmt: skip
        return [{"role": "user", "content": parts}]

    n = args.requests
    model = mm_model.load(source)
    expected = [model.chat(messages(i, False), max_new_tokens=args.max_tokens, temperature=1.0, seed=i).text
                for i in range(n)]  # fmt: skip
    del model
    distinct = len(set(expected))

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    server = subprocess.Popen(
        [sys.executable, "-m", "mm_model.server", str(source), "--port", str(port), "--queue-size",
         str(args.queue_size), "--timeout", str(args.timeout), "--log-level", "warning"], env=env,
    )  # fmt: skip
    rows, rounds = [], []
    try:
        wait_for(base, idle=False, within_s=180)
        client = openai.OpenAI(
            base_url=f"{base}/v1", api_key="unused", max_retries=args.client_retries, timeout=args.timeout
        )
        model_id = next(iter(client.models.list())).id
        client.chat.completions.create(model=model_id, messages=messages(0, True), max_tokens=2)  # warm-up

        def one(i: int) -> dict[str, Any]:
            start = time.perf_counter()
            first, text, tokens = None, [], 0
            try:
                stream = client.chat.completions.create(
                    model=model_id, messages=messages(i, True), max_tokens=args.max_tokens, temperature=1.0, seed=i,
                    stream=True, stream_options={"include_usage": True},
                )  # fmt: skip
                for chunk in stream:
                    if chunk.usage:
                        tokens = chunk.usage.completion_tokens
                    for choice in chunk.choices:
                        if choice.delta.content:
                            first = first or time.perf_counter()
                            text.append(choice.delta.content)
            except openai.APIStatusError as exc:
                return {"status": exc.status_code}
            except openai.APIError as exc:
                return {"status": "error", "error": str(exc)}
            end = time.perf_counter()
            return {"status": 200, "correct": "".join(text) == expected[i], "tokens": tokens,
                    "e2el": end - start, "ttft": (first or end) - start}  # fmt: skip

        for r in range(args.rounds):
            wait_for(base, idle=True, within_s=args.timeout)
            rss_before, _ = rss_mib(server.pid)
            start = time.perf_counter()
            with ThreadPoolExecutor(n) as pool:
                results = list(pool.map(one, range(n), timeout=args.timeout * 2))
            duration = time.perf_counter() - start
            wait_for(base, idle=True, within_s=args.timeout)
            rss_after, rss_peak = rss_mib(server.pid)
            done = [x for x in results if x["status"] == 200]
            e2el, ttft = (
                percentiles([x["e2el"] * 1e3 for x in done]),
                percentiles([x["ttft"] * 1e3 for x in done]),
            )
            summary = {
                "round": r + 1, "requests": n, "completed": len(done), "refused_503": sum(x["status"] == 503 for x in results),
                "failed": sum(x["status"] not in (200, 503) for x in results),
                "wrong_answer": sum(not x["correct"] for x in done), "duration_s": duration,
                "request_throughput": len(done) / duration, "output_throughput": sum(x["tokens"] for x in done) / duration,
                **{f"{k}_e2el_ms": v for k, v in e2el.items()}, **{f"{k}_ttft_ms": v for k, v in ttft.items()},
                "rss_before_mib": rss_before, "rss_after_mib": rss_after, "rss_peak_mib": rss_peak,
            }  # fmt: skip
            rounds.append(summary)
            rows.append(summary)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        tmp.cleanup()

    print(f"server load: {n} concurrent streaming requests x {args.rounds} rounds, queue {args.queue_size}, "
          f"{args.max_tokens} new tokens, {'text only' if args.no_image else 'one image each'}; "
          f"{distinct}/{n} distinct expected answers")  # fmt: skip
    print_table(rows, ["round", "completed", "refused_503", "failed", "wrong_answer", "request_throughput",
                       "output_throughput", "p50_e2el_ms", "p90_e2el_ms", "p99_e2el_ms", "p50_ttft_ms",
                       "rss_before_mib", "rss_after_mib", "rss_peak_mib"])  # fmt: skip
    config = {k: v for k, v in vars(args).items()} | {"source": str(args.source or "tiny random")}
    write_json(f"server_load-{time.strftime('%Y%m%d-%H%M%S')}", {"config": config, "machine": machine(),
                                                                 "distinct_expected": distinct, "rounds": rounds})  # fmt: skip


if __name__ == "__main__":
    main()
