"""Fixtures for the video tests; the synthetic-video helpers live in `videogen.py`.

Test modules import those helpers as `from videogen import ...`: pytest puts this folder (it has no
`__init__.py`) on `sys.path`, whether it is run as `pytest` or `python -m pytest`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from videogen import write_video


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """`make_video(name, codec, **kw)` -> path of a stamped video in this test's tmp dir."""

    def make(name: str, codec: str = "libx264", **kw: object) -> Path:
        return write_video(tmp_path / name, codec, **kw)

    return make
