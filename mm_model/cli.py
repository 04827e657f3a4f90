"""The `mm-model` command line.

mm-model chat "prompt" [SOURCE|URL] [--image PATH] [--video PATH]  stream an answer (URL: an endpoint)
mm-model info SOURCE|k25|tiny [--image PATH] [--video PATH]      config, parameters, token costs
mm-model convert SRC DST [--to released|released-int4|transformers]  checkpoint layouts
mm-model encode [IMAGE ...]                                      MoonViT-3D timing on images
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from vision.errors import InputError

if TYPE_CHECKING:
    from mm_model.media_options import MediaOptions


def example_screenshot() -> Path:
    return Path(str(resources.files("mm_model") / "assets" / "example_screenshot.png"))


def _dtype(name: str | None):
    import torch

    return {None: None, "fp32": torch.float32, "bf16": torch.bfloat16}[name]


def usage_line(u: dict[str, int], t: dict[str, float]) -> str:
    """ "812 prompt tokens (640 vision), 0 thinking, 21 answer; first token 0.41 s, 38.2 tokens/s", with
    only what is known (an endpoint may not report vision or thinking tokens)."""
    counts = []
    if "prompt_tokens" in u:
        vision = f" ({u['vision_tokens']} vision)" if "vision_tokens" in u else ""
        counts.append(f"{u['prompt_tokens']} prompt tokens{vision}")
    if "thinking_tokens" in u:
        counts.append(f"{u['thinking_tokens']} thinking")
    if "answer_tokens" in u:
        counts.append(f"{u['answer_tokens']} answer")
    elif "completion_tokens" in u:
        counts.append(f"{u['completion_tokens']} completion tokens")
    times = []
    if "time_to_first_token_s" in t:
        times.append(f"first token {t['time_to_first_token_s']:.2f} s")
    if "tokens_per_s" in t:
        times.append(f"{t['tokens_per_s']:.1f} tokens/s")
    return "; ".join(x for x in (", ".join(counts), ", ".join(times)) if x) or "no usage reported"


def _cmd_chat(args: argparse.Namespace) -> int:
    import mm_model
    from mm_model.remote import is_url

    media_options(args)  # bad values fail before the model loads
    tools = _read_tools(args.tools) if args.tools else None
    if is_url(args.source):  # dtype is the endpoint's business
        model = mm_model.load(args.source, model=args.model, api_key=args.api_key)
    elif args.model or args.api_key:
        raise InputError("--model and --api-key are for an endpoint URL (http://HOST:PORT/v1) as SOURCE")
    else:
        model = mm_model.load(args.source, dtype=_dtype(args.dtype), compile=compile_choice(args))
    content: list[dict] = [{"type": "image", "image": p} for p in args.image]
    content += [{"type": "video", "video": p} for p in args.video]
    content.append({"type": "text", "text": args.prompt})
    stream = model.chat(
        [{"role": "user", "content": content}], max_new_tokens=args.max_new_tokens, thinking=args.thinking,
        budget=args.budget, temperature=args.temperature, seed=args.seed, stream=True,
        fps=args.fps, num_frames=args.num_frames, max_patches=args.max_patches, tools=tools,
    )  # fmt: skip
    kind, thought = None, False
    for piece in stream:
        if piece.kind == "tool_call":  # printed whole at the end, one JSON line per call
            continue
        if piece.kind != kind:
            kind = piece.kind
            if kind == "thinking":
                thought = True
                print("[thinking] ", end="", flush=True)
            elif thought:
                print("\n[answer] ", end="", flush=True)
        print(piece, end="", flush=True)
    for call in stream.result.tool_calls:
        print(f"\n[tool call] {json.dumps(call, ensure_ascii=False)}", end="", flush=True)
    if stream.result.notice:  # a blank line would read as if it were the answer
        print(f"({stream.result.notice})", end="", flush=True)
    print(f"\n-- {usage_line(stream.result.usage, stream.result.timings)}", file=sys.stderr)
    return 0


def _read_tools(path: str) -> list:
    """--tools FILE: an OpenAI tools list in JSON (checked by `mm_model.tools.check_tools`)."""
    from mm_model.tools import check_tools

    try:
        tools = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"--tools {path!r}: cannot read a JSON tools list ({exc})") from None
    return check_tools(tools)


def add_media_args(p: argparse.ArgumentParser) -> None:
    """--fps, --num-frames, --max-patches (`mm_model.media_options`; checked by `media_options`)."""
    p.add_argument(
        "--fps", type=float, default=None, help="video frames sampled per second (default: the model's, 2)"
    )
    p.add_argument("--num-frames", type=int, default=None,
                   help="cap on frames kept per video, spread over the whole clip (default: no cap)")  # fmt: skip
    p.add_argument("--max-patches", type=int, default=None,
                   help="patch budget of an image (and, at most 4096, of each video frame); 4..16384")  # fmt: skip


def add_compile_arg(p: argparse.ArgumentParser, default: str) -> None:
    """--compile on|off: decode with the step compiled by torch.compile (`mm_model.lm.compiled`)."""
    p.add_argument("--compile", choices=["on", "off"], default=None,
                   help=f"local models: decode with the compiled step (default: $MM_MODEL_COMPILE, else {default}; "
                        "the compile takes tens of seconds once per process)")  # fmt: skip


def compile_choice(args: argparse.Namespace) -> bool | None:
    """--compile as `load`'s `compile` (None: not given)."""
    return None if args.compile is None else args.compile == "on"


def media_options(args: argparse.Namespace) -> MediaOptions:
    """The checked --fps / --num-frames / --max-patches (InputError names the flag)."""
    from mm_model.media_options import MediaOptions

    return MediaOptions.checked(args.fps, args.num_frames, args.max_patches,
                                names={"fps": "--fps", "num_frames": "--num-frames", "max_patches": "--max-patches"})  # fmt: skip


def _cmd_info(args: argparse.Namespace) -> int:
    from mm_model.api import resolve_source
    from mm_model.config import ModelConfig
    from mm_model.lm.model import count_parameters
    from vision.preprocess import load_image, num_tokens

    if args.source in ("k25", "tiny-random"):
        cfg = ModelConfig.k25() if args.source == "k25" else ModelConfig.tiny()
        where = f"preset {args.source}"
    else:
        path = resolve_source(args.source)
        cfg, where = ModelConfig.from_dir(path), str(path)
    v, t = cfg.vision, cfg.text
    from vision.model import MoonViT3d

    vision_params = sum(p.numel() for p in MoonViT3d.build(v, device="meta").parameters())
    total, active = count_parameters(t)
    print(f"model: {where}")
    print(f"  vision: MoonViT-3D {v.num_hidden_layers} layers x {v.hidden_size} ({v.num_attention_heads} heads), "
          f"patch {v.patch_size}, merge {v.merge_kernel_size}, tower + projector {vision_params:,} parameters")  # fmt: skip
    print(f"  language: {t.num_hidden_layers} layers x {t.hidden_size}, {t.n_routed_experts} experts top-"
          f"{t.num_experts_per_tok} + {t.n_shared_experts} shared, MLA kv_lora {t.kv_lora_rank}, "
          f"context {t.max_position_embeddings:,}; {total:,} parameters, {active:,} active per token")  # fmt: skip
    _print_footprint(args.source, cfg, None if args.source in ("k25", "tiny-random") else path)
    m = cfg.media
    print(f"  media: images <= {m.in_patch_limit} patches, video frames <= {m.in_patch_limit_each_frame} patches, "
          f"{m.sample_fps} fps, {m.temporal_merge_kernel_size}-frame chunks")  # fmt: skip
    for path in args.image:
        image = load_image(path)
        print(
            f"  image {path}: {image.width}x{image.height} -> {num_tokens(image.height, image.width, m)} LM tokens"
        )
    for path in args.video:
        from video.chunks import iter_chunks

        chunks = list(iter_chunks(path, fps=m.sample_fps, cfg=m))
        tokens = sum(c.num_tokens for c in chunks)
        print(f"  video {path}: {sum(c.num_frames for c in chunks)} sampled frames in {len(chunks)} chunks "
              f"(first at {chunks[0].timestamp_text}, last at {chunks[-1].timestamp_text}) -> {tokens} LM tokens")  # fmt: skip
    return 0


def _print_footprint(source: str, cfg, path: Path | None) -> None:
    """Which tensors are INT4 and the bytes in memory: of the directory's checkpoint, or for the
    k25 preset the released checkpoint's, computed from the config."""
    from mm_model.footprint import checkpoint_footprint, gib, release_footprint

    if path is None and source != "k25":
        return
    f = release_footprint(cfg) if path is None else checkpoint_footprint(path)
    what = "released INT4 checkpoint (computed from the config)" if path is None else "checkpoint"
    if f.int4_tensors:
        print(f"  weights, {what}: routed experts INT4 ({f.int4_tensors:,} weight_packed/scale/shape "
              f"tensors: packed {gib(f.int4_packed_bytes)} + scales {gib(f.int4_scale_bytes)}), everything "
              f"else {gib(f.other_bytes)}; total {gib(f.total_bytes)}")  # fmt: skip
        print(f"  INT4 tensors: {', '.join(f.int4_names)} (packed, scale, shape)")
        print(f"  in memory, bf16 elsewhere: {gib(f.resident_bytes())} (experts dequantised per use); "
              f"{gib(f.resident_bytes(cpu_kernel=True))} in the CPU 4-bit kernel layout (a zero per scale)")  # fmt: skip
    else:
        print(f"  weights, {what}: no INT4 tensors; {f.other_tensors:,} tensors, {gib(f.other_bytes)} as "
              f"stored, {gib(f.resident_bytes())} in bf16")  # fmt: skip


def _cmd_convert(args: argparse.Namespace) -> int:
    import torch

    from mm_model.checkpoint import load_model, save_model
    from mm_model.lm.int4_experts import int4_experts

    src, dst = Path(args.src), Path(args.dst)
    # released-int4 keeps everything but the routed experts in bf16, as the release does.
    default = torch.bfloat16 if args.to == "released-int4" else torch.float32
    # released-int4 quantises the experts as they are read: memory never holds them wider.
    int4 = args.to == "released-int4"
    model = load_model(src, dtype=_dtype(args.dtype) or default, int4_kernel=False, quantize_experts=int4)
    tokenizer_dir = src
    if args.to in ("released", "released-int4"):
        save_model(model, dst, max_shard_bytes=args.shard_mb * 2**20, tokenizer_dir=tokenizer_dir)
    elif int4_experts(model.language_model):
        raise InputError(f"{src} has INT4 experts: convert it --to released or released-int4")
    else:
        try:
            from transformers import Kimi_K25ForConditionalGeneration
        except ImportError as exc:
            raise InputError(
                "--to transformers needs the transformers package (pip install mm-model[test])"
            ) from exc
        with tempfile.TemporaryDirectory() as tmp:
            save_model(model, tmp)
            hf = Kimi_K25ForConditionalGeneration.from_pretrained(tmp, dtype=next(model.parameters()).dtype)
            hf.save_pretrained(dst, max_shard_size=f"{args.shard_mb}MB")
        for name in ("tokenizer.json", "tiktoken.model", "tokenizer_config.json"):
            if (src / name).exists():
                (dst / name).write_bytes((src / name).read_bytes())
    print(f"wrote {dst} ({args.to} layout)")
    return 0


def _cmd_encode(args: argparse.Namespace) -> int:
    import torch

    from vision.config import MediaConfig, VisionConfig
    from vision.model import MoonViT3d
    from vision.packing import pack, patchify
    from vision.preprocess import image_pixels

    if args.threads:
        torch.set_num_threads(args.threads)
    sources = args.images or [example_screenshot()]
    media = MediaConfig()
    cfg = getattr(VisionConfig, args.preset)(**({"num_hidden_layers": args.layers} if args.layers else {}))
    start = time.perf_counter()
    items = [patchify(image_pixels(src, media), cfg.patch_size) for src in sources]
    packed = pack(items, cfg)
    prep = time.perf_counter() - start

    dtype = _dtype(args.dtype)
    torch.manual_seed(0)
    model = MoonViT3d.build(cfg, dtype=dtype).eval()
    start = time.perf_counter()
    with torch.inference_mode():
        embeddings = model(packed.to(dtype=dtype))
    encode = time.perf_counter() - start

    print(
        f"MoonViT-3D ({args.preset} widths, {cfg.num_hidden_layers} layers, random weights), {args.dtype} weights"
    )
    for src, (_, grid), emb in zip(sources, items, embeddings):
        print(f"  {Path(str(src)).name}: grid t={grid[0]} h={grid[1]} w={grid[2]} -> {grid[0] * grid[1] * grid[2]} "
              f"patches -> {emb.shape[0]} LM tokens of width {emb.shape[1]}")  # fmt: skip
    n = packed.patches.shape[0]
    print(f"preprocess {prep * 1000:.0f} ms; encode {encode:.2f} s = {n / encode:,.0f} patches/s")
    return 0


# Commands whose modules pull in optional extras (FastAPI, Gradio, matplotlib): imported only when used.
LAZY_COMMANDS = {
    "serve": ("mm_model.server", "add_serve_command", "OpenAI-compatible chat-completions server", "server"),
    "demo": ("demo.app", "add_demo_command", "Gradio demo for screenshots and videos", "demo"),
    "bench": ("benchmarks.video_bench", "add_bench_command", "benchmarks: bench video ...", "bench"),
}


def _add_lazy(sub: argparse._SubParsersAction, name: str, wanted: str | None) -> None:
    module_name, adder, help_text, extra = LAZY_COMMANDS[name]
    if name != wanted:
        sub.add_parser(name, help=help_text)
        return
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(
            f"mm-model {name} needs the '{extra}' extra: pip install 'mm-model[{extra}]' ({exc})"
        ) from exc
    getattr(module, adder)(sub)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mm-model", description="Kimi K2.5-style multimodal models")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in LAZY_COMMANDS:
        _add_lazy(sub, name, command)

    chat = sub.add_parser("chat", help="chat about images and videos (streams the answer)")
    chat.add_argument("prompt")
    chat.add_argument("source", nargs="?", default="tiny",
                      help="bundled model name, checkpoint directory, or endpoint URL (http://HOST:PORT/v1)")  # fmt: skip
    chat.add_argument("--image", action="append", default=[], help="image file (repeatable)")
    chat.add_argument("--video", action="append", default=[], help="video file (repeatable)")
    chat.add_argument("--thinking", action=argparse.BooleanOptionalAction, default=None,
                      help="think before answering, or not (default: the model's own: on for K2.5, off for the bundled model)")  # fmt: skip
    chat.add_argument("--budget", default=None, help="thinking token budget: a number or 'auto'")
    chat.add_argument("--max-new-tokens", type=int, default=256)
    chat.add_argument("--temperature", type=float, default=0.0)
    chat.add_argument("--seed", type=int, default=None)
    chat.add_argument("--dtype", choices=["fp32", "bf16"], default=None, help="local models only")
    chat.add_argument(
        "--model", default=None, help="endpoint URL only: the served model id (default: its first)"
    )
    chat.add_argument("--api-key", default=None, help="endpoint URL only: API key (default $OPENAI_API_KEY)")
    add_media_args(chat)
    add_compile_arg(chat, "off")
    chat.add_argument("--tools", default=None, metavar="FILE",
                      help="declare the tools of this JSON file (an OpenAI tools list); calls are printed as JSON")  # fmt: skip
    chat.set_defaults(func=_cmd_chat)

    info = sub.add_parser("info", help="config, parameter counts and token costs of media")
    info.add_argument(
        "source", nargs="?", default="tiny", help="bundled name, checkpoint dir, or preset k25 / tiny-random"
    )
    info.add_argument("--image", action="append", default=[])
    info.add_argument("--video", action="append", default=[])
    info.set_defaults(func=_cmd_info)

    conv = sub.add_parser("convert", help="rewrite a checkpoint in the released or the transformers layout")
    conv.add_argument("src")
    conv.add_argument("dst")
    conv.add_argument(
        "--to",
        choices=["released", "released-int4", "transformers"],
        default="released",
        help="released-int4: routed experts quantised to the release's INT4 (compressed-tensors)",
    )
    conv.add_argument("--dtype", choices=["fp32", "bf16"], default=None)
    conv.add_argument("--shard-mb", type=int, default=2048)
    conv.set_defaults(func=_cmd_convert)

    enc = sub.add_parser(
        "encode", help="encode images with a random MoonViT-3D tower and report token counts"
    )
    enc.add_argument("images", nargs="*", help="image files (default: the bundled example screenshot)")
    enc.add_argument("--preset", choices=["k25", "tiny"], default="k25")
    enc.add_argument("--layers", type=int, default=4, help="tower depth (k25 has 27; fewer runs faster)")
    enc.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    enc.add_argument("--threads", type=int, default=None)
    enc.set_defaults(func=_cmd_encode)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    if getattr(args, "budget", None) not in (None, "auto"):
        try:
            args.budget = int(args.budget)
        except ValueError:
            print(f"mm-model: --budget must be a number or 'auto', got {args.budget!r}", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except InputError as exc:
        print(f"mm-model: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
