"""Packed attention backends: the fast path equals its slow twin, and items never see each other."""

from __future__ import annotations

import pytest
import torch

import vision.attention as attention
from vision.attention import packed_attention, select_backend
from vision.packing import attention_runs, cu_seqlens

CASES = {
    "single": [12],
    "equal_run": [8, 8, 8],
    "mixed": [6, 6, 10, 3, 3, 7],
}


def _qkv(n: int):
    return (torch.randn(n, 3, 8) for _ in range(3))


@pytest.mark.parametrize("lengths", CASES.values(), ids=CASES.keys())
def test_sdpa_runs_equal_block_mask(lengths):
    q, k, v = _qkv(sum(lengths))
    cu, runs = cu_seqlens([(1, 1, n) for n in lengths]), attention_runs(lengths)
    fast = packed_attention(q, k, v, cu, lengths, runs, "sdpa")
    slow = packed_attention(q, k, v, cu, lengths, runs, "mask")
    diff = (fast - slow).abs().max().item()
    assert diff < 1e-5, f"max diff {diff}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_blocked_equals_block_mask(monkeypatch, dtype):
    """Long items in query blocks (here several blocks per item), short ones on SDPA, in one pack.

    Tolerance against the fp32 answer: fp32 1e-5; bf16 2e-2 at most (outputs are O(1); a few bf16
    ulps) and a mean error within 6x that of the fused SDPA kernel on the same bf16 inputs (the
    blocked form rounds its scores to bf16, as eager bf16 attention does; SDPA keeps them fp32)."""
    monkeypatch.setattr(attention, "BLOCKED_MIN_LEN", 16)
    monkeypatch.setattr(attention, "_BLOCK_SCORES", 40)  # the 16-row floor: 3 blocks per long item
    lengths = [40, 40, 9, 23]
    q, k, v = (torch.randn(sum(lengths), 3, 8).to(dtype) for _ in range(3))
    cu, runs = cu_seqlens([(1, 1, n) for n in lengths]), attention_runs(lengths)
    blocked = packed_attention(q, k, v, cu, lengths, runs, "blocked").float()
    exact = packed_attention(q.float(), k.float(), v.float(), cu, lengths, runs, "mask")
    if dtype == torch.float32:
        assert (blocked - exact).abs().max().item() < 1e-5
    else:
        fused = packed_attention(q, k, v, cu, lengths, runs, "sdpa").float()
        assert (blocked - exact).abs().max().item() < 2e-2
        assert (blocked - exact).abs().mean() <= 6 * (fused - exact).abs().mean()


@pytest.mark.parametrize("backend", ["sdpa", "blocked", "mask"])
def test_items_are_isolated(monkeypatch, backend):
    monkeypatch.setattr(attention, "BLOCKED_MIN_LEN", 1)
    lengths = [5, 7, 5]
    q, k, v = _qkv(sum(lengths))
    cu, runs = cu_seqlens([(1, 1, n) for n in lengths]), attention_runs(lengths)
    before = packed_attention(q, k, v, cu, lengths, runs, backend)
    k2, v2 = k.clone(), v.clone()
    k2[5:12] += 3 * torch.randn(7, 3, 8)  # change only the middle item
    v2[5:12] += 3 * torch.randn(7, 3, 8)
    after = packed_attention(q, k2, v2, cu, lengths, runs, backend)
    assert torch.equal(before[:5], after[:5]) and torch.equal(before[12:], after[12:])
    assert not torch.allclose(before[5:12], after[5:12])


def test_backend_selection(monkeypatch):
    assert select_backend(torch.device("cpu"), torch.float32) == "sdpa"
    monkeypatch.setattr(attention, "cpu_has_fast_bf16", lambda: True)
    assert select_backend(torch.device("cpu"), torch.bfloat16) == "blocked"
    monkeypatch.setattr(attention, "cpu_has_fast_bf16", lambda: False)
    assert select_backend(torch.device("cpu"), torch.bfloat16) == "sdpa"
    assert select_backend(torch.device("cpu"), torch.float32, "mask") == "mask"
    with pytest.raises(ValueError, match="flash"):
        select_backend(torch.device("cpu"), torch.bfloat16, "flash")
    with pytest.raises(ValueError, match="not one of"):
        select_backend(torch.device("cpu"), torch.float32, "xformers")
