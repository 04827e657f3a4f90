"""Weight bytes: the release's footprint from its config, and a checkpoint's from its headers."""

from __future__ import annotations

import torch

from mm_model.checkpoint import load_model
from mm_model.cli import main as cli
from mm_model.config import ModelConfig
from mm_model.footprint import checkpoint_footprint, release_footprint, resident_bytes
from mm_model.lm.int4_experts import int4_experts


def test_release_footprint_is_the_released_shards():
    """From the config alone: 554.27 GiB of tensors, as listed for the real Kimi-K2.5 release
    (a public per-tensor dump of moonshotai/Kimi-K2.5: 64 shards, 554.27 GiB of tensors; routed
    experts 3 x 157.50 GiB packed + 3 x 19.69 GiB scales)."""
    f = release_footprint(ModelConfig.k25())
    assert abs(f.int4_packed_bytes / 2**30 - 3 * 157.50) < 0.02
    assert abs(f.int4_scale_bytes / 2**30 - 3 * 19.69) < 0.02
    assert abs(f.total_bytes / 2**30 - 554.27) < 0.05
    assert f.resident_bytes(cpu_kernel=True) - f.resident_bytes() == f.int4_scale_bytes


def test_checkpoint_footprint_counts_what_loads(tiny_dir, tmp_path):
    out = tmp_path / "int4"
    assert cli(["convert", str(tiny_dir), str(out), "--to", "released-int4"]) == 0
    f = checkpoint_footprint(out)
    model = load_model(out, dtype=torch.bfloat16, int4_kernel=False)
    experts = sum(resident_bytes(m) for _, m in int4_experts(model.language_model))
    shapes = f.int4_tensors // 3 * 8  # weight_shape: two int32 each, not held in memory
    assert f.int4_packed_bytes + f.int4_scale_bytes - shapes == experts
    assert f.int4_names == tuple(
        f"language_model.model.layers.N.mlp.experts.N.{p}_proj.weight_*" for p in ("down", "gate", "up")
    )
    plain = checkpoint_footprint(tiny_dir)
    assert plain.int4_tensors == 0 and plain.other_bytes > f.other_bytes  # fp32 source, bf16 output
