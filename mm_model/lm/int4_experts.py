"""Routed experts kept in INT4 in memory (the released checkpoint's format), computed without ever
materialising bf16 copies of all experts.

Shape legend: E experts, D hidden, I moe_intermediate_size, N output rows, K inputs of one matrix.

Two storage layouts, 4 bits per weight either way:
- "release": the checkpoint's tensors stacked per layer: gate_up_packed (E, 2I, D/8) int32 and
  gate_up_scale (E, 2I, D/32) with the gate rows first; down_packed (E, D, I/8), down_scale (E, D, I/32).
  Each expert hit by the current tokens is dequantised (in the scale dtype, as compressed-tensors does)
  and multiplied; runs on any device and in any dtype. This is also the slow twin of the next one.
- "cpu": torch's CPU 4-bit kernel (`torch._weight_int4pack_mm_for_cpu`): packed (E, N, K/2) uint8 in
  the kernel's own order, scale_zeros (E, K/32, N, 2) bf16 with zero 0. Measured on the 2-core
  AVX512 EPYC (torch 2.14.1): a (1 x 1024) @ (1024 x 512) product took 26 us against 110 us for
  bf16 `F.linear`, while dequantising with torch ops took 1 ms. It costs 2 more bytes per 32 weights
  (the zeros). The loader converts to it for bf16 models on the CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mm_model.lm.config import LMConfig
from mm_model.lm.int4 import GROUP_SIZE, PER_WORD, dequantize_int4, quantize_int4, unpack_int4
from mm_model.lm.moe import Experts

# (our buffer prefix, checkpoint projection names it stacks)
MATRICES = (("gate_up", ("gate_proj", "up_proj")), ("down", ("down_proj",)))


def cpu_kernel_available() -> bool:
    return hasattr(torch, "_weight_int4pack_mm_for_cpu") and hasattr(
        torch, "_convert_weight_to_int4pack_for_cpu"
    )


def cpu_kernel_weight(packed: Tensor, scale_zeros: Tensor) -> Tensor:
    """One matrix in the CPU kernel layout, dequantised: packed (N, K/2) uint8, scale_zeros (K/32, N, 2)
    -> w (N, K) fp32 with w = (u - 8)·scale + zero. The slow twin of the kernel (tests, small sizes).

    The kernel's nibble order is torch-internal and may differ between CPU capabilities, so the 4-bit
    values are read back through the kernel itself: the identity times unit scales and zero zeros
    gives u - 8, small integers that bf16 holds exactly. The scales and zeros are applied here.
    """
    n, k = packed.shape[0], packed.shape[1] * 2
    unit = torch.zeros(k // GROUP_SIZE, n, 2, dtype=torch.bfloat16)
    unit[..., 0] = 1
    eye = torch.eye(k, dtype=torch.bfloat16)
    q = torch._weight_int4pack_mm_for_cpu(eye, packed, GROUP_SIZE, unit).float().t()  # (N, K): u - 8
    scale = scale_zeros[..., 0].float().t().repeat_interleave(GROUP_SIZE, dim=1)  # (N, K)
    zero = scale_zeros[..., 1].float().t().repeat_interleave(GROUP_SIZE, dim=1)
    return q * scale + zero


class Int4Experts(Experts):
    """`moe.Experts` with INT4 weights; same routing dispatch (the per-expert loop over hit experts)."""

    def __init__(self, cfg: LMConfig, scale_dtype: torch.dtype = torch.bfloat16) -> None:
        nn.Module.__init__(self)  # no bf16 parameters: the buffers below are the weights
        e, d, i = cfg.n_routed_experts, cfg.hidden_size, cfg.moe_intermediate_size
        if d % GROUP_SIZE or i % GROUP_SIZE:
            raise ValueError(
                f"INT4 experts need hidden {d} and moe_intermediate {i} in multiples of {GROUP_SIZE}"
            )
        self.num_experts, self.intermediate, self.layout = e, i, "release"
        self.register_buffer("gate_up_packed", torch.empty(e, 2 * i, d // PER_WORD, dtype=torch.int32))
        self.register_buffer("gate_up_scale", torch.empty(e, 2 * i, d // GROUP_SIZE, dtype=scale_dtype))
        self.register_buffer("down_packed", torch.empty(e, d, i // PER_WORD, dtype=torch.int32))
        self.register_buffer("down_scale", torch.empty(e, d, i // GROUP_SIZE, dtype=scale_dtype))

    def forward(self, x: Tensor, weights: Tensor, idx: Tensor, impl: str = "auto") -> Tensor:
        """x (N, D), weights (N, k) fp32, idx (N, k) -> (N, D); only the experts hit are touched.

        There is no grouped 4-bit kernel: one token (batch-1 decode) runs its k experts in turn
        ("direct"; one bench-config layer: 741 us through the general dispatch, 582 us direct, 399 us
        for the bare kernel calls), more tokens take the loop over hit experts, also the direct
        path's twin in the tests.
        """
        if impl in ("auto", "grouped"):
            impl = "direct" if x.shape[0] == 1 else "loop"
        return super().forward(x, weights, idx, impl=impl)

    def _expert(self, e: int, x: Tensor) -> Tensor:  # (n, D) -> (n, D)
        if self.layout == "cpu":
            if x.device.type != "cpu":
                raise RuntimeError("INT4 experts in the CPU kernel layout cannot run on " + str(x.device))
            xb = x.to(torch.bfloat16).contiguous()
            h = torch._weight_int4pack_mm_for_cpu(
                xb, self.gate_up_packed[e], GROUP_SIZE, self.gate_up_scale[e]
            )
            gate, up = h.chunk(2, dim=-1)
            out = torch._weight_int4pack_mm_for_cpu(
                (F.silu(gate) * up).contiguous(), self.down_packed[e], GROUP_SIZE, self.down_scale[e]
            )
            return out.to(x.dtype)
        gate, up = F.linear(x, self.weight("gate_up", e, x.dtype)).chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, self.weight("down", e, x.dtype))

    def weight(self, name: str, e: int, dtype: torch.dtype) -> Tensor:
        """Expert e's dequantised `gate_up` (2I, D) or `down` (D, I) matrix (release layout only)."""
        if self.layout != "release":
            raise RuntimeError("dequantising needs the release layout (this module holds the CPU kernel's)")
        return dequantize_int4(getattr(self, f"{name}_packed")[e], getattr(self, f"{name}_scale")[e], dtype)

    @torch.no_grad()
    def to_cpu_kernel_(self) -> bool:
        """Convert in place to torch's CPU 4-bit kernel layout; False (unchanged) where it does not apply
        (not on the CPU, kernel missing, or scales that are not bf16, which the kernel would round)."""
        if self.layout != "release" or self.gate_up_packed.device.type != "cpu" or not cpu_kernel_available():
            return False
        if self.gate_up_scale.dtype != torch.bfloat16:
            return False
        converted = {}
        for name, _ in MATRICES:
            packed, scale = getattr(self, f"{name}_packed"), getattr(self, f"{name}_scale")
            kernel = scale_zeros = None
            for e in range(packed.shape[0]):  # one expert at a time: the int32 staging is 8x its size
                q = unpack_int4(packed[e]).to(torch.int32) + 8  # (N, K) in [0, 15], the kernel's input
                try:
                    k = torch._convert_weight_to_int4pack_for_cpu(q, 1)
                except RuntimeError:  # a shape the kernel does not take
                    return False
                if kernel is None:  # allocated once per matrix: the layer's peak is its two layouts
                    kernel = k.new_empty(packed.shape[0], *k.shape)
                    scale_zeros = scale.new_zeros(packed.shape[0], scale.shape[2], scale.shape[1], 2)
                kernel[e] = k
                scale_zeros[e, ..., 0] = scale[e].t()  # (K/32, N); zero stays 0: w = (u - 8)·s + 0
            converted[name] = (kernel, scale_zeros)
        for name, (kernel, scale_zeros) in converted.items():
            setattr(self, f"{name}_packed", kernel)
            setattr(self, f"{name}_scale", scale_zeros)
        self.layout = "cpu"
        return True

    @classmethod
    @torch.no_grad()
    def quantize(
        cls, experts: Experts, cfg: LMConfig, scale_dtype: torch.dtype = torch.bfloat16
    ) -> Int4Experts:
        """INT4 experts from bf16/fp32 ones, one expert at a time (symmetric min-max, group 32)."""
        device = experts.gate_up_proj.device
        with torch.device("meta"):
            out = cls(cfg, scale_dtype)
        out.to_empty(device=device)
        for name, source in (("gate_up", experts.gate_up_proj), ("down", experts.down_proj)):
            for e in range(source.shape[0]):
                packed, scale = quantize_int4(source[e], scale_dtype)
                getattr(out, f"{name}_packed")[e].copy_(packed)
                getattr(out, f"{name}_scale")[e].copy_(scale)
        return out


def int4_experts(model: nn.Module) -> list[tuple[str, Int4Experts]]:
    """(name, module) of every INT4 experts module in `model`."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Int4Experts)]


def quantize_experts_(model: nn.Module, scale_dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Replace every MoE layer's routed `Experts` of a `DeepseekV3LM` with `Int4Experts`, layer by
    layer (each layer's bf16 experts are freed as soon as its INT4 copy exists)."""
    for layer in model.model.layers:
        experts = getattr(layer.mlp, "experts", None)
        if type(experts) is Experts:
            layer.mlp.experts = Int4Experts.quantize(experts, model.config, scale_dtype)
    return model
