"""One-row fp32 products (batch-1 decode) spread over the CPU's threads.

torch's fp32 matrix-vector product runs on one thread whatever `torch.get_num_threads()` says. On a
2-core AVX2 EPYC (`python -m benchmarks.gemv_threads`, weights read from DRAM) a (1 x 1024) x
(32768 x 1024) product read its weight at 14.8 GB/s with plain `F.linear` at 1 thread and 15.0 at 2;
inductor's MKL-packed linear 19.4 and 21.1. A decode step, little but such products, so read its
weights at about one core's rate. `torch.bmm` does spread its batch over the threads: the weight's
output rows cut into one block per thread, each block a batch entry (a view, nothing copied), the
same product read at 24.4 GB/s on 2 threads; 1.22-1.63x over `F.linear` from 1 MB weights up
(`docs/bench/compiled_decode/attempt2/`). Each block is the same gemv over its rows, so the values
came out equal to `F.linear`'s here.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

ENV = "MM_MODEL_SPLIT"

# Weights below this many bytes stay on one thread: the split's fixed cost is then about its gain
# (2 threads: a (1024 x 256) fp32 weight, 127 -> 100 us; smaller ones were not measured to gain).
MIN_SPLIT_BYTES = 1 << 20


@torch.compiler.assume_constant_result  # a graph is compiled for one thread count, as inductor's kernels are
def parts() -> int:
    """How many blocks a product is cut into: torch's intra-op thread count, or 1 with `MM_MODEL_SPLIT=0`."""
    return 1 if os.environ.get(ENV, "1") == "0" else max(1, torch.get_num_threads())


def worth_splitting(x: Tensor, weight: Tensor) -> bool:
    """Whether `linear(x, weight)` is a product `split_linear` speeds up: one row on the CPU, fp32
    operands (bf16 goes to oneDNN, which has threads of its own), a contiguous weight of
    `MIN_SPLIT_BYTES` or more whose rows divide into `parts()` > 1 blocks."""
    n = parts()
    return (
        n > 1
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.numel() == x.shape[-1]
        and weight.dim() == 2
        and weight.is_contiguous()  # the row blocks are a view
        and weight.shape[0] % n == 0
        and weight.numel() * 4 >= MIN_SPLIT_BYTES
    )


def split_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`F.linear(x, weight, bias)` for one row, as a `bmm` over `parts()` row blocks of the weight (one
    per thread). x (..., K) holding one row, weight (N, K) -> (..., N)."""
    n = parts()
    rows, k = weight.shape
    blocks = weight.view(n, rows // n, k).transpose(1, 2)  # (P, K, N/P), a view
    out = torch.bmm(x.reshape(1, 1, k).expand(n, 1, k), blocks).reshape(*x.shape[:-1], rows)
    return out if bias is None else out + bias


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`F.linear`, split over the threads where `worth_splitting`."""
    return split_linear(x, weight, bias) if worth_splitting(x, weight) else F.linear(x, weight, bias)
