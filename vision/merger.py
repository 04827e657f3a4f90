"""Temporal mean pooling + 2x2 regrouping (pure, from precomputed indices) and the projector into the LM.

Pooling happens after the tower's final LayerNorm and before the projector: a chunk of t frames
yields as many merged tokens as one frame, (h/2)*(w/2), each the concatenation of its 2x2 window
(top-left, top-right, bottom-left, bottom-right) averaged over the t frames.
"""

from __future__ import annotations

from torch import Tensor, nn

from compute.dtypes import layer_norm, linear
from vision.config import VisionConfig
from vision.packing import PackedVision


def temporal_merge(features: Tensor, packed: PackedVision, merge_area: int = 4) -> Tensor:
    """(N, C) per-patch features -> (T, merge_area, C) merged tokens, frames averaged.

    Accumulates in fp32 so a bf16 mean over 4 frames rounds once, like `Tensor.mean`.
    """
    total = sum(packed.tokens) * merge_area
    weighted = features.float() * packed.merge_weight.to(features.device)[:, None]
    pooled = weighted.new_zeros(total, features.shape[1]).index_add_(0, packed.merge_dst, weighted)
    return pooled.to(features.dtype).view(-1, merge_area, features.shape[1])


class Projector(nn.Module):
    """`mm_projector`: LayerNorm per sub-patch, concat 2x2 -> Linear -> GELU (exact) -> Linear to the LM width."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        wide = d * cfg.merge_area
        self.pre_norm = nn.LayerNorm(d, eps=cfg.projector_ln_eps)
        # proj.0 / proj.1 / proj.2 mirrors the checkpoint's `mm_projector.proj.{0,2}` keys.
        self.proj = nn.Sequential(nn.Linear(wide, wide), nn.GELU(), nn.Linear(wide, cfg.text_hidden_size))

    def forward(self, merged: Tensor) -> Tensor:
        """(T, merge_area, C) -> (T, text_hidden_size)."""
        x = layer_norm(merged, self.pre_norm).flatten(1)
        return linear(linear(x, self.proj[0], activation="gelu"), self.proj[2])

    def init_weights(self, std: float = 0.02) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
        nn.init.ones_(self.pre_norm.weight)
        nn.init.zeros_(self.pre_norm.bias)
