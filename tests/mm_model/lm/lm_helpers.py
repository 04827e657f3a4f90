"""Helpers for LM tests: tiny transformers reference models saved to a tmp dir, randomized so that
routing and every weight matter. A plain module (not a conftest) so it cannot clash with others."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

TINY_HF: dict[str, Any] = dict(
    vocab_size=128, hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
    n_group=1, topk_group=1, routed_scaling_factor=2.5, norm_topk_prob=True, first_k_dense_replace=1,
    q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
    max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10000.0, num_nextn_predict_layers=0,
    bos_token_id=1, eos_token_id=2, pad_token_id=0,
)  # fmt: skip


def randomize_(model: torch.nn.Module, seed: int = 0) -> None:
    """Overwrite every parameter so outputs are far from degenerate.

    Matrices get N(0, 1/fan_in) (unit-scale activations), norm weights 1 + N(0, 0.2), router weights a
    larger scale so sigmoid scores spread over (0, 1), correction biases N(0, 0.1) so they change which
    experts win (transformers initializes them to zeros).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("mlp.gate.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / math.sqrt(p.shape[-1])))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))


def make_reference(tmp_path, **overrides: Any):
    """A randomized transformers DeepseekV3ForCausalLM (fp32, eager experts) saved to tmp_path."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.DeepseekV3Config(**{**TINY_HF, **overrides})
    ref = transformers.DeepseekV3ForCausalLM(cfg)
    randomize_(ref)
    ref.eval()
    ref.save_pretrained(tmp_path)
    return ref
