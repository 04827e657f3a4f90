"""Pure index math of packing: table-driven against hand-computed cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vision.config import VisionConfig
from vision.packing import (
    attention_runs,
    bicubic_taps,
    cu_seqlens,
    frame_indices,
    merge_indices,
    merged_tokens,
    pack,
    patchify,
    position_taps,
    rope_positions,
)


@pytest.mark.parametrize(
    ("name", "grids", "expected_cu", "expected_tokens"),
    [
        ("one_image", [(1, 4, 6)], [0, 24], [6]),
        ("two_images_one_clip", [(1, 2, 2), (4, 2, 4), (1, 4, 2)], [0, 4, 36, 44], [1, 2, 2]),
        ("tail_chunk", [(4, 2, 2), (4, 2, 2), (3, 2, 2)], [0, 16, 32, 44], [1, 1, 1]),
    ],
)
def test_cu_seqlens_and_tokens(name, grids, expected_cu, expected_tokens):
    cu = cu_seqlens(grids)
    assert cu.dtype == torch.int32, name
    assert cu.tolist() == expected_cu, name
    assert merged_tokens(grids) == expected_tokens, name


def test_patchify_order_is_frame_row_column():
    t, h, w, p = 2, 3, 4, 14
    frames = torch.zeros(t, 3, h * p, w * p)
    for f in range(t):
        for r in range(h):
            for c in range(w):
                frames[f, :, r * p : (r + 1) * p, c * p : (c + 1) * p] = f * 100 + r * 10 + c
    patches, grid = patchify(frames, p)
    assert grid == (t, h, w)
    assert patches.shape == (t * h * w, 3, p, p)
    for f in range(t):
        for r in range(h):
            for c in range(w):
                assert (patches[f * h * w + r * w + c] == f * 100 + r * 10 + c).all()


def test_patchify_rejects_bad_shapes():
    with pytest.raises(ValueError, match="multiple of patch"):
        patchify(torch.zeros(1, 3, 30, 28))
    with pytest.raises(ValueError, match="3, H, W"):
        patchify(torch.zeros(1, 4, 28, 28))


def test_rope_positions_and_frame_index():
    grids = [(1, 2, 3), (2, 1, 2)]
    assert rope_positions(grids).tolist() == [
        [0, 0],
        [0, 1],
        [0, 2],
        [1, 0],
        [1, 1],
        [1, 2],  # image
        [0, 0],
        [0, 1],
        [0, 0],
        [0, 1],  # both frames of the chunk share positions
    ]
    assert frame_indices(grids).tolist() == [0] * 6 + [1, 1, 2, 2]


@pytest.mark.parametrize("sizes", [(8, 8), (4, 6), (12, 20), (3, 17), (1, 1), (64, 2)])
def test_bicubic_taps_match_interpolate(sizes):
    grid = torch.randn(1, 5, 8, 8)
    index, weight = position_taps([(1, *sizes)], (8, 8))
    table = grid[0].permute(1, 2, 0).reshape(64, 5)
    ours = (table[index] * weight[..., None]).sum(1)
    ref = (
        F.interpolate(grid, size=sizes, mode="bicubic", align_corners=False)[0]
        .permute(1, 2, 0)
        .reshape(-1, 5)
    )
    assert (ours - ref).abs().max() < 1e-5


def test_bicubic_identity_is_exact():
    index, weight = bicubic_taps(6, 6)
    assert weight.tolist() == [[0.0, 1.0, 0.0, 0.0]] * 6
    assert index[:, 1].tolist() == list(range(6))


def test_merge_order_and_temporal_mean():
    # One 2-frame 2x4 chunk: merged token m holds TL, TR, BL, BR of its window, averaged over frames.
    dst, weight = merge_indices([(2, 2, 4)])
    assert dst[:8].tolist() == [0, 1, 4, 5, 2, 3, 6, 7]
    assert dst[8:].tolist() == dst[:8].tolist()
    assert weight.tolist() == [0.5] * 16


def test_attention_runs():
    assert attention_runs([6, 6, 10, 4, 4, 4]) == ((0, 2, 6), (2, 1, 10), (3, 3, 4))
    assert attention_runs([5]) == ((0, 1, 5),)


def test_pack_validates_items():
    cfg = VisionConfig.tiny()
    with pytest.raises(ValueError, match="patches for grid"):
        pack([(torch.zeros(5, 3, 14, 14), (1, 2, 2))], cfg)
    with pytest.raises(ValueError, match="at most 4"):
        pack([(torch.zeros(20, 3, 14, 14), (5, 2, 2))], cfg)
    with pytest.raises(ValueError, match="merge kernel"):
        pack([(torch.zeros(3, 3, 14, 14), (1, 1, 3))], cfg)
    with pytest.raises(ValueError, match="at least one"):
        pack([], cfg)


def test_packed_to_moves_pixels_only_dtype():
    cfg = VisionConfig.tiny()
    packed = pack([patchify(torch.randn(1, 3, 28, 56))], cfg).to(dtype=torch.bfloat16)
    assert packed.patches.dtype == torch.bfloat16
    assert packed.cu_seqlens.dtype == torch.int32 and packed.merge_dst.dtype == torch.int64
