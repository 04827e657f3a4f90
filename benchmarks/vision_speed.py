"""MoonViT-3D encode speed: ours vs `transformers`' Kimi K2.5 tower on the same random weights.

    python -m benchmarks.vision_speed            # k25 widths, 1 layer, four screenshot sizes (~12 min)
    python -m benchmarks.vision_speed --quick    # smaller images

Prints patches/s for both sides and their ratio, in fp32 and bf16 weights, the achieved GFLOP/s
against a matmul ceiling measured in the same run, and our packed encoder against a padded batch.
The last line is JSON (also saved to benchmarks/results/vision_speed.json).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from tqdm import tqdm

from benchmarks.common import best_time, machine, print_machine, print_table, write_json
from compute.dtypes import compute_dtype, layer_norm, linear
from vision.config import VisionConfig
from vision.encoder import tower_flops_per_patch
from vision.hf_layout import to_transformers
from vision.model import MoonViT3d
from vision.packing import PackedVision, pack, patchify
from vision.preprocess import navit_resize
from vision.rope import apply_rope, rope_angles

# (height, width) of common screens: laptop, tablet, old monitor, phone portrait. (Full HD is left out
# only to keep the bf16 reference, ~45 patches/s per layer on AVX2 CPUs, within minutes.)
SCREENSHOTS = [(720, 1280), (768, 1024), (600, 800), (844, 390)]
QUICK = [(360, 640), (448, 448), (844, 390)]


def make_pack(sizes: list[tuple[int, int]], cfg: VisionConfig) -> PackedVision:
    items = []
    for h, w in sizes:
        _, (ph, pw) = navit_resize(h, w)
        items.append(patchify(torch.rand(1, 3, ph, pw) * 2 - 1, cfg.patch_size))
    return pack(items, cfg)


def total_flops(packed: PackedVision, cfg: VisionConfig) -> float:
    tower = sum(n * tower_flops_per_patch(cfg, n) for n in packed.seqlens)
    wide = cfg.hidden_size * cfg.merge_area
    projector = sum(packed.tokens) * 2 * (wide * wide + wide * cfg.text_hidden_size)
    return tower + projector


def padded_embed(model: MoonViT3d, packed: PackedVision) -> torch.Tensor:
    """Our weights run as a padded batch (B, Lmax, C) with a key-padding mask: the layout packing avoids."""
    cfg = model.cfg
    tower = model.vision_tower
    w = tower.patch_embed.proj.weight
    dtype = compute_dtype(w.dtype, w.device)
    x = tower.patch_embed(packed, dtype)
    lengths = list(packed.seqlens)
    lmax, b = max(lengths), len(lengths)
    batch = x.new_zeros(b, lmax, cfg.hidden_size)
    pos = packed.rope_pos.new_zeros(b, lmax, 2)
    keep = torch.zeros(b, lmax, dtype=torch.bool)
    for i, (chunk, p) in enumerate(zip(x.split(lengths), packed.rope_pos.split(lengths))):
        batch[i, : len(chunk)], pos[i, : len(chunk)], keep[i, : len(chunk)] = chunk, p, True
    rotation = rope_angles(pos.view(-1, 2), cfg.head_dim, cfg.rope_theta)
    mask = keep[:, None, None, :]
    h = batch.view(b * lmax, -1)
    for block in tower.encoder.blocks:
        qkv = linear(layer_norm(h, block.norm0), block.wqkv).view(b * lmax, 3, cfg.num_attention_heads, -1)
        q, k, v = (apply_rope(t, rotation) if i < 2 else t for i, t in enumerate(qkv.unbind(1)))
        q, k, v = (t.view(b, lmax, cfg.num_attention_heads, -1).transpose(1, 2) for t in (q, k, v))
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(b * lmax, -1)
        h = h + linear(attn, block.wo)
        h = h + block.mlp(layer_norm(h, block.norm1))
    return layer_norm(h, tower.encoder.final_layernorm)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=None, help="tower depth (same on both sides)")
    parser.add_argument("--quick", action="store_true", help="small images, 1 layer")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; each side keeps its best")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    layers = args.layers or 1
    cfg = VisionConfig.k25(num_hidden_layers=layers)
    sizes = QUICK if args.quick else SCREENSHOTS
    packed = make_pack(sizes, cfg)
    n_patches = packed.patches.shape[0]
    flops = total_flops(packed, cfg)
    print(
        f"{len(sizes)} images {sizes}: {n_patches} patches, {sum(packed.tokens)} LM tokens, "
        f"k25 widths with {layers} layers, {args.threads} threads"
    )

    info = machine(ceilings=True)
    print_machine(info)
    ceilings = {
        "torch.float32": info["matmul_gflops"]["fp32"],
        "torch.bfloat16": info["matmul_gflops"]["bf16"],
    }
    base = MoonViT3d.build(cfg).eval()
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        model = base.to(dtype)
        data = packed.to(dtype=dtype)
        tower, projector = to_transformers(model)
        sides = {
            "ours": lambda m=model, d=data: m.embed(d),
            "reference": lambda t=tower, p=projector, d=data: p(
                t(d.patches, grid_thw=d.grid_thws).pooler_output
            ),
            "ours padded": lambda m=model, d=data: padded_embed(m, d),
        }
        # Interleave the sides round by round so that machine noise hits them alike; keep each best.
        best = dict.fromkeys(sides, float("inf"))
        with torch.inference_mode():
            for _ in tqdm(range(args.rounds), desc=f"vision_speed {dtype}", leave=False):
                for name, fn in sides.items():
                    best[name] = min(best[name], best_time(fn, repeats=1, warmup=0))
        for side, seconds in best.items():
            compute = dtype if side == "reference" else compute_dtype(dtype, "cpu")
            gflops = flops / seconds / 1e9
            rows.append(
                {
                    "weights": str(dtype).removeprefix("torch."),
                    "side": side,
                    "compute": str(compute).removeprefix("torch."),
                    "seconds": seconds,
                    "patches/s": n_patches / seconds,
                    "GFLOP/s": gflops,
                    "% of ceiling": 100 * gflops / ceilings[str(compute)],
                }
            )
    results = rows
    for dtype in ("float32", "bfloat16"):
        ours = next(r for r in rows if r["weights"] == dtype and r["side"] == "ours")
        for r in rows:
            if r["weights"] == dtype:
                r["ours / this"] = r["seconds"] / ours["seconds"] if r is not ours else 1.0
    print_table(
        rows, ["weights", "side", "compute", "seconds", "patches/s", "GFLOP/s", "% of ceiling", "ours / this"]
    )
    print_machine(info)
    speedup = {
        d: next(r["seconds"] for r in rows if r["weights"] == d and r["side"] == "reference")
        / next(r["seconds"] for r in rows if r["weights"] == d and r["side"] == "ours")
        for d in ("float32", "bfloat16")
    }
    print("speed-up over the reference: " + ", ".join(f"{d} {s:.2f}x" for d, s in speedup.items()))
    write_json(
        "vision_speed",
        {
            "images": sizes,
            "patches": n_patches,
            "layers": layers,
            "flops": flops,
            "matmul_ceiling_gflops": ceilings,
            "rows": results,
            "speedup_vs_reference": speedup,
            "machine": info,
        },
    )


if __name__ == "__main__":
    main()
