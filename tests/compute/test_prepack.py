"""Prepacked linear layers: the same numbers as `F.linear`, and a cache that follows the weight."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from compute import prepack

# oneDNN's bf16 kernels need AVX512BW/VL/DQ or AVX-NE-CONVERT; an AVX2-only CPU has none, and there
# the packed path must stay off (test_no_packed_path_without_onednn_bf16)
ONEDNN_BF16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


@pytest.fixture
def packed_path(monkeypatch):
    """The packed path switched on whatever this CPU is: oneDNN runs bf16 on AVX512 CPUs without
    native bf16 too (slowly), so its numbers can be checked there."""
    if not ONEDNN_BF16:
        pytest.skip("this CPU has no oneDNN bf16 kernels (AVX2 only): the packed path cannot run here")
    prepack._available.cache_clear()
    monkeypatch.setattr("compute.dtypes.cpu_has_fast_bf16", lambda: True)
    if not prepack._available():
        pytest.fail("oneDNN's packed linear ops are missing from this torch build")
    yield
    prepack._available.cache_clear()


@pytest.mark.skipif(ONEDNN_BF16, reason="this CPU has oneDNN bf16 kernels: the packed tests cover it")
def test_no_packed_path_without_onednn_bf16(monkeypatch):
    """Even told the CPU is fast at bf16, an AVX2-only CPU keeps the plain path, with F.linear's numbers."""
    prepack._available.cache_clear()
    monkeypatch.setattr("compute.dtypes.cpu_has_fast_bf16", lambda: True)
    try:
        assert not prepack._available()
        x, w, b = _operands()
        with torch.inference_mode():
            assert not prepack.applies(x, w[0])
            assert torch.equal(prepack.linear(x, w[0], b), F.linear(x, w[0], b))
    finally:
        prepack._available.cache_clear()


def _operands(rows: int = 5, n_in: int = 24, n_out: int = 40):
    x = torch.randn(rows, n_in).bfloat16()
    w = torch.randn(3, n_out, n_in).bfloat16()  # stacked, like the routed experts
    b = torch.randn(n_out).bfloat16()
    return x, w, b


def test_packed_equals_linear(packed_path):
    x, w, b = _operands()
    with torch.inference_mode():
        assert prepack.applies(x, w)
        for index in (None, 1):
            plain = w if index is None else w[index]
            if index is None:
                plain, bias = w[0], b
                got = prepack.linear(x, w[0], bias)
            else:
                bias = None
                got = prepack.linear(x, w, None, index)
            assert torch.equal(got, F.linear(x, plain, bias))
        assert torch.equal(prepack.linear(x[None], w[0], b), F.linear(x[None], w[0], b))  # (1, rows, in)


def test_fused_activation_and_residual(packed_path):
    x, w, b = _operands()
    residual = torch.randn(5, 40).bfloat16()
    with torch.inference_mode():
        exact = F.linear(x.float(), w[0].float(), b.float())
        for name, fn in [("gelu", F.gelu), ("gelu_tanh", lambda y: F.gelu(y, approximate="tanh"))]:
            got = prepack.linear(x, w[0], b, activation=name).float()
            # One bf16 rounding of the fused output vs two: within a couple of bf16 ulps.
            assert torch.allclose(got, fn(exact), rtol=2e-2, atol=2e-2)
        got = prepack.linear(x, w[0], b, residual=residual).float()
        assert torch.allclose(got, residual.float() + exact, rtol=2e-2, atol=5e-2)
    with pytest.raises(ValueError, match="not both"):
        prepack.linear(x, w[0], b, activation="gelu", residual=residual)


def test_cache_follows_in_place_updates(packed_path):
    x, w, _ = _operands()
    with torch.inference_mode():
        first = prepack.linear(x, w, None, 2)
        w[2].mul_(-1)  # bumps the version: the packed copy must be rebuilt
        assert torch.equal(prepack.linear(x, w, None, 2), -first)


def test_plain_path_where_it_does_not_apply(packed_path):
    x, w, b = _operands()
    assert not prepack.applies(x.float(), w[0].float())  # fp32
    leaf = w[0].clone().requires_grad_(True)
    assert not prepack.applies(x, leaf)  # training: oneDNN's packed op has no backward
    out = prepack.linear(x, leaf, b)
    out.float().sum().backward()
    assert leaf.grad is not None and not hasattr(leaf, prepack._ATTR)
