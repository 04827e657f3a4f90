"""One-row fp32 products cut into per-thread row blocks (`compute.gemv`): same values as `F.linear`,
taken only where they pay, and traceable whole by `torch.compile`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from compute import gemv, prepack


@pytest.fixture
def two_threads(monkeypatch):
    monkeypatch.delenv(gemv.ENV, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("shape", [(1, 1024), (1, 1, 1024)])
@pytest.mark.parametrize("bias", [False, True])
def test_split_linear_equals_linear(two_threads, shape, bias):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2048, 1024, generator=g)
    b = torch.randn(2048, generator=g) if bias else None
    x = torch.randn(shape, generator=g)
    assert gemv.worth_splitting(x, w)
    got = gemv.split_linear(x, w, b)
    assert got.shape == (*shape[:-1], 2048)
    # The blocks are the same gemvs on row ranges: equal on the CPUs tried; a tolerance for others.
    torch.testing.assert_close(got, F.linear(x, w, b), rtol=1e-6, atol=1e-5)


def test_split_only_where_it_pays(two_threads, monkeypatch):
    w = torch.randn(1024, 1024)  # 4 MB
    x = torch.randn(1, 1024)
    assert gemv.worth_splitting(x, w)
    assert not gemv.worth_splitting(torch.randn(2, 1024), w)  # two rows: a real matmul, threaded
    assert not gemv.worth_splitting(x.bfloat16(), w.bfloat16())  # bf16: oneDNN's own threads
    assert not gemv.worth_splitting(x[:, :128], torch.randn(1024, 128))  # 512 KB: not worth it
    assert not gemv.worth_splitting(x, torch.randn(1023, 1024))  # rows not divisible into blocks
    assert not gemv.worth_splitting(x, torch.randn(1024, 1024).t())  # blocks of it would not be views
    monkeypatch.setenv(gemv.ENV, "0")
    assert not gemv.worth_splitting(x, w)
    monkeypatch.delenv(gemv.ENV)
    torch.set_num_threads(1)
    assert not gemv.worth_splitting(x, w)


def test_model_linears_take_the_split(two_threads):
    """The LM's and vision tower's `prepack.Linear` runs a one-row fp32 product as one bmm."""
    layer = prepack.Linear(1024, 2048, bias=False)
    with torch.no_grad(), torch.profiler.profile() as prof:
        layer(torch.randn(1, 1, 1024))
    ops = {e.key for e in prof.key_averages()}
    assert "aten::bmm" in ops and "aten::mm" not in ops


def test_compiles_whole(two_threads):
    w = torch.randn(2048, 1024)
    x = torch.randn(1, 1024)
    compiled = torch.compile(lambda x: gemv.linear(x, w), fullgraph=True, dynamic=False)
    torch.testing.assert_close(compiled(x), F.linear(x, w), rtol=1e-5, atol=1e-4)
