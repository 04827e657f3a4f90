"""LM tests run tiny models: one intra-op thread is faster for them, and on a shared 2-core machine
two OpenMP threads stall on every op whenever the other core is busy (measured 50x slower)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
