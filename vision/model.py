"""MoonViT-3D as one module: tower + temporal merger + projector, packed items in, LM embeddings out."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor, nn

from compute.dtypes import compute_dtype
from vision.config import VisionConfig
from vision.encoder import VisionTower
from vision.merger import Projector, temporal_merge
from vision.packing import PackedVision


def embed_packed(
    tower: VisionTower,
    projector: Projector,
    packed: PackedVision,
    backend: str = "auto",
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Tower -> temporal merge -> projector: (sum of tokens, text_hidden_size) in the weights' dtype.

    Computed in `dtype` (default: `compute_dtype` of the weights on their device).
    """
    weight = projector.pre_norm.weight
    dtype = dtype or compute_dtype(weight.dtype, weight.device)
    features = tower(packed, backend, dtype)  # (N, C)
    merged = temporal_merge(features, packed, tower.cfg.merge_area)  # (T, 4, C)
    return projector(merged).to(weight.dtype)


class MoonViT3d(nn.Module):
    """`vision_tower` + `mm_projector`, named as in the released checkpoint."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision_tower = VisionTower(cfg)
        self.mm_projector = Projector(cfg)

    def embed(self, packed: PackedVision, backend: str = "auto", dtype: torch.dtype | None = None) -> Tensor:
        """All items' LM embeddings concatenated in pack order: (sum of tokens, text_hidden_size)."""
        return embed_packed(self.vision_tower, self.mm_projector, packed, backend, dtype)

    def forward(
        self, packed: PackedVision, backend: str = "auto", dtype: torch.dtype | None = None
    ) -> list[Tensor]:
        """Per-item LM embeddings: a list of ((h/2)*(w/2), text_hidden_size) tensors."""
        return list(self.embed(packed, backend, dtype).split(packed.tokens))

    def init_weights(self, std: float = 0.02) -> None:
        self.vision_tower.init_weights(std)
        self.mm_projector.init_weights(std)

    @classmethod
    def build(
        cls, cfg: VisionConfig, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> MoonViT3d:
        """A randomly initialised model on `device` (use "meta" for shapes and counts only)."""
        ctx = torch.device(device) if device is not None else nullcontext()
        with ctx:
            model = cls(cfg)
        if str(device) != "meta":
            with torch.no_grad():
                model.init_weights()
        return model.to(dtype=dtype) if dtype is not None else model
