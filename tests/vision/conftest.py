"""Tiny random MoonViT-3D models and packed inputs for the vision tests."""

from __future__ import annotations

import pytest
import torch

from vision.config import VisionConfig
from vision.model import MoonViT3d
from vision.packing import pack


def randomize(model: torch.nn.Module, std: float = 0.1) -> torch.nn.Module:
    """Weights far from identity (random norms and biases too), so that any mismatch shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if (
                name.endswith("norm0.weight")
                or name.endswith("norm1.weight")
                or "layernorm.weight" in name
                or name.endswith("pre_norm.weight")
            ):
                p.copy_(1 + std * torch.randn_like(p))
            elif "pos_emb" in name:
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(std * torch.randn_like(p))
    return model


def random_items(grids, patch_size: int = 14):
    return [(torch.randn(t * h * w, 3, patch_size, patch_size), (t, h, w)) for t, h, w in grids]


@pytest.fixture
def tiny_cfg() -> VisionConfig:
    return VisionConfig.tiny()


@pytest.fixture
def tiny_model(tiny_cfg) -> MoonViT3d:
    return randomize(MoonViT3d.build(tiny_cfg)).eval()


@pytest.fixture
def packer(tiny_cfg):
    return lambda grids: pack(random_items(grids), tiny_cfg)
