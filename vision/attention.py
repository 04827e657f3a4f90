"""Attention confined to each packed item (block-diagonal, non-causal), with interchangeable backends.

- "flash": `flash_attn_varlen_func` over `cu_seqlens` (CUDA, fp16/bf16, flash-attn installed).
- "sdpa": one `scaled_dot_product_attention` call per run of consecutive equal-length items, on a
  free (count, L, H, D) view; every chunk of one video is a single batched call.
- "blocked": for CPUs with native bf16; long items are computed per head as query blocks of
  explicit bf16 `mm` -> softmax -> `mm`, the arithmetic of transformers' eager attention in bf16
  (scores rounded to bf16, softmax accumulated in fp32). On a 2-core AVX512-BF16 EPYC, for a
  4,784-patch screenshot at k25 widths (16 heads of 72), SDPA's fused CPU kernel took 0.92-1.09 s
  and the blocked form 0.55-0.60 s, against a 350-400 GFLOP/s bf16 matmul ceiling. Items shorter than
  `BLOCKED_MIN_LEN` stay on SDPA, which is as fast there.
- "mask": one SDPA call over the whole pack with a block-diagonal boolean mask; O(N^2) memory,
  kept as the slow twin that tests check the fast paths against.

Never pads items to a common length.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor

from compute.dtypes import cpu_has_fast_bf16

BACKENDS = ("auto", "flash", "sdpa", "blocked", "mask")
BLOCKED_MIN_LEN = 512  # shorter items: SDPA
_BLOCK_SCORES = 1 << 21  # score elements per block and head (4 MiB of bf16)
_BLOCK_ROWS = 1024


@cache
def _flash_varlen():
    try:
        from flash_attn import flash_attn_varlen_func
    except Exception:  # ImportError, or a broken CUDA build: fall back silently, flash is optional
        return None
    return flash_attn_varlen_func


def select_backend(device: torch.device, dtype: torch.dtype, requested: str = "auto") -> str:
    """Resolve "auto" to the fastest backend available for this device and dtype."""
    if requested not in BACKENDS:
        raise ValueError(f"attention backend {requested!r} is not one of {BACKENDS}")
    if requested != "auto":
        if requested == "flash" and (device.type != "cuda" or _flash_varlen() is None):
            raise ValueError("attention backend 'flash' needs CUDA and the flash-attn package (extra 'gpu')")
        return requested
    if device.type == "cuda" and dtype in (torch.float16, torch.bfloat16) and _flash_varlen() is not None:
        return "flash"
    if device.type == "cpu" and dtype == torch.bfloat16 and cpu_has_fast_bf16():
        return "blocked"
    return "sdpa"


def packed_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    cu_seqlens: Tensor,
    seqlens: Sequence[int],
    runs: Sequence[tuple[int, int, int]],
    backend: str = "sdpa",
) -> Tensor:
    """Attention within each item of a pack.

    Args:
        q, k, v: (N, H, D).
        cu_seqlens: (M+1,) int32 item boundaries (used by "flash" and "mask").
        seqlens: per-item lengths as Python ints; runs: (first item, count, length) groups.
    Returns:
        (N, H, D).
    """
    if backend == "flash":
        max_len = max(seqlens)
        cu = cu_seqlens.to(device=q.device, dtype=torch.int32)
        return _flash_varlen()(q, k, v, cu, cu, max_len, max_len, causal=False)
    if backend == "mask":
        return _masked(q, k, v, cu_seqlens)
    if backend not in ("sdpa", "blocked"):
        raise ValueError(f"attention backend {backend!r} is not one of {BACKENDS}")

    def run(q: Tensor, k: Tensor, v: Tensor, count: int, length: int) -> Tensor:
        if backend == "blocked" and length >= BLOCKED_MIN_LEN:
            return _blocked_run(q, k, v, count, length)
        return _sdpa_run(q, k, v, count, length)

    if len(runs) == 1:  # a single run writes straight to the output, no copy
        _, count, length = runs[0]
        return run(q, k, v, count, length)
    out = torch.empty_like(q)
    start = 0
    for _, count, length in runs:
        end = start + count * length
        out[start:end] = run(q[start:end], k[start:end], v[start:end], count, length)
        start = end
    return out


def _sdpa_run(q: Tensor, k: Tensor, v: Tensor, count: int, length: int) -> Tensor:
    """`count` items of `length` patches each, as one batched SDPA call. (count*L, H, D) -> same."""
    heads, dim = q.shape[1:]

    def batch(x: Tensor) -> Tensor:
        return x.view(count, length, heads, dim).transpose(1, 2)  # (count, H, L, D), a view

    out = F.scaled_dot_product_attention(batch(q), batch(k), batch(v))
    return out.transpose(1, 2).reshape(count * length, heads, dim)


def _blocked_run(q: Tensor, k: Tensor, v: Tensor, count: int, length: int) -> Tensor:
    """`count` items of `length` patches, attended one item, one head and one block of queries at a
    time, so the (rows, length) scores stay cache-sized. (count*L, H, D) -> same.

    Per head 2D matmuls measured faster than one batched bmm over the heads (4,784 patches: 0.55 s
    against 0.67 s), with blocks of about `_BLOCK_SCORES` scores (at most `_BLOCK_ROWS` rows)."""
    heads, dim = q.shape[1:]
    rows = min(_BLOCK_ROWS, max(16, _BLOCK_SCORES // length))
    out = torch.empty_like(q)
    for i in range(count):
        item = slice(i * length, (i + 1) * length)
        qh = (q[item] * dim**-0.5).transpose(0, 1).contiguous()  # (H, L, D); scaled once, before the mm
        kt = k[item].permute(1, 2, 0).contiguous()  # (H, D, L)
        vh = v[item].transpose(0, 1).contiguous()  # (H, L, D)
        oh = torch.empty_like(qh)
        for h in range(heads):
            for s in range(0, length, rows):
                probs = torch.softmax(torch.mm(qh[h, s : s + rows], kt[h]), dim=-1)  # (rows, L)
                torch.mm(probs, vh[h], out=oh[h, s : s + rows])
        out[item] = oh.transpose(0, 1)
    return out


def _masked(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor) -> Tensor:
    n = q.shape[0]
    item = torch.bucketize(torch.arange(n, device=q.device), cu_seqlens[1:].to(q.device), right=True)
    mask = item[:, None] == item[None, :]  # (N, N) True = may attend
    out = F.scaled_dot_product_attention(
        q.transpose(0, 1).unsqueeze(0),
        k.transpose(0, 1).unsqueeze(0),
        v.transpose(0, 1).unsqueeze(0),
        attn_mask=mask,
    )
    return out.squeeze(0).transpose(0, 1)
