"""Pure index math from `grid_thws`: patchify, pack items, and every per-patch index the encoder needs.

An item is an image (t=1) or a video chunk (t<=4) with a (t, h, w) patch grid. Packing concatenates
all items' patches (frame-major, then row-major inside a frame) into one sequence without padding.
Everything that depends only on the grids is computed here, once, in Python; the encoder's
forward then runs over tensors without per-item `.tolist()` calls.

Shape legend: N patches in the pack, M items, T merged tokens in the pack, C channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from einops import rearrange
from torch import Tensor

from vision.config import VisionConfig

# Keys cubic convolution constant of PyTorch's bicubic (`upsample_bicubic2d`), which the reference uses.
_CUBIC_A = -0.75


def patchify(pixels: Tensor, patch_size: int = 14) -> tuple[Tensor, tuple[int, int, int]]:
    """(t, 3, H, W) frames -> patches (t*h*w, 3, p, p) in the reference order, and the grid (t, h, w)."""
    t, channels, height, width = pixels.shape
    if channels != 3:
        raise ValueError(f"patchify expects (t, 3, H, W) pixels, got shape {tuple(pixels.shape)}")
    if height % patch_size or width % patch_size:
        raise ValueError(f"frame size {height}x{width} is not a multiple of patch size {patch_size}")
    h, w = height // patch_size, width // patch_size
    patches = rearrange(pixels, "t c (h p1) (w p2) -> (t h w) c p1 p2", p1=patch_size, p2=patch_size)
    return patches, (t, h, w)


@dataclass(frozen=True)
class PackedVision:
    """A packed batch of vision items and the per-patch indices derived from their grids.

    Attributes:
        patches: (N, 3, p, p) pixels.
        grid_thws: (M, 3) int64 [t, h, w] in patches.
        cu_seqlens: (M+1,) int32 item boundaries in the patch sequence.
        rope_pos: (N, 2) int64 (row, column) of each patch inside its frame.
        pos_index, pos_weight: (N, 16) taps and weights resampling the learned position grid bicubically.
        frame_index: (N,) int64 row of the time table: 0 (no term) for t=1 items, f+1 for frame f otherwise.
        merge_dst, merge_weight: (N,) destination row in the (T*kh*kw) merged layout and 1/t pooling weight.
        seqlens: per-item patch counts; runs: (first item, count, length) of consecutive equal-length items.
        tokens: merged LM tokens per item, (h/kh)*(w/kw).
    """

    patches: Tensor
    grid_thws: Tensor
    cu_seqlens: Tensor
    rope_pos: Tensor
    pos_index: Tensor
    pos_weight: Tensor
    frame_index: Tensor
    merge_dst: Tensor
    merge_weight: Tensor
    seqlens: tuple[int, ...]
    runs: tuple[tuple[int, int, int], ...]
    tokens: tuple[int, ...]

    @property
    def num_items(self) -> int:
        return len(self.seqlens)

    @property
    def max_seqlen(self) -> int:
        return max(self.seqlens)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> PackedVision:
        """Move every tensor to `device`; `dtype` applies to the pixels only (indices keep theirs)."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                value = value.to(device=device, dtype=dtype if f.name == "patches" else None)
            moved[f.name] = value
        return replace(self, **moved)


def cu_seqlens(grid_thws: Tensor | Sequence[Sequence[int]]) -> Tensor:
    """(M+1,) int32 [0, cumsum(t*h*w)]: one attention segment per item, spanning all its frames."""
    sizes = [int(t) * int(h) * int(w) for t, h, w in _as_list(grid_thws)]
    out = torch.zeros(len(sizes) + 1, dtype=torch.int32)
    out[1:] = torch.tensor(sizes, dtype=torch.int64).cumsum(0).to(torch.int32)
    return out


def rope_positions(grid_thws: Tensor | Sequence[Sequence[int]]) -> Tensor:
    """(N, 2) int64 (row, column) of every patch; frames of a chunk share their positions."""
    parts = []
    for t, h, w in _as_list(grid_thws):
        rows = torch.arange(h).repeat_interleave(w)
        cols = torch.arange(w).repeat(h)
        parts.append(torch.stack([rows, cols], dim=-1).repeat(t, 1))
    return torch.cat(parts)


def frame_indices(grid_thws: Tensor | Sequence[Sequence[int]]) -> Tensor:
    """(N,) int64: 0 for every patch of a single-frame item, f+1 for frame f of a multi-frame chunk."""
    parts = [(torch.arange(t) + int(t > 1)).repeat_interleave(h * w) for t, h, w in _as_list(grid_thws)]
    return torch.cat(parts)


def bicubic_taps(in_size: int, out_size: int) -> tuple[Tensor, Tensor]:
    """1-D taps of `F.interpolate(mode="bicubic", align_corners=False)`: (out, 4) indices and weights.

    Half-pixel centres, Keys kernel a=-0.75, indices clamped at the borders, source coordinates not
    clamped (as PyTorch does for cubic). At in == out the weights are exactly (0, 1, 0, 0).
    """
    scale = in_size / out_size
    src = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale - 0.5
    base = torch.floor(src)
    frac = src - base
    a = _CUBIC_A

    def near(x: Tensor) -> Tensor:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: Tensor) -> Tensor:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = torch.stack([far(frac + 1), near(frac), near(1 - frac), far(2 - frac)], dim=-1)
    index = (base.long()[:, None] + torch.arange(-1, 3)).clamp(0, in_size - 1)
    return index, weights.float()


def position_taps(
    grid_thws: Tensor | Sequence[Sequence[int]], grid_hw: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """(N, 16) indices into the flattened (H0*W0) learned position grid and their bicubic weights.

    Equivalent to resampling the (H0, W0, C) grid to each item's (h, w) with bicubic interpolation,
    then repeating it over the item's frames.
    """
    h0, w0 = grid_hw
    cache: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
    idx_parts, w_parts = [], []
    for t, h, w in _as_list(grid_thws):
        if (h, w) not in cache:
            iy, wy = bicubic_taps(h0, h)  # (h, 4)
            ix, wx = bicubic_taps(w0, w)  # (w, 4)
            index = iy[:, None, :, None] * w0 + ix[None, :, None, :]  # (h, w, 4, 4)
            weight = wy[:, None, :, None] * wx[None, :, None, :]
            cache[(h, w)] = (index.reshape(h * w, 16), weight.reshape(h * w, 16))
        index, weight = cache[(h, w)]
        idx_parts.append(index.repeat(t, 1))
        w_parts.append(weight.repeat(t, 1))
    return torch.cat(idx_parts), torch.cat(w_parts)


def merge_indices(
    grid_thws: Tensor | Sequence[Sequence[int]], kernel: tuple[int, int] = (2, 2)
) -> tuple[Tensor, Tensor]:
    """Where each patch goes in the temporally pooled, 2x2-regrouped layout.

    Returns (N,) destination rows into a (T*kh*kw, C) buffer, where merged token m of the pack owns
    rows [m*kh*kw, (m+1)*kh*kw) holding its source patches top-left, top-right, bottom-left,
    bottom-right; and (N,) weights 1/t, so that summing the weighted rows is the temporal mean.
    """
    kh, kw = kernel
    dst_parts, w_parts = [], []
    offset = 0
    for t, h, w in _as_list(grid_thws):
        if h % kh or w % kw:
            raise ValueError(f"grid {h}x{w} is not divisible by the merge kernel {kh}x{kw}")
        rows = torch.arange(h)[:, None]
        cols = torch.arange(w)[None, :]
        merged = (rows // kh) * (w // kw) + cols // kw  # (h, w) merged token inside the item
        sub = (rows % kh) * kw + cols % kw  # position inside the 2x2 window
        dst = (offset + merged) * (kh * kw) + sub
        dst_parts.append(dst.reshape(-1).repeat(t))
        w_parts.append(torch.full((t * h * w,), 1.0 / t))
        offset += (h // kh) * (w // kw)
    return torch.cat(dst_parts), torch.cat(w_parts)


def attention_runs(seqlens: Sequence[int]) -> tuple[tuple[int, int, int], ...]:
    """Group consecutive items of equal length: (first item, count, length) per run.

    A run is one batched attention call over a free view, e.g. all chunks of one video.
    """
    runs: list[tuple[int, int, int]] = []
    for i, n in enumerate(seqlens):
        if runs and runs[-1][2] == n:
            first, count, _ = runs[-1]
            runs[-1] = (first, count + 1, n)
        else:
            runs.append((i, 1, n))
    return tuple(runs)


def pack(items: Sequence[tuple[Tensor, Sequence[int]]], cfg: VisionConfig) -> PackedVision:
    """Concatenate items `(patches (t*h*w, 3, p, p), (t, h, w))` into one `PackedVision`."""
    if not items:
        raise ValueError("pack needs at least one item")
    grids = []
    for i, (patches, grid) in enumerate(items):
        t, h, w = (int(g) for g in grid)
        if patches.shape[0] != t * h * w:
            raise ValueError(f"item {i}: {patches.shape[0]} patches for grid {(t, h, w)}")
        if not 1 <= t <= cfg.pos_emb_time:
            raise ValueError(f"item {i}: {t} frames, the time table holds at most {cfg.pos_emb_time}")
        grids.append((t, h, w))
    return pack_grids(torch.cat([p for p, _ in items]), grids, cfg)


def pack_grids(
    patches: Tensor, grid_thws: Tensor | Sequence[Sequence[int]], cfg: VisionConfig
) -> PackedVision:
    """Build a `PackedVision` from already concatenated patches (N, 3, p, p) and their (M, 3) grids."""
    grids = _as_list(grid_thws)
    seqlens = tuple(t * h * w for t, h, w in grids)
    assert sum(seqlens) == patches.shape[0], (sum(seqlens), patches.shape)
    pos_index, pos_weight = position_taps(grids, (cfg.pos_emb_height, cfg.pos_emb_width))
    merge_dst, merge_weight = merge_indices(grids, cfg.merge_kernel_size)
    kh, kw = cfg.merge_kernel_size
    return PackedVision(
        patches=patches,
        grid_thws=torch.tensor(grids, dtype=torch.int64).view(-1, 3),
        cu_seqlens=cu_seqlens(grids),
        rope_pos=rope_positions(grids),
        pos_index=pos_index,
        pos_weight=pos_weight,
        frame_index=frame_indices(grids),
        merge_dst=merge_dst,
        merge_weight=merge_weight,
        seqlens=seqlens,
        runs=attention_runs(seqlens),
        tokens=tuple((h // kh) * (w // kw) for _, h, w in grids),
    )


def _as_list(grid_thws: Tensor | Sequence[Sequence[int]]) -> list[tuple[int, int, int]]:
    rows = grid_thws.tolist() if isinstance(grid_thws, Tensor) else grid_thws
    return [(int(t), int(h), int(w)) for t, h, w in rows]


def merged_tokens(grid_thws: Tensor | Sequence[Sequence[int]], kernel: tuple[int, int] = (2, 2)) -> list[int]:
    """LM tokens per item: (h/kh)*(w/kw), independent of t (frames are pooled)."""
    return [(h // kernel[0]) * (w // kernel[1]) for _, h, w in _as_list(grid_thws)]


__all__ = [
    "PackedVision",
    "attention_runs",
    "bicubic_taps",
    "cu_seqlens",
    "frame_indices",
    "merge_indices",
    "merged_tokens",
    "pack",
    "pack_grids",
    "patchify",
    "position_taps",
    "rope_positions",
]
