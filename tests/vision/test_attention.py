"""Packed attention backends: the fast path equals its slow twin, and items never see each other."""

from __future__ import annotations

import pytest
import torch

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


@pytest.mark.parametrize("backend", ["sdpa", "mask"])
def test_items_are_isolated(backend):
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


def test_backend_selection():
    assert select_backend(torch.device("cpu"), torch.float32) == "sdpa"
    assert select_backend(torch.device("cpu"), torch.float32, "mask") == "mask"
    with pytest.raises(ValueError, match="flash"):
        select_backend(torch.device("cpu"), torch.bfloat16, "flash")
    with pytest.raises(ValueError, match="not one of"):
        select_backend(torch.device("cpu"), torch.float32, "xformers")
