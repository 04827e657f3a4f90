"""Which dtype to compute in, given the weights' dtype and the device.

bf16 weights halve memory everywhere, but bf16 *matmul* is only fast where the hardware has bf16
units (CUDA GPUs; x86 CPUs with AMX or AVX512-BF16). On AVX2-only CPUs it is emulated and measures
about 10x slower than fp32 (benchmarks/vision_speed.py prints the ceiling for both), so there we
keep bf16 storage and compute in fp32, casting each weight at its use.
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compute import prepack

_LOW_PRECISION = (torch.bfloat16, torch.float16)


@cache
def cpu_has_fast_bf16() -> bool:
    """True if this CPU advertises native bf16 matrix instructions (AMX-BF16 or AVX512-BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return torch.backends.cpu.get_cpu_capability() == "AVX512"
    return "amx_bf16" in flags or "avx512_bf16" in flags


def compute_dtype(weight_dtype: torch.dtype, device: torch.device | str) -> torch.dtype:
    """The activation dtype for weights of `weight_dtype` on `device`."""
    device = torch.device(device)
    if weight_dtype in _LOW_PRECISION and device.type == "cpu" and not cpu_has_fast_bf16():
        return torch.float32
    return weight_dtype


def linear(
    x: Tensor, layer: nn.Linear, *, activation: str | None = None, residual: Tensor | None = None
) -> Tensor:
    """`residual + activation(layer(x))` computed in x's dtype, whatever dtype the weights are stored
    in (`prepack.linear`: fused where the CPU has native bf16)."""
    bias = None if layer.bias is None else layer.bias.to(x.dtype)
    weight = layer.weight if layer.weight.dtype == x.dtype else layer.weight.to(x.dtype)
    return prepack.linear(x, weight, bias, activation=activation, residual=residual)


def layer_norm(x: Tensor, layer: nn.LayerNorm) -> Tensor:
    """`layer(x)` computed in x's dtype."""
    weight = None if layer.weight is None else layer.weight.to(x.dtype)
    bias = None if layer.bias is None else layer.bias.to(x.dtype)
    return F.layer_norm(x, layer.normalized_shape, weight, bias, layer.eps)
