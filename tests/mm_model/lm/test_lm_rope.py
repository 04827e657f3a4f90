"""YaRN parameters against transformers' `_compute_yarn_parameters` and `DeepseekV3Attention.scaling`.

Tolerances: inv_freq rtol 1e-6 (both fp32, same formula), attention factor and softmax scale 1e-12.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from mm_model.lm import LMConfig
from mm_model.lm.rope import apply_rope, rope_cos_sin, rope_parameters, softmax_scale, yarn_inv_freq

MSCALES = {"none": {}, "1_1": {"mscale": 1.0, "mscale_all_dim": 1.0}, "0.707_1": {"mscale": 0.707, "mscale_all_dim": 1.0},
           "1_only": {"mscale": 1.0}, "all_dim_only": {"mscale_all_dim": 1.0},
           "0.5_0.8": {"mscale": 0.5, "mscale_all_dim": 0.8}}  # fmt: skip
BETAS = {"32_1": {"beta_fast": 32.0, "beta_slow": 1.0}, "1_1": {"beta_fast": 1.0, "beta_slow": 1.0},
         "8_2": {"beta_fast": 8.0, "beta_slow": 2.0}, "missing": {}}  # fmt: skip
# (rope dim, theta, factor, original context)
SHAPES = [(8, 1e4, 4.0, 16), (16, 1e4, 40.0, 4096), (64, 5e4, 64.0, 4096), (64, 1e4, 40.0, 4096), (16, 5e4, 1.0, 64),
          (64, 5e4, 2.0, 16)]  # fmt: skip
GRID = [
    pytest.param(
        shape, beta, ms, trunc, id=f"dim{shape[0]}-f{shape[2]:g}-L{shape[3]}-b{beta}-m{ms}-t{int(trunc)}"
    )
    for shape, beta, ms, trunc in itertools.product(SHAPES, BETAS, MSCALES, (True, False))
    if trunc or beta == "32_1"
]


def _configs(shape, beta, ms, trunc, attention_factor=None):
    transformers = pytest.importorskip("transformers")
    dim, theta, factor, orig = shape
    rope = {"rope_type": "yarn", "rope_theta": theta, "factor": factor, "original_max_position_embeddings": orig,
            **BETAS[beta], **MSCALES[ms]}  # fmt: skip
    if not trunc:
        rope["truncate"] = False
    if attention_factor is not None:
        rope["attention_factor"] = attention_factor
    common = dict(qk_rope_head_dim=dim, qk_nope_head_dim=16, max_position_embeddings=orig * 4)
    small = dict(hidden_size=32, num_attention_heads=2, num_key_value_heads=2, q_lora_rank=8, kv_lora_rank=8,
                 v_head_dim=8, vocab_size=16)  # fmt: skip
    hf = transformers.DeepseekV3Config(rope_parameters=dict(rope), **common, **small)
    ours = LMConfig.tiny(**common).from_hf_dict(
        {**LMConfig.tiny(**common).to_hf_dict(), "rope_parameters": dict(rope)}
    )
    return hf, ours


def _reference(hf):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Attention

    inv_freq, factor = ROPE_INIT_FUNCTIONS["yarn"](hf, None)
    return inv_freq, factor, DeepseekV3Attention(hf, 0).scaling


@pytest.mark.parity
@pytest.mark.parametrize("shape, beta, ms, trunc", GRID)
def test_yarn_matches_reference(shape, beta, ms, trunc):
    hf, ours = _configs(shape, beta, ms, trunc)
    ref_inv, ref_factor, ref_scale = _reference(hf)
    inv, factor = rope_parameters(ours)
    torch.testing.assert_close(inv, ref_inv, rtol=1e-6, atol=0)
    assert abs(factor - ref_factor) < 1e-12
    assert abs(softmax_scale(ours) - ref_scale) < 1e-12


@pytest.mark.parity
def test_explicit_attention_factor_matches_reference():
    hf, ours = _configs((16, 1e4, 4.0, 16), "32_1", "1_1", True, attention_factor=0.8)
    _, ref_factor, _ = _reference(hf)
    assert rope_parameters(ours)[1] == ref_factor == 0.8


def test_grid_discriminates_wrong_variants():
    """Mutants that a sloppy port would produce differ from the formula on the grid's cases."""
    dim, theta, factor, orig = 64, 5e4, 64.0, 4096
    good = yarn_inv_freq(dim, theta, factor, orig, 32.0, 1.0)
    assert not torch.allclose(
        good, yarn_inv_freq(dim, theta, factor, orig * 64, 32.0, 1.0)
    )  # range from max pos
    assert not torch.allclose(
        good, yarn_inv_freq(192, theta, factor, orig, 32.0, 1.0)[:32]
    )  # dim = qk head dim
    assert not torch.allclose(good, yarn_inv_freq(dim, theta, factor, orig, 1.0, 1.0))  # K2-0905 betas


def test_kimi_k25_numbers():
    """Section 3.4 of research/toggle_yarn.md: softmax scale 192^-0.5 · (0.1 ln 64 + 1)^2 = 0.144680, A = 1."""
    cfg = LMConfig.k25()
    inv, factor = rope_parameters(cfg)
    assert factor == 1.0
    assert softmax_scale(cfg) == pytest.approx(192**-0.5 * (0.1 * math.log(64) + 1) ** 2, rel=1e-12)
    assert softmax_scale(cfg) == pytest.approx(0.144680, abs=1e-6)
    default = 1.0 / (5e4 ** (torch.arange(0, 64, 2).float() / 64))
    # beta_fast 32 -> pairs 0..8 keep their frequency; beta_slow 1 -> pairs 20..31 are divided by 64.
    assert torch.allclose(inv[:9], default[:9]) and torch.allclose(inv[20:], default[20:] / 64)
    assert not torch.allclose(inv[9:20], default[9:20])


@pytest.mark.parity
def test_cos_sin_match_reference_rotary():
    transformers = pytest.importorskip("transformers")
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3RotaryEmbedding

    cfg = LMConfig.k25()
    hf = transformers.DeepseekV3Config(**{k: v for k, v in cfg.to_hf_dict().items() if k != "architectures"})
    rot = DeepseekV3RotaryEmbedding(hf)
    L = 4096
    pos = torch.tensor([[0, 1, L - 1, L, 10 * L, 262143]])
    ref_cos, ref_sin = rot(torch.zeros(1, dtype=torch.float32), pos)
    inv, factor = rope_parameters(cfg)
    cos, sin = rope_cos_sin(pos, inv, factor)
    torch.testing.assert_close(cos, ref_cos[..., :32], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sin, ref_sin[..., :32], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("p", [0, 1000, 4095])
@pytest.mark.parametrize("delta", [0, 1, 4095, 4096])
def test_relative_position_invariance(p, delta):
    """score(p + delta, p) == score(delta, 0) for random q, k (K2.5 rope), rel. error < 1e-4.

    Angles are fp32 products, exactly as the reference computes them, so at positions ~1e5 the
    angle's own rounding (ulp 2^-7 rad) dominates and the property only holds loosely; it is
    checked where fp32 resolves it. The bf16 control shows the check detects precision loss.
    """
    g = torch.Generator().manual_seed(p + delta)
    q, k = torch.randn(1, 1, 64, generator=g), torch.randn(1, 1, 64, generator=g)
    inv, factor = rope_parameters(LMConfig.k25())

    def score(pq, pk, dtype=torch.float32):
        def rot(x, pos):
            angles = (torch.tensor([[pos]], dtype=dtype)[..., None] * inv.to(dtype)).float()
            return apply_rope(x, angles.cos() * factor, angles.sin() * factor)

        return (rot(q, pq) * rot(k, pk)).sum().item()

    ref = score(delta, 0)
    assert abs(score(p + delta, p) - ref) <= 1e-4 * max(1.0, abs(ref))
    if p >= 1000 and delta > 0:
        assert abs(score(p + delta, p, torch.bfloat16) - ref) > 1e-3 * max(1.0, abs(ref))
