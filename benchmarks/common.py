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
    """Exact match of the whole string after folding case, white space and final punctuation
    ("Red." == "red"; "blue.1" != "blue")."""

    def fold(text: str) -> str:
        return " ".join(text.strip().lower().rstrip(".!?").split())

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


def mem_available() -> int:
    """MemAvailable of /proc/meminfo, in bytes (0 where unreadable): what a benchmark may still allocate."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def memory_bandwidth(megabytes: int = 512) -> float:
    """GB/s of a full read of a `megabytes` fp32 tensor (`sum`), now: the ceiling of decode, which
    reads every active weight once per token."""
    x = torch.ones(megabytes * 2**20 // 4)
    seconds = best_time(lambda: x.sum(), repeats=5)
    return x.numel() * 4 / seconds / 1e9


# /proc/cpuinfo flags that decide which matmul kernels a CPU gets, fastest first.
MATMUL_FLAGS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")


def cpu_kind() -> dict[str, Any]:
    """The CPU's model name and matmul-relevant flags, and a short name for its kind: "AMX",
    "AVX512-BF16" or "AVX2-only" (what the README's speed rows are named by)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    flags = set(
        next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    )
    model = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    present = [f for f in MATMUL_FLAGS if f in flags]
    if "amx_bf16" in flags:
        kind = "AMX"
    elif "avx512_bf16" in flags:
        kind = "AVX512-BF16"
    elif "avx2" in flags:
        kind = "AVX2-only"
    else:
        kind = "other"
    return {"model": model, "flags": present, "kind": kind}  # fmt: skip


def machine(ceilings: bool = False) -> dict[str, Any]:
    """Versions, threads and the CPU; with `ceilings`, also the bf16 and fp32 matmul GFLOP/s and the
    memory bandwidth measured now (printed by `print_machine`)."""
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpus": os.cpu_count(),
        "cpu": cpu_kind(),
    }
    if ceilings:
        info["matmul_gflops"] = {
            "bf16": matmul_ceiling(torch.bfloat16),
            "fp32": matmul_ceiling(torch.float32),
        }
        info["bandwidth_gb_s"] = memory_bandwidth()
    return info


def print_machine(info: dict[str, Any]) -> None:
    """One line a reader can match to their own machine."""
    cpu = info["cpu"]
    line = f"CPU: {cpu['model']} ({cpu['kind']}: {' '.join(cpu['flags']) or 'no matmul flags'}), {info['threads']} threads"
    if "matmul_gflops" in info:
        g = info["matmul_gflops"]
        line += f"; matmul ceiling bf16 {g['bf16']:.0f} / fp32 {g['fp32']:.0f} GFLOP/s; memory {info['bandwidth_gb_s']:.1f} GB/s"
    print(line)


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
