"""Shared helpers for benchmark scripts: timing, a matmul ceiling, table printing and JSON output."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def same_answer(reply: str, answer: str) -> bool:
    """Exact match after folding case, whitespace and a final full stop (open-ended answers)."""

    def fold(text: str) -> str:
        return " ".join(text.strip().lower().rstrip(".").split())

    return fold(reply) == fold(answer)


def best_time(fn: Callable[[], Any], repeats: int = 2, warmup: int = 1) -> float:
    """Minimum wall time of `fn` over `repeats` runs after `warmup` runs (noisy machines: take the min)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_ceiling(dtype: torch.dtype, m: int = 2048, k: int = 1152, n: int = 4304) -> float:
    """GFLOP/s of `F.linear` on (m x k) activations and an (n x k) weight in `dtype`, now.

    `F.linear`, not `a @ b`: it is what `nn.Linear` layers run, and on some CPUs the two take
    different bf16 kernels.
    """
    x = torch.randn(m, k, dtype=dtype)
    w = torch.randn(n, k, dtype=dtype)
    with torch.inference_mode():
        seconds = best_time(lambda: torch.nn.functional.linear(x, w), repeats=3)
    return 2 * m * k * n / seconds / 1e9


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpus": os.cpu_count(),
    }


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    def fmt(v: Any) -> str:
        return f"{v:,.2f}" if isinstance(v, float) else str(v)

    widths = [max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(fmt(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)))


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """Save under benchmarks/results/ and print as the last line (for scripts that parse it)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    text = json.dumps(payload, default=str)
    path.write_text(text + "\n")
    print(text)
    return path
