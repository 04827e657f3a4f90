"""The layer benchmark's byte counts against a hand count, its memory arithmetic, its random INT4
experts against their dequantised values, and a whole run on the tiny config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import lm_layer_speed
from benchmarks.int4_layer import moe_only, random_int4_matrices, random_moe_layer
from benchmarks.layer_bytes import (
    dense_layer_bytes,
    head_bytes,
    int4_matrix_bytes,
    layers_that_fit,
    moe_layer_bytes,
    projection,
)
from mm_model.footprint import resident_bytes
from mm_model.lm.config import LMConfig
from mm_model.lm.int4 import GROUP_SIZE
from mm_model.lm.int4_experts import cpu_kernel_available, cpu_kernel_weight

needs_kernel = pytest.mark.skipif(not cpu_kernel_available(), reason="torch's CPU INT4 kernel missing")


def test_moe_layer_bytes_match_a_hand_count():
    cfg = LMConfig.tiny()  # D 64, H 4, Q 32, C 16, n 16, r 8, v 16, E 8, k 2, I 32, one shared expert
    got = moe_layer_bytes(cfg, dtype_bytes=4, prompt=10)
    attention = (32 * 64 + 32 + 4 * 24 * 32 + 24 * 64 + 16 + 4 * 32 * 16 + 64 * 4 * 16) * 4
    # one expert: gate_up (64, 64) + down (64, 32), 4 bits a weight + 4 bytes a group of 32 (cpu layout)
    expert = (64 * 64 + 64 * 32) // 2 + (64 * 64 + 64 * 32) // 32 * 4
    assert got.read == {
        "attention": attention,
        "norms": 2 * 64 * 4,
        "latent_cache": 11 * 24 * 4,
        "router": 8 * 64 * 4 + 8 * 4,
        "shared_expert": 3 * 64 * 32 * 4,
        "routed_experts_int4": 2 * expert,
    }
    assert got.resident == got.read_total + 6 * expert


def test_release_layout_keeps_one_scale_a_group():
    assert int4_matrix_bytes(4096, 7168, "release") == 4096 * 7168 // 2 + 4096 * 224 * 2
    assert int4_matrix_bytes(4096, 7168, "cpu") == 4096 * 7168 // 2 + 4096 * 224 * 4


def test_dense_and_head_bytes():
    cfg = LMConfig.tiny()
    dense = dense_layer_bytes(cfg, 2, 0)
    assert dense.read["dense_mlp"] == 3 * 64 * 128 * 2 and dense.resident == dense.read_total
    head = head_bytes(cfg, 2)
    assert head.read == {"embedding_row": 128, "final_norm": 128, "lm_head": 256 * 64 * 2}
    assert head.resident == 2 * 256 * 64 * 2 + 128


def test_k25_layer_sizes():
    cfg = LMConfig.k25()
    moe = moe_layer_bytes(cfg, 4, 128)
    # 384 experts x 3 x 7168 x 2048 weights at 5 bits each (4 + a 32-bit scale/zero pair per 32)
    assert moe.resident - moe.read_total + moe.read["routed_experts_int4"] == 384 * 3 * 7168 * 2048 * 5 // 8
    assert 11e9 < moe.resident < 11.5e9


@pytest.mark.parametrize(
    "available, per_layer, reserve, fits",
    [(100, 30, 0, 3), (100, 30, 10, 3), (100, 30, 11, 2), (10, 30, 0, 0), (5, 30, 10, 0)],
    ids=["three", "reserve_fits", "reserve_costs_one", "none", "reserve_over_available"],
)
def test_layers_that_fit(available, per_layer, reserve, fits):
    assert layers_that_fit(available, per_layer, reserve) == fits


def test_projection_adds_dense_and_head_at_the_achieved_rate():
    cfg = LMConfig.tiny()  # 1 dense + 2 MoE layers
    p = projection(cfg, moe_layer_s=0.01, achieved_gb_s=1.0, dtype_bytes=4, prompt=4)
    dense = dense_layer_bytes(cfg, 4, 4).read_total / 1e9
    head = head_bytes(cfg, 4).read_total / 1e9
    assert p["moe_layers"] == 2 and p["dense_layers"] == 1
    assert p["token_s"] == pytest.approx(0.02 + dense + head)
    assert p["tok_s"] == pytest.approx(1 / p["token_s"])


@needs_kernel
def test_random_kernel_layout_matches_its_dequantised_values():
    packed, scale_zeros = random_int4_matrices(2, 64, 96, np.random.default_rng(0))
    x = torch.randn(3, 96).bfloat16()
    for e in range(2):
        w = cpu_kernel_weight(packed[e], scale_zeros[e])  # (64, 96)
        # every value is (u - 8)·scale with u in [0, 15]
        u = w / scale_zeros[e, ..., 0].float().t().repeat_interleave(GROUP_SIZE, 1) + 8
        assert torch.equal(u, u.round()) and u.min() >= 0 and u.max() <= 15
        got = torch._weight_int4pack_mm_for_cpu(x, packed[e], GROUP_SIZE, scale_zeros[e]).float()
        torch.testing.assert_close(got, x.float() @ w.t(), rtol=2e-2, atol=2e-2)


@needs_kernel
def test_built_layer_holds_what_the_byte_count_says():
    cfg = moe_only(LMConfig.tiny(), 1)
    layer = random_moe_layer(cfg, torch.float32, np.random.default_rng(0))
    counted = moe_layer_bytes(cfg, 4, prompt=0)
    assert resident_bytes(layer) == counted.resident - counted.read["latent_cache"]
    assert layer.mlp.experts.layout == "cpu"
    assert layer.mlp.gate.e_score_correction_bias.dtype == torch.float32


@needs_kernel
def test_tiny_run_reports_sensible_figures_and_matches_the_fp32_twin(tmp_path, monkeypatch):
    monkeypatch.setattr("benchmarks.common.RESULTS", tmp_path)
    out = lm_layer_speed.main(["--config", "tiny", "--steps", "4", "--threads", "1", "--compile", "off"])
    (row,) = out["rows"]
    assert row["mode"] == "eager" and row["threads"] == 1
    assert 0 < row["layer_ms_best"] <= row["layer_ms_median"]
    assert row["mb_per_token_layer"] * 1e6 == pytest.approx(out["bytes_per_token_layer_total"])
    assert row["of_bandwidth"] > 0 and row["bandwidth_gb_s"] > 0
    assert row["projection"]["moe_layers"] == 2 and row["projected_tok_s"] > 0
    assert out["fit"]["layers_fit"] >= 1 and out["dtype"] in ("fp32", "bf16")
    assert 1 <= out["distinct_experts_hit"][0] <= 8
    assert out["kernel_alone"][1]["gb_s"] > 0
    assert out["reference"]["update_max_rel_diff"] < out["reference"]["tolerance"]
    assert len(list(tmp_path.glob("lm_layer_speed-*.json"))) == 1


def test_refuses_more_layers_than_fit(monkeypatch):
    monkeypatch.setattr(lm_layer_speed, "mem_available", lambda: 2**30)
    with pytest.raises(SystemExit, match="does not fit"):
        lm_layer_speed.main(["--config", "k25", "--layers", "1", "--threads", "1"])
