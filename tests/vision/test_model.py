"""MoonViT-3D tower + merger + projector: reference parity, packing isolation, sizes, dtypes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compute.dtypes import compute_dtype
from tests.vision.conftest import random_items
from vision.config import VisionConfig
from vision.model import MoonViT3d
from vision.packing import pack

# Mixed grids: images of several sizes, a full 4-frame chunk, tail chunks of 2 and 3 frames, a grid
# larger than the 8x8 position table (up-sampled) and one equal to it (identity).
MIXED = [(1, 4, 6), (4, 6, 4), (1, 8, 8), (2, 10, 12), (3, 2, 2), (1, 12, 16), (4, 4, 4)]


@pytest.mark.parity
def test_matches_transformers_on_mixed_pack(tiny_model, tiny_cfg):
    """Ours packs every item in one call; the reference cannot mix t=1 with t>1 (research §3.4), so it
    runs one call per t-group and we compare item by item. Tolerance: 1e-4 max abs, fp32."""
    pytest.importorskip("transformers")
    from vision.hf_layout import to_transformers

    items = random_items(MIXED)
    tower, projector = to_transformers(tiny_model)
    with torch.no_grad():
        ours = tiny_model(pack(items, tiny_cfg))
        for t in sorted({g[0] for _, g in items}):
            group = [i for i, (_, g) in enumerate(items) if g[0] == t]
            ref_pack = pack([items[i] for i in group], tiny_cfg)
            pooled = tower(ref_pack.patches, grid_thw=ref_pack.grid_thws).pooler_output
            ref = projector(pooled).squeeze(1).split(ref_pack.tokens)
            for i, r in zip(group, ref):
                diff = (ours[i] - r).abs().max().item()
                assert diff < 1e-4, f"item {i} grid {items[i][1]}: max diff {diff}"
                assert r.abs().mean() > 1e-2  # the comparison is not between near-zero outputs


@pytest.mark.parity
def test_tower_features_match_transformers_before_pooling(tiny_model, tiny_cfg):
    pytest.importorskip("transformers")
    from vision.hf_layout import to_transformers

    tower, _ = to_transformers(tiny_model)
    packed = pack(random_items([(4, 4, 6), (4, 2, 2)]), tiny_cfg)
    with torch.no_grad():
        diff = (
            tiny_model.vision_tower(packed)
            - tower(packed.patches, grid_thw=packed.grid_thws).last_hidden_state
        )
    assert diff.abs().max() < 1e-4


def test_backends_agree(tiny_model, packer):
    packed = packer(MIXED)
    with torch.no_grad():
        fast, slow = tiny_model.embed(packed, "sdpa"), tiny_model.embed(packed, "mask")
    assert (fast - slow).abs().max() < 1e-5


grid_strategy = st.tuples(
    st.integers(1, 4), st.integers(1, 5).map(lambda x: 2 * x), st.integers(1, 5).map(lambda x: 2 * x)
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grids=st.lists(grid_strategy, min_size=1, max_size=5), order_seed=st.integers(0, 1000))
def test_packing_isolation(tiny_model, tiny_cfg, grids, order_seed):
    """An item's output is the same (1e-5, fp32) alone or packed with any others in any order."""
    items = random_items(grids)
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(order_seed)).tolist()
    with torch.no_grad():
        packed_out = tiny_model(pack([items[i] for i in order], tiny_cfg))
        for pos, i in enumerate(order):
            alone = tiny_model(pack([items[i]], tiny_cfg))[0]
            diff = (packed_out[pos] - alone).abs().max().item()
            assert diff < 1e-5, f"item {i} {items[i][1]} at {pos}: {diff}"


def test_chunk_of_one_frame_is_an_image_but_frame_zero_of_a_clip_is_not(tiny_model, tiny_cfg):
    patches = torch.randn(16, 3, 14, 14)
    with torch.no_grad():
        single = tiny_model(pack([(patches, (1, 4, 4))], tiny_cfg))[0]
        clip = tiny_model(pack([(patches.repeat(2, 1, 1, 1), (2, 4, 4))], tiny_cfg))[0]
    # Two identical frames with the time embedding differ from the image (row 0 of the table is not zero).
    assert (single - clip).abs().max() > 1e-3


def test_temporal_order_matters(tiny_model, tiny_cfg):
    frames = torch.randn(4, 16, 3, 14, 14)
    with torch.no_grad():
        forward = tiny_model(pack([(frames.flatten(0, 1), (4, 4, 4))], tiny_cfg))[0]
        reverse = tiny_model(pack([(frames.flip(0).flatten(0, 1), (4, 4, 4))], tiny_cfg))[0]
    assert (forward - reverse).abs().max() > 1e-3


def test_k25_parameter_counts_on_meta():
    model = MoonViT3d.build(VisionConfig.k25(), device="meta")
    tower = sum(p.numel() for p in model.vision_tower.parameters())
    projector = sum(p.numel() for p in model.mm_projector.parameters())
    print(f"k25 tower {tower:,} projector {projector:,}")
    assert tower == 416_866_032  # transformers' Kimi_K25VisionModel on meta gives the same (research §6.3)
    assert projector == 54_277_888
    keys = set(model.state_dict())
    assert "vision_tower.encoder.blocks.26.wqkv.weight" in keys
    assert "mm_projector.proj.2.bias" in keys
    assert len([k for k in keys if k.startswith("vision_tower.")]) == 329


@pytest.mark.parametrize("native", [False, True], ids=["this-cpu", "native-bf16-path"])
def test_bf16_weights_close_to_fp32(tiny_model, packer, monkeypatch, native):
    """bf16 weights against fp32; `native` takes the native-bf16 CPU path on any CPU (bf16 compute,
    prepacked and fused linears, blocked attention on every item)."""
    if native:
        import compute.dtypes as dtypes
        import vision.attention as attention
        from compute import prepack

        monkeypatch.setattr(dtypes, "cpu_has_fast_bf16", lambda: True)
        monkeypatch.setattr(attention, "cpu_has_fast_bf16", lambda: True)
        monkeypatch.setattr(attention, "BLOCKED_MIN_LEN", 1)
        prepack._available.cache_clear()
    packed = packer([(1, 4, 6), (4, 4, 4)])
    with torch.no_grad():
        ref = tiny_model.embed(packed)
        low = tiny_model.to(torch.bfloat16).embed(packed.to(dtype=torch.bfloat16))
    assert low.dtype == torch.bfloat16
    rel = ((low.float() - ref).norm() / ref.norm()).item()
    assert rel < 2e-2, rel
    if native:
        # the packed path ran, where oneDNN has bf16 kernels (an AVX2-only CPU keeps the plain linears)
        assert hasattr(tiny_model.mm_projector.proj[0].weight, prepack._ATTR) == prepack._available()
        prepack._available.cache_clear()


def test_compute_dtype_policy(monkeypatch):
    import compute.dtypes as dtypes

    monkeypatch.setattr(dtypes, "cpu_has_fast_bf16", lambda: False)
    assert compute_dtype(torch.bfloat16, "cpu") == torch.float32
    assert compute_dtype(torch.float32, "cpu") == torch.float32
    assert compute_dtype(torch.bfloat16, "cuda") == torch.bfloat16
    monkeypatch.setattr(dtypes, "cpu_has_fast_bf16", lambda: True)
    assert compute_dtype(torch.bfloat16, "cpu") == torch.bfloat16


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_size": 30, "num_attention_heads": 4}, "not divisible"),
        ({"hidden_size": 40, "num_attention_heads": 4}, "multiple of 4"),
        ({"num_hidden_layers": 0}, "num_hidden_layers"),
        ({"merge_kernel_size": (2,)}, "merge_kernel_size"),
        ({"hidden_act": "relu"}, "hidden_act"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        VisionConfig.tiny(**overrides)


def test_config_reads_checkpoint_names():
    cfg = VisionConfig.from_dict(
        {
            "vt_hidden_size": 64,
            "vt_num_attention_heads": 4,
            "vt_num_hidden_layers": 3,
            "init_pos_emb_height": 8,
            "merge_kernel_size": [2, 2],
            "unknown": 1,
        }
    )
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.num_hidden_layers, cfg.pos_emb_height) == (
        64,
        4,
        3,
        8,
    )
    assert VisionConfig.from_dict(cfg.to_dict()) == cfg
