"""RMSNorm and the SwiGLU MLP shared by attention, dense and MoE layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compute import prepack
from compute.prepack import Linear


class RMSNorm(nn.Module):
    """x / rms(x) · weight; normalization in fp32, cast back to x's dtype before the weight (as the reference)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:  # (..., dim) -> (..., dim)
        return self.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) · up(x)). Used for dense layers and the shared experts."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # (..., D) -> (..., D)
        if prepack.hooked(self.gate_proj, self.up_proj):
            gate, up = self.gate_proj(x), self.up_proj(x)
        else:  # both read x: one matmul where packed
            gate, up = prepack.linears(x, (self.gate_proj.weight, self.up_proj.weight))
        return self.down_proj(F.silu(gate) * up)
