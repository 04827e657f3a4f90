"""The vision benchmark's padded-batch path computes the same features as the packed encoder."""

from __future__ import annotations

import torch

from benchmarks.vision_speed import padded_embed, total_flops
from vision.config import VisionConfig
from vision.model import MoonViT3d
from vision.packing import pack


def test_padded_batch_equals_packed_on_valid_positions():
    cfg = VisionConfig.tiny()
    model = MoonViT3d.build(cfg).eval()
    grids = [(1, 4, 6), (1, 2, 2), (1, 6, 4)]
    packed = pack([(torch.randn(t * h * w, 3, 14, 14), (t, h, w)) for t, h, w in grids], cfg)
    with torch.no_grad():
        ours = model.vision_tower(packed)
        padded = padded_embed(model, packed).view(len(grids), max(packed.seqlens), -1)
    rows = torch.cat([padded[i, :n] for i, n in enumerate(packed.seqlens)])
    assert (rows - ours).abs().max() < 1e-5
    assert total_flops(packed, cfg) > 0
