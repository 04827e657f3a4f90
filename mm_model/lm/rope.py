"""Rotary position embedding with YaRN, as pure functions of the config.

The rope covers only the `qk_rope_head_dim` part of each head (`dim` below). Frequencies, angles,
cos and sin are computed in fp32: at positions near 262k, bf16 angles are meaningless.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mm_model.lm.config import LMConfig


def yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN magnitude correction 0.1·m·ln(s) + 1 (1 when the scale does not extend the context)."""
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def default_inv_freq(dim: int, base: float) -> Tensor:
    """Plain RoPE inverse frequencies base^(-2i/dim), i in [0, dim/2). Shape (dim/2,), fp32."""
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))


def yarn_correction_range(
    beta_fast: float, beta_slow: float, dim: int, base: float, original_max: int, truncate: bool
) -> tuple[float, float]:
    """Pair indices where the ramp from 'keep' (fast rotations) to 'interpolate' (slow) starts and ends."""

    def correction_dim(rotations: float) -> float:
        # The pair index whose wavelength completes `rotations` turns over the original context.
        return dim * math.log(original_max / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    return max(low, 0), min(high, dim - 1)


def yarn_inv_freq(
    dim: int,
    base: float,
    factor: float,
    original_max: int,
    beta_fast: float | None = None,
    beta_slow: float | None = None,
    truncate: bool = True,
) -> Tensor:
    """YaRN "NTK-by-parts" inverse frequencies. Shape (dim/2,), fp32.

    Pairs below the ramp keep their frequency, pairs above are divided by `factor`, and the ramp is
    linear in the pair index between. Missing or zero betas default to 32 / 1, as in the reference.
    """
    beta_fast = beta_fast or 32.0
    beta_slow = beta_slow or 1.0
    low, high = yarn_correction_range(beta_fast, beta_slow, dim, base, original_max, truncate)
    if low == high:
        high += 0.001  # avoid 0/0, as the reference does
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    keep = 1.0 / pos_freqs
    interpolated = 1.0 / (factor * pos_freqs)
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolation = 1 - ramp  # weight of the kept frequency
    return interpolated * (1 - extrapolation) + keep * extrapolation


def yarn_attention_factor(
    factor: float,
    mscale: float | None = None,
    mscale_all_dim: float | None = None,
    attention_factor: float | None = None,
) -> float:
    """The multiplier on cos and sin.

    The reference uses mscale/mscale_all_dim only when both are set (non-zero); `mscale` alone is
    ignored and the plain YaRN temperature g(factor) applies.
    """
    if attention_factor is not None:
        return float(attention_factor)
    if mscale and mscale_all_dim:
        return float(yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor, mscale_all_dim))
    return yarn_get_mscale(factor)


def rope_parameters(cfg: LMConfig) -> tuple[Tensor, float]:
    """(inv_freq (dim/2,) fp32, attention_factor) for the config."""
    dim, rs = cfg.qk_rope_head_dim, cfg.rope_scaling
    if rs is None:
        return default_inv_freq(dim, cfg.rope_theta), 1.0
    inv_freq = yarn_inv_freq(
        dim, cfg.rope_theta, rs.factor, rs.original_max_position_embeddings, rs.beta_fast, rs.beta_slow,
        rs.truncate,
    )  # fmt: skip
    return inv_freq, yarn_attention_factor(rs.factor, rs.mscale, rs.mscale_all_dim, rs.attention_factor)


def softmax_scale(cfg: LMConfig) -> float:
    """Attention logit scale: qk_head_dim^-0.5 times g(factor, mscale_all_dim)^2 under YaRN.

    As the reference (`yarn_apply_mscale`): it reads `mscale_all_dim` (not `mscale`) and only when it
    is non-zero; the boost multiplies the whole q·k, nope and rope parts alike.
    """
    scale = cfg.qk_head_dim**-0.5
    rs = cfg.rope_scaling
    if rs is not None and rs.mscale_all_dim:
        m = yarn_get_mscale(rs.factor, rs.mscale_all_dim)
        scale = scale * m * m
    return scale


def rope_cos_sin(positions: Tensor, inv_freq: Tensor, attention_factor: float) -> tuple[Tensor, Tensor]:
    """cos and sin of position·inv_freq, times the attention factor.

    Args:
        positions: (B, S) integer positions.
        inv_freq: (dim/2,) fp32.
    Returns:
        cos, sin: (B, S, dim/2) fp32.
    """
    angles = positions[..., None].float() * inv_freq.float()
    return angles.cos() * attention_factor, angles.sin() * attention_factor


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate interleaved pairs (x0, x1), (x2, x3), ... of the last dim.

    The result is laid out half-split, [rotated evens | rotated odds] (as the reference's interleave
    path does); q and k must both go through here so their dot products match a pairwise rotation.

    Args:
        x: (B, S, ..., dim) in any float dtype.
        cos, sin: (B, S, dim/2) fp32; broadcast over the middle dims of x.
    Returns:
        (B, S, ..., dim) in x's dtype; the math runs in fp32.
    """
    extra = x.dim() - cos.dim()
    shape = cos.shape[:2] + (1,) * extra + cos.shape[2:]
    cos, sin = cos.view(shape), sin.view(shape)
    xf = x.float()
    x1, x2 = xf[..., 0::2], xf[..., 1::2]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)
