"""Gradio demo: chat about screenshots, images and videos with a loaded model (`mm-model demo [SOURCE|URL]`).

A thin shell over `mm_model.api`: it turns the chat history into API messages, streams
`Model.chat(..., stream=True)` into the chat (thinking in a collapsible message, then the answer, then
a stats line) and never touches tensors. Served on 127.0.0.1 by default; files are served only from
Gradio's upload cache and the bundled examples folder (`allowed_paths`); one generation at a time
(queue concurrency 1 plus a lock, since the model object is not thread-safe), the rest wait in line.

python -m demo.app /path/to/checkpoint --port 7860
python -m demo.app http://gpu-box:8000/v1 [--model NAME]    (a served model, e.g. Kimi-K2.5 on vLLM)
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from demo.media import Limits, chat_options, describe
from demo.messages import ERROR, NOTICE, file_path, to_messages
from mm_model import InputError
from mm_model.cli import add_compile_arg, compile_choice
from mm_model.media_options import MAX_IMAGE_PATCHES, MAX_NUM_FRAMES, MIN_PATCHES, NATIVE_FPS
from mm_model.remote import EndpointError
from vision.config import MediaConfig

log = logging.getLogger(__name__)
ASSETS = Path(str(resources.files("mm_model") / "assets"))
# The example cards (file, question, the bundled model's expected answer): media drawn by its training
# curriculum's generators, held out (scripts/make_example_assets.py); the browser test checks each answer.
EXAMPLES: list[dict[str, str]] = json.loads((ASSETS / "examples.json").read_text())


def stats_line(usage: dict[str, int], timings: dict[str, float]) -> str:
    """prompt 812 · vision 640 · thinking 0 · answer 21 tokens · first token 0.41 s · 38.2 tok/s

    Counts an endpoint does not report (vLLM: vision, thinking) are left out, not shown as 0."""
    counts = [f"{name} {usage[key]}" for name, key in (("prompt", "prompt_tokens"), ("vision", "vision_tokens"),
              ("thinking", "thinking_tokens"), ("answer", "answer_tokens")) if key in usage]  # fmt: skip
    if "answer_tokens" not in usage and "completion_tokens" in usage:
        counts.append(f"completion {usage['completion_tokens']}")
    return (
        f"{' · '.join(counts)} tokens · first token {timings.get('time_to_first_token_s', 0):.2f} s · "
        f"{timings.get('tokens_per_s', 0):.1f} tok/s"
    )


def media_config(model: Any) -> MediaConfig:
    """How the model samples media; for an endpoint (no local config) K2.5's defaults, as an estimate."""
    return model.config.media if getattr(model, "config", None) is not None else MediaConfig()


def where(model: Any) -> str:
    """Which model answers, and where: "model NAME at URL" for an endpoint, "model NAME on this machine"."""
    if hasattr(model, "describe"):
        return model.describe()
    return f"model {Path(str(getattr(model, 'path', None) or 'mm-model')).name} on this machine"


def _render(thinking: str, answer: str, think_s: float | None, result: Any = None) -> list:
    """The messages of one answer so far: thinking (open while it streams), answer, stats line."""
    import gradio as gr

    out = []
    if thinking:
        meta = {"title": "Thinking", "status": "pending" if think_s is None else "done"}
        if think_s is not None:
            meta["duration"] = round(think_s, 2)
        out.append(gr.ChatMessage(content=thinking, metadata=meta))
    if answer.strip():
        out.append(gr.ChatMessage(content=answer))
    elif result is not None:  # never a blank bubble, as if it were the answer
        out.append(gr.ChatMessage(content=f"{NOTICE}{result.notice}"))
    if result is not None:
        encoded = result.usage.get("media_items_encoded")  # our model and server count it; vLLM does not
        reuse = (
            ""
            if encoded is None
            else f"media items encoded now: {encoded} (media seen earlier are reused) · "
        )
        detail = (
            f"finish reason: {result.finish_reason} · {reuse}total {result.timings.get('total_s', 0):.2f} s"
        )
        out.append(
            gr.ChatMessage(content=detail, metadata={"title": stats_line(result.usage, result.timings)})
        )
    return out


def default_mode(model: Any) -> str:
    """What "Default" means for `model`: its own thinking default, or the endpoint's."""
    default = getattr(model, "default_thinking", None)
    if default is None:
        return "the endpoint's own (K2.5 served by vLLM: thinking)"
    return "thinking" if default else "instant"


def build_demo(model: Any, limits: Limits | None = None, *, title: str = "mm-model") -> Any:
    """The Gradio app around a loaded `mm_model.Model` or `mm_model.RemoteModel` (not launched)."""
    import gradio as gr

    limits = limits or Limits()
    media_cfg = media_config(model)
    # An endpoint samples media itself: the side panel's costs are K2.5's defaults, said to be estimates.
    estimate = "" if getattr(model, "config", None) is not None else (
        f"\n\n_Estimated for K2.5's sampling ({media_cfg.sample_fps:g} fps, {media_cfg.temporal_merge_kernel_size}-frame "
        f"chunks): {where(model)} samples the media itself._"
    )  # fmt: skip
    lock = threading.Lock()  # the UI submit event and the /chat API event are separate queues
    # the Media controls start at the model's own settings (K2.5's where it has none, as a remote model)
    default_fps = getattr(getattr(model, "processor", None), "video_fps", None) or NATIVE_FPS

    def respond(message, history, mode, budget_kind, budget_tokens, max_new_tokens, temperature,
                fps=None, max_frames=0, max_patches=None) -> Iterator:  # fmt: skip
        try:
            media = chat_options(fps, max_frames, max_patches, media_cfg, default_fps)
            messages = to_messages(history, message, limits)
            # "Default" leaves it to the model (K2.5 and its endpoints: thinking; the bundled model: instant)
            thinking = {"Thinking": True, "Instant": False}.get(mode)
            thinks = (
                thinking if thinking is not None else getattr(model, "default_thinking", None) is not False
            )
            budget = None
            if thinks and budget_kind == "auto":
                budget = "auto"
            elif thinks and budget_kind == "number":
                budget = int(budget_tokens)
            with lock:
                stream = model.chat(
                    messages, max_new_tokens=int(max_new_tokens), thinking=thinking, budget=budget,
                    temperature=float(temperature), stream=True, **media,
                )  # fmt: skip
                text, start, think_s = {"thinking": "", "answer": ""}, time.perf_counter(), None
                for piece in stream:
                    if piece.kind not in text:  # tool calls: the demo declares no tools
                        continue
                    text[piece.kind] += piece
                    if piece.kind == "answer" and think_s is None:
                        think_s = time.perf_counter() - start
                    yield _render(text["thinking"], text["answer"], think_s)
            think_s = think_s if think_s is not None else time.perf_counter() - start
            yield _render(text["thinking"], text["answer"], think_s, result=stream.result)
        except EndpointError as exc:  # the endpoint is failing: its URL is no secret (it is shown above)
            yield [{"role": "assistant", "content": ERROR + str(exc)}]
        except InputError as exc:  # bad file, too long, over a limit: say so in the chat, keep serving
            yield [
                {"role": "assistant", "content": ERROR + re.sub(r"/[^\s'\"]*/", "", str(exc))}
            ]  # no server paths
        except Exception as exc:  # a bug, not the user's input: log it, say so, keep serving
            log.exception("demo: the answer failed")
            yield [
                {
                    "role": "assistant",
                    "content": f"{ERROR}internal error ({type(exc).__name__}); see the server log",
                }
            ]

    def preview(value: dict | None, fps=None, max_frames=0, max_patches=None) -> str:
        paths = [p for f in (value or {}).get("files") or [] if (p := file_path(f))]
        try:
            options = chat_options(fps, max_frames, max_patches, media_cfg, default_fps)
        except InputError as exc:
            return f"Media settings: {exc}"
        return describe(paths, media_cfg, limits, options) + (estimate if paths else "")

    with gr.Blocks(title=f"{title} demo", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            f"### {title}: ask about screenshots, images and videos\n"
            f"Paste or drop a screenshot, upload images or a video (up to {limits.max_upload_mb:g} MB, "
            f"videos up to {limits.max_video_seconds:g} s), then ask. One answer at a time.\n\n"
            f"Answers come from **{where(model)}**.",
            elem_id="model-info",
        )
        with gr.Row():
            with gr.Column(scale=1, min_width=240):
                mode = gr.Radio(
                    ["Default", "Instant", "Thinking"], value="Default", label="Mode",
                    info=f"Default: {default_mode(model)}",
                )  # fmt: skip
                budget_kind = gr.Radio(
                    ["none", "number", "auto"], value="none", label="Thinking budget (Toggle)",
                    info="Thinking mode only: unlimited, at most N tokens, or calibrated",
                )  # fmt: skip
                budget_tokens = gr.Slider(
                    16, 4096, value=128, step=16, label="Budget (thinking tokens)", elem_id="budget-tokens"
                )
                max_new_tokens = gr.Slider(
                    1, 4096, value=256, step=1, label="Max new tokens", elem_id="max-new-tokens"
                )
                temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature (0 = greedy)")
                with gr.Accordion("Media", open=False):
                    fps = gr.Slider(0.25, 8, value=default_fps, step=0.25, label="Video frames per second",
                                    elem_id="media-fps")  # fmt: skip
                    max_frames = gr.Number(0, precision=0, minimum=0, maximum=MAX_NUM_FRAMES, elem_id="media-max-frames",
                                           label="Max video frames (0: no cap; spread over the whole video)")  # fmt: skip
                    max_patches = gr.Slider(
                        MIN_PATCHES, MAX_IMAGE_PATCHES, value=media_cfg.in_patch_limit, step=4, elem_id="media-max-patches",
                        label="Image max patches (video frames: at most this, and at most 4096)",
                    )  # fmt: skip
                sampling = gr.Markdown(describe([], media_cfg, limits), elem_id="media-preview")
            with gr.Column(scale=3):
                textbox = gr.MultimodalTextbox(
                    file_types=["image", "video", ".txt"], file_count="multiple", sources=["upload"],
                    placeholder="Ask about a screenshot, image or video (paste, drop or upload)",
                    max_plain_text_length=20000, elem_id="chat-input",
                )  # fmt: skip
                gr.ChatInterface(
                    respond, multimodal=True, textbox=textbox, api_name="chat", concurrency_limit=1,
                    chatbot=gr.Chatbot(height=520, label="Chat", elem_id="chatbot", buttons=["copy"]),
                    additional_inputs=[mode, budget_kind, budget_tokens, max_new_tokens, temperature,
                                       fps, max_frames, max_patches],
                    examples=[[{"text": e["question"], "files": [str(ASSETS / e["file"])]}] for e in EXAMPLES],
                    example_labels=[e["question"] for e in EXAMPLES], run_examples_on_click=True,
                )  # fmt: skip
        textbox.change(preview, textbox, sampling, queue=False, api_visibility="private")
        for control in (fps, max_frames, max_patches):
            control.change(preview, [textbox, fps, max_frames, max_patches], sampling, queue=False,
                           api_visibility="private")  # fmt: skip
    demo.queue(max_size=32, default_concurrency_limit=1)
    return demo


def launch(demo: Any, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           limits: Limits | None = None, **kwargs: Any) -> tuple[Any, str, str]:  # fmt: skip
    """Launch `demo`, serving only uploads and the bundled examples; returns (app, local_url, share_url)."""
    limits = limits or Limits()
    return demo.launch(
        server_name=host, server_port=port, share=share, allowed_paths=[str(ASSETS)],
        max_file_size=int(limits.max_upload_mb * 2**20), footer_links=["api"], **kwargs,
    )  # fmt: skip


def add_demo_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`mm-model demo [SOURCE] --host --port --share --max-upload-mb --max-video-seconds`."""
    p = subparsers.add_parser("demo", help="Gradio demo for screenshots and videos (localhost by default)")
    p.add_argument("source", nargs="?", default="tiny",
                   help="bundled model name, checkpoint directory, or endpoint URL (http://HOST:PORT/v1)")  # fmt: skip
    p.add_argument(
        "--model", default=None, help="endpoint URL only: the served model id (default: its first)"
    )
    p.add_argument("--api-key", default=None, help="endpoint URL only: API key (default $OPENAI_API_KEY)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it on the network)")
    p.add_argument("--port", type=int, default=None, help="port (default: 7860 or the next free one)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--max-upload-mb", type=float, default=Limits.max_upload_mb, help="largest file accepted")
    p.add_argument("--max-video-seconds", type=float, default=Limits.max_video_seconds, help="longest video")
    add_compile_arg(p, "on")
    p.set_defaults(func=run_demo)
    return p


def run_demo(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("mm-model demo needs Gradio: pip install 'mm-model[demo]'", file=sys.stderr)
        return 2
    import mm_model

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding to {args.host}: anyone who can reach this address can use the demo")
    from mm_model.lm.compiled import compile_requested

    # A demo answers many questions: the compile (on unless --compile off or MM_MODEL_COMPILE=0) is
    # paid here, before the page opens, and not by the first question.
    compile = compile_requested(compile_choice(args), default=True)  # an endpoint URL ignores it
    model = mm_model.load(args.source, model=args.model, api_key=args.api_key, compile=compile)
    limits = Limits(args.max_upload_mb, args.max_video_seconds)
    name = getattr(model, "name", None) or Path(str(args.source)).name
    if model.compiled:
        print("demo: compiling the decode step (once per process) ...", flush=True)
        print(f"demo: decode step ready in {model.warm_up():.0f} s")
    print(f"demo: answers come from {where(model)}")
    launch(build_demo(model, limits, title=f"mm-model · {name}"), host=args.host, port=args.port,
           share=args.share, limits=limits)  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.app")
    add_demo_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["demo", *(argv if argv is not None else sys.argv[1:])])
    try:
        return args.func(args)
    except InputError as exc:
        print(f"mm-model: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
