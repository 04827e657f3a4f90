"""MoE decoder layers with random weights, routed experts in INT4 in torch's CPU kernel layout, built
at any width (K2.5's included) without ever holding the experts in floating point; and a plain
floating-point twin of a small one (the reference of the tests).

Shape legend: E experts, D hidden, I moe_intermediate_size, N output rows, K inputs of one matrix.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from mm_model.lm.config import LMConfig
from mm_model.lm.int4 import GROUP_SIZE
from mm_model.lm.int4_experts import Int4Experts, cpu_kernel_weight
from mm_model.lm.model import DecoderLayer
from mm_model.lm.moe import Experts

# std of a uniform 4-bit value u - 8 in [-8, 7]: sqrt((16² - 1) / 12)
_Q_STD = math.sqrt((16**2 - 1) / 12)


def moe_only(cfg: LMConfig, layers: int) -> LMConfig:
    """`cfg` with `layers` layers, all MoE (first_k_dense_replace 0)."""
    return cfg.replace(num_hidden_layers=layers, first_k_dense_replace=0)


def random_int4_matrices(e: int, n: int, k: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """E random (N, K) INT4 matrices in the CPU kernel layout: packed (E, N, K/2) uint8 and
    scale_zeros (E, K/32, N, 2) bf16 (see `fill_random_int4_`)."""
    packed = torch.empty(e, n, k // 2, dtype=torch.uint8)
    scale_zeros = torch.zeros(e, k // GROUP_SIZE, n, 2, dtype=torch.bfloat16)
    for i in range(e):
        fill_random_int4_(packed[i], scale_zeros[i], rng)
    return packed, scale_zeros


def fill_random_int4_(packed: Tensor, scale_zeros: Tensor, rng: np.random.Generator) -> None:
    """Fill one (N, K) matrix in the CPU kernel layout in place: packed (N, K/2) uint8 with random
    bytes (any byte is two valid 4-bit values, whatever the kernel's nibble order), scale_zeros
    (K/32, N, 2) with zero 0 and scales around 1 / (std(u - 8)·sqrt(K)), so that the matrix keeps a
    unit-variance input at about unit variance."""
    n, k = packed.shape[0], packed.shape[1] * 2
    packed.copy_(torch.from_numpy(rng.integers(0, 256, size=packed.shape, dtype=np.uint8)))
    base = 1 / (_Q_STD * math.sqrt(k))
    scale_zeros[..., 0] = torch.from_numpy(rng.uniform(0.5, 1.5, size=(k // GROUP_SIZE, n))) * base
    scale_zeros[..., 1] = 0


def random_int4_experts(cfg: LMConfig, rng: np.random.Generator, progress: bool = False) -> Int4Experts:
    """`Int4Experts` in the "cpu" layout with random weights (E·3·D·I values, 4 bits each), each
    tensor allocated once at full size and filled an expert at a time (no second copy)."""
    e, d, i = cfg.n_routed_experts, cfg.hidden_size, cfg.moe_intermediate_size
    with torch.device("meta"):
        experts = Int4Experts(cfg)  # the release-layout buffers stay on meta: replaced below
    shapes = {"gate_up": (2 * i, d), "down": (d, i)}  # (N, K) of each matrix
    for name, (n, k) in shapes.items():
        setattr(experts, f"{name}_packed", torch.empty(e, n, k // 2, dtype=torch.uint8))
        setattr(experts, f"{name}_scale", torch.empty(e, k // GROUP_SIZE, n, 2, dtype=torch.bfloat16))
    for x in tqdm(range(e), desc="random INT4 experts", unit="expert", disable=not progress):
        for name in shapes:
            fill_random_int4_(
                getattr(experts, f"{name}_packed")[x], getattr(experts, f"{name}_scale")[x], rng
            )
    experts.layout = "cpu"
    return experts


@torch.no_grad()
def random_moe_layer(
    cfg: LMConfig, dtype: torch.dtype, rng: np.random.Generator, progress: bool = False
) -> DecoderLayer:
    """A MoE `DecoderLayer` of `cfg`'s width: non-expert weights random normal (std 1/sqrt(fan-in),
    norms 1) in `dtype`, routed experts random INT4. The router's logits are then about unit normal
    for a normed input, so the sigmoid scores spread and each token's top-k differs; larger weights
    saturate the sigmoid, ties at 1 go to the biggest correction biases and a few experts win
    every token (a first run with 4x the std hit 55 of 384)."""
    assert cfg.is_moe_layer(cfg.num_hidden_layers - 1), "the config's last layer must be MoE"
    with torch.device("meta"):
        layer = DecoderLayer(cfg, cfg.num_hidden_layers - 1)
    layer.mlp.experts = random_int4_experts(cfg, rng, progress)
    seed = int(rng.integers(0, 2**31))
    gen = torch.Generator().manual_seed(seed)
    for name in (
        "self_attn",
        "input_layernorm",
        "post_attention_layernorm",
        "mlp.gate",
        "mlp.shared_experts",
    ):
        part = layer.get_submodule(name)
        part.to_empty(device="cpu")
        for p in part.parameters():
            if p.dim() == 1:  # norm weights
                p.fill_(1.0)
            else:
                p.normal_(0, 1 / math.sqrt(p.shape[1]), generator=gen)
        part.to(dtype)
    layer.mlp.gate.e_score_correction_bias = torch.randn(cfg.n_routed_experts, generator=gen) * 0.05
    return layer.eval().requires_grad_(False)


@torch.no_grad()
def dequantised_twin(layer: DecoderLayer, cfg: LMConfig) -> DecoderLayer:
    """The same layer in fp32 with plain `Experts` holding the INT4 experts' values (small configs
    only: it materialises every expert)."""
    twin = DecoderLayer(cfg, cfg.num_hidden_layers - 1)
    state = {k: v for k, v in layer.state_dict().items() if ".experts." not in k}
    twin.load_state_dict(state, strict=False)
    twin.float()
    twin.mlp.gate.e_score_correction_bias.copy_(layer.mlp.gate.e_score_correction_bias)
    src = layer.mlp.experts
    plain: Experts = twin.mlp.experts
    for e in range(cfg.n_routed_experts):
        plain.gate_up_proj[e] = cpu_kernel_weight(src.gate_up_packed[e], src.gate_up_scale[e])
        plain.down_proj[e] = cpu_kernel_weight(src.down_packed[e], src.down_scale[e])
    return twin.eval().requires_grad_(False)
