"""The `mm-model` command line.

mm-model encode [IMAGE ...]   encode images through MoonViT-3D; print grids, LM tokens and timing
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

from vision.errors import InputError


def example_screenshot() -> Path:
    return Path(str(resources.files("mm_model") / "assets" / "example_screenshot.png"))


def _cmd_encode(args: argparse.Namespace) -> int:
    import torch

    from vision.config import MediaConfig, VisionConfig
    from vision.model import MoonViT3d
    from vision.packing import pack, patchify
    from vision.preprocess import image_pixels

    torch.set_num_threads(args.threads) if args.threads else None
    sources = args.images or [example_screenshot()]
    media = MediaConfig()
    cfg = getattr(VisionConfig, args.preset)(**({"num_hidden_layers": args.layers} if args.layers else {}))
    start = time.perf_counter()
    items = [patchify(image_pixels(src, media), cfg.patch_size) for src in sources]
    packed = pack(items, cfg)
    prep = time.perf_counter() - start

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    torch.manual_seed(0)
    model = MoonViT3d.build(cfg, dtype=dtype).eval()
    start = time.perf_counter()
    with torch.inference_mode():
        embeddings = model(packed.to(dtype=dtype))
    encode = time.perf_counter() - start

    print(
        f"MoonViT-3D ({args.preset} widths, {cfg.num_hidden_layers} layers, random weights: the bundled "
        f"trained model is not in this build yet), {args.dtype} weights"
    )
    for src, (_, grid), emb in zip(sources, items, embeddings):
        print(
            f"  {Path(str(src)).name}: grid t={grid[0]} h={grid[1]} w={grid[2]} -> {grid[0] * grid[1] * grid[2]} "
            f"patches -> {emb.shape[0]} LM tokens of width {emb.shape[1]}"
        )
    n = packed.patches.shape[0]
    print(f"preprocess {prep * 1000:.0f} ms; encode {encode:.2f} s = {n / encode:,.0f} patches/s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mm-model", description="Kimi K2.5-style multimodal models")
    sub = parser.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encode", help="encode images with the MoonViT-3D tower and report token counts")
    enc.add_argument("images", nargs="*", help="image files (default: the bundled example screenshot)")
    enc.add_argument("--preset", choices=["k25", "tiny"], default="k25")
    enc.add_argument("--layers", type=int, default=4, help="tower depth (k25 has 27; fewer runs faster)")
    enc.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    enc.add_argument("--threads", type=int, default=None)
    enc.set_defaults(func=_cmd_encode)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"mm-model: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
