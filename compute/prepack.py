"""Linear layers on oneDNN-prepacked weights, for inference on CPUs with native bf16.

On such CPUs (AVX512-BF16, AMX) a bf16 `F.linear` goes to oneDNN, which reorders the plain
(out, in) weight into its blocked layout on every call. At decode shapes that reorder is most of the
cost: measured on a 2-core AVX512-BF16 EPYC, a (1, 1024) x (512, 1024) product took 157 us with the
weight in DRAM and 91 us prepacked, and prepacked was faster at every row count tried up to 512.
Packing once per weight (what inductor's freezing pass does) removes it; the results are identical.

The packed copy is cached on the weight tensor, stamped with its storage,
version and shape, so `.to()`, `load_state_dict` and in-place updates invalidate it. It costs the
weight's size again in memory, which is why it is used only where it pays: bf16 weights and
activations on a native-bf16 CPU, with no gradient asked for. `MM_MODEL_PREPACK=0` turns it off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compute import gemv

# The cache lives on the weight tensor itself, so it goes when the weight goes: (stamp, {key: tensor}).
_ATTR = "_mm_model_packed"


@cache
def _available() -> bool:
    """oneDNN's packed linear ops exist in this torch build and run."""
    from compute.dtypes import cpu_has_fast_bf16  # here: compute.dtypes imports this module

    if os.environ.get("MM_MODEL_PREPACK", "1") == "0" or not cpu_has_fast_bf16():
        return False
    try:
        w = torch.ones(8, 8, dtype=torch.bfloat16)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 1)
        out = torch.ops.mkldnn._linear_pointwise(
            torch.ones(1, 8, dtype=torch.bfloat16), packed, None, "none", [], ""
        )
    except (AttributeError, RuntimeError):
        return False
    return bool(out.eq(8).all())


def applies(x: Tensor, weight: Tensor) -> bool:
    """Whether `linear` takes the packed path for these operands. Never inside a graph being compiled:
    there inductor's `freezing` packs plain `F.linear` weights itself, and a hand-packed weight passed
    to the oneDNN op is not a graph constant (compiling fails)."""
    return (
        not torch.compiler.is_compiling()
        and x.dtype == torch.bfloat16
        and weight.dtype == torch.bfloat16
        and x.device.type == "cpu"
        and weight.device.type == "cpu"
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and _available()
    )


def _version(t: Tensor) -> int:
    """The tensor's in-place version; -1 for inference tensors, which keep no version counter (an
    in-place change to one made under `torch.inference_mode` is not seen; storage, shape and dtype
    still are)."""
    return -1 if t.is_inference() else t._version


def cached(weight: Tensor, key: object, make: Callable[[], Tensor]) -> Tensor:
    """`make()`, computed once per `key` for this weight and kept on the weight until its storage,
    version, shape or dtype changes. For tensors derived from a weight at inference (its packed form,
    an upcast slice)."""
    stamp = (weight.untyped_storage().data_ptr(), _version(weight), weight.shape, weight.dtype)
    entry = getattr(weight, _ATTR, None)
    if entry is None or entry[0] != stamp:
        entry = (stamp, {})
        setattr(weight, _ATTR, entry)
    derived = entry[1]
    if key not in derived:
        derived[key] = make()
    return derived[key]


def fp32(weight: Tensor) -> Tensor:
    """`weight` in fp32 for routing or attention math: itself if fp32, a fresh (differentiable) upcast
    where a gradient is asked for it, else an upcast kept on the weight (`cached`) rather than made
    at every step."""
    if weight.dtype == torch.float32:
        return weight
    if (torch.is_grad_enabled() and weight.requires_grad) or torch.compiler.is_compiling():
        return weight.float()  # compiled: a constant that `freezing` folds once
    return cached(weight, "fp32", lambda: weight.detach().float())


def packed_weight(weight: Tensor, index: int | None = None) -> Tensor:
    """The oneDNN-packed form of `weight` (or of `weight[index]` for a stacked weight), cached."""

    def make() -> Tensor:
        plain = weight if index is None else weight[index]
        return torch.ops.mkldnn._reorder_linear_weight(plain.detach().contiguous(), 1)

    return cached(weight, ("packed", index), make)


# activation name -> (oneDNN post-op attr, algorithm) and the unfused twin.
_ACTIVATIONS = {
    "gelu": (("gelu", "none"), lambda y: F.gelu(y)),
    "gelu_tanh": (("gelu", "tanh"), lambda y: F.gelu(y, approximate="tanh")),
}


def linear(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    index: int | None = None,
    *,
    activation: str | None = None,
    residual: Tensor | None = None,
) -> Tensor:
    """`residual + activation(F.linear(x, w, bias))` with w = `weight[index]` or `weight`.

    Where `applies`, on the packed weight, with the activation or the residual add fused into the
    matmul's output (one pass over it instead of two; one bf16 rounding instead of two). Only one of
    `activation` and `residual` may be given. x (..., in) -> (..., out); residual (..., out).
    """
    if activation is not None and residual is not None:
        raise ValueError("linear fuses an activation or a residual add, not both")
    if applies(x, weight):
        packed = packed_weight(weight, index)
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, packed, bias, "add")
        attr, algorithm = ("none", "") if activation is None else _ACTIVATIONS[activation][0]
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, attr, [], algorithm)
    w = weight if index is None else weight[index]
    y = gemv.linear(x, w, bias)
    if activation is not None:
        y = _ACTIVATIONS[activation][1](y)
    return y if residual is None else residual + y


def linears(x: Tensor, weights: tuple[Tensor, ...]) -> list[Tensor]:
    """`[F.linear(x, w) for w in weights]` (no biases). Where `applies`, one packed matmul over the
    weights stacked by rows, split after: one weight read pass and one call instead of several (at
    decode each call has a fixed cost of tens of microseconds). x (..., in) -> [(..., out_i)]."""
    first = weights[0]
    if not applies(x, first) or len(weights) == 1:
        return [gemv.linear(x, w) for w in weights]
    # The stack is cached on the first weight; the others' identity and versions are part of the key.
    key = ("stack", *((id(w), _version(w)) for w in weights[1:]))
    packed = cached(
        first, key, lambda: torch.ops.mkldnn._reorder_linear_weight(torch.cat(weights).detach(), 1)
    )
    out = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
    return list(out.split([w.shape[0] for w in weights], dim=-1))


class Linear(nn.Linear):
    """`nn.Linear` (same parameters, same checkpoint keys) whose forward is `linear`: packed where it
    applies. A module call, so forward hooks on it still fire (the trainer's attention targets hook
    `o_proj`)."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


def hooked(*modules: nn.Module) -> bool:
    """Whether any of `modules` has forward hooks, which a fused call past their `forward` would skip."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)
