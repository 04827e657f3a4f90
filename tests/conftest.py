"""Shared fixtures: deterministic seeds and tiny configs."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    # CI has 2 cores; keep intra-op threads bounded so parallel work does not oversubscribe.
    torch.set_num_threads(min(2, torch.get_num_threads()))
