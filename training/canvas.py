"""Canvas twins: the same picture on a larger canvas of a seen size, and which tokens show the same cells.

The tower's tokens change with the canvas around them: a shape scene padded with its own background
from 112 to 224 px keeps 0.94 cosine similarity when merely shifted within one canvas, but 0.44 when
the canvas grows (the 4-layer ViT's full attention spreads over more background), and counts fall from
90% to 25% (docs/bench/canvas/). `--canvas-weight` asks the tower for the same tokens over the cells a
picture and its twin share; the twin stays within the seen sizes, so the unseen split stays unseen.

A twin is the picture edge-padded (its border pixels repeated): a shape scene's uniform background, a
window's title bar and body grown wider and taller. Offsets are whole merged cells (28 px), so each
full cell of the picture is one cell of the twin; a window is only grown right and down, so its title
bar stays on top.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from training.generators import images, screenshots

# family -> ((min, max) width, (min, max) height, most aspect): the generators' seen sizes
SEEN = {
    "image": (images.SEEN_SIDE, images.SEEN_SIDE, images.SEEN_ASPECT),
    "basics": (images.SEEN_SIDE, images.SEEN_SIDE, images.SEEN_ASPECT),
    "screenshot": (screenshots.SEEN_WIDTH, screenshots.SEEN_HEIGHT, float("inf")),
}


def twin_box(
    rng: random.Random,
    size: tuple[int, int],
    family: str,
    unit: int = 28,
    tries: int = 8,
    largest: bool = False,
) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) padding in px for a picture of `size` (w, h) of `family`: the padded
    size is a seen one (the largest seen canvas if `largest`), at least one merged cell larger, left and
    top whole cells (top 0 for a window); None where no seen size is larger."""
    if family not in SEEN:
        return None
    (_, max_w), (_, max_h), aspect = SEEN[family]
    w, h = size
    for _ in range(tries):
        if largest:
            grow_w, grow_h = max(0, max_w - w), max(0, max_h - h)
        else:
            grow_w, grow_h = rng.randint(0, max(0, max_w - w)), rng.randint(0, max(0, max_h - h))
        big_w, big_h = w + grow_w, h + grow_h
        if max(grow_w, grow_h) < unit or max(big_w, big_h) > aspect * min(big_w, big_h):
            continue
        left = unit * rng.randint(0, grow_w // unit)
        top = 0 if family == "screenshot" else unit * rng.randint(0, grow_h // unit)
        return left, top, grow_w - left, grow_h - top
    return None


def pad_edges(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """`image` padded by `box` (left, top, right, bottom) px, repeating its border pixels."""
    left, top, right, bottom = box
    pixels = np.asarray(image.convert("RGB"))
    return Image.fromarray(np.pad(pixels, ((top, bottom), (left, right), (0, 0)), mode="edge"))


def shared_cells(
    size: tuple[int, int], box: tuple[int, int, int, int], unit: int = 28
) -> tuple[Tensor, Tensor]:
    """Merged-token indices (row-major) of the picture's full cells, in the picture and in its twin:
    two (n,) int64 tensors. A partial cell (the processor pads a side up to a whole cell) is left out."""
    w, h = size
    left, top, right, _ = box
    cols, twin_cols = -(-w // unit), -(-(w + left + right) // unit)
    rows, cols_full = torch.meshgrid(torch.arange(h // unit), torch.arange(w // unit), indexing="ij")
    rows, cols_full = rows.flatten(), cols_full.flatten()
    here = rows * cols + cols_full
    there = (rows + top // unit) * twin_cols + cols_full + left // unit
    return here, there


def picture(messages: list[dict]) -> Image.Image | None:
    """The one image of a single-turn question, else None."""
    parts = [c for c in messages[0]["content"] if isinstance(c, dict) and c.get("type") == "image"]
    return parts[0]["image"] if len(messages) == 1 and len(parts) == 1 else None


def background_patches(pixels: Tensor, grids: Tensor) -> Tensor:
    """(N,) bool over packed patches `pixels` (N, 3, p, p) of items `grids` (M, 3): in each still image,
    the patches of one flat colour, the commonest flat colour of that image (a shape scene's canvas, a
    window's body); none in video chunks."""
    flat = pixels.flatten(2)
    flat = (flat.amax(-1) == flat.amin(-1)).all(-1)
    out = torch.zeros(len(pixels), dtype=torch.bool, device=pixels.device)
    start = 0
    for t, h, w in grids.tolist():
        idx = flat[start : start + t * h * w].nonzero()[:, 0] + start
        if t == 1 and len(idx):
            _, which, counts = torch.unique(
                pixels[idx, :, 0, 0], dim=0, return_inverse=True, return_counts=True
            )
            out[idx[which == counts.argmax()]] = True
        start += t * h * w
    return out


def background_attention(blocks: nn.ModuleList, inputs: dict[int, tuple]) -> Tensor | None:
    """The tower's mean attention mass from a still image's other patches onto its background ones
    (`background_patches`), over blocks, heads and queries; `inputs[i]` holds block i's call (x, rope,
    packed, ...) (`training.losses.call_inputs`). None where no image has both kinds of patch.

    Why: the tower put 43-69% of that attention on the background (a sink), so every extra background
    patch of a larger canvas took a share, the picture's tokens changed and counts fell; with the
    picture's own tokens put back, counts on larger canvases came back (docs/bench/canvas/)."""
    packed = inputs[0][2]
    background = background_patches(packed.patches, packed.grid_thws)
    masses = []
    for i, block in enumerate(blocks):
        x, rope, packed = inputs[i][:3]
        q, k, _ = block.qkv(x, rope)
        bounds = packed.cu_seqlens.tolist()
        for start, end in itertools.pairwise(bounds):
            bg = background[start:end]
            if not bg.any() or bg.all():
                continue
            logits = torch.einsum("nhd,mhd->hnm", q[start:end][~bg].float(), k[start:end].float())
            probs = (logits * block.head_dim**-0.5).softmax(-1)  # (H, queries, keys)
            masses.append(probs[..., bg].sum(-1).mean())
    return torch.stack(masses).mean() if masses else None
