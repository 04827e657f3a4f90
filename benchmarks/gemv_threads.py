"""One-row fp32 products (batch-1 decode's) at 1 and 2 threads: `F.linear` vs the MKL-packed linear
inductor's freezing makes vs `compute.gemv`'s bmm over one row block per thread.

    python -m benchmarks.gemv_threads [--threads 1,2] [--repeats 5]

Each weight shape is timed over a set of distinct weights (256 MB in all, cycled) so every product
reads its weight from DRAM, as a decode step does, not from cache. Prints GB/s of weight read per
product and the split's speed-up over `F.linear`; the last line is the JSON.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from benchmarks.common import machine, memory_bandwidth, print_machine, print_table, write_json
from compute import gemv

# (out, in): lm_speed config's lm_head, dense MLP, attention output, q_b, routed expert gate_up and down
SHAPES = ((32768, 1024), (2816, 1024), (1024, 1024), (1536, 512), (512, 1024), (1024, 256))
POOL_BYTES = 256 << 20


def _gb_s(fn: Any, weights: list[torch.Tensor], x: torch.Tensor, repeats: int) -> float:
    """GB/s of weight read, best of `repeats` passes over all `weights`."""
    best = float("inf")
    for _ in range(repeats + 1):  # the first pass warms up
        t = time.perf_counter()
        for w in weights:
            fn(x, w)
        best = min(best, time.perf_counter() - t)
    return sum(w.numel() * 4 for w in weights) / best / 1e9


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rows = []
    with torch.inference_mode():
        for threads in [int(t) for t in args.threads.split(",") if t]:
            torch.set_num_threads(threads)
            bandwidth = max(memory_bandwidth() for _ in range(3))
            for n, k in tqdm(SHAPES, desc=f"gemv, {threads} thread(s)", unit="shape"):
                count = max(2, POOL_BYTES // (n * k * 4))
                weights = [torch.randn(n, k) for _ in range(count)]
                packed = {id(w): torch.ops.mkl._mkl_reorder_linear_weight(w, 1) for w in weights}
                x = torch.randn(1, k)
                plain = _gb_s(lambda x, w: F.linear(x, w), weights, x, args.repeats)
                mkl = _gb_s(
                    lambda x, w, p=packed: torch.ops.mkl._mkl_linear(x, p[id(w)], w, None, 1),
                    weights,
                    x,
                    args.repeats,
                )
                split = _gb_s(gemv.split_linear, weights, x, args.repeats)
                rows.append({"threads": threads, "weight": f"{n}x{k}", "MB": round(n * k * 4 / 1e6, 1),
                             "F.linear GB/s": plain, "MKL packed GB/s": mkl, "split bmm GB/s": split,
                             "split / F.linear": split / plain, "read bandwidth GB/s": bandwidth})  # fmt: skip
    info = machine()
    print_machine(info)
    print_table(rows, list(rows[0]))
    payload = {"machine": info, "rows": rows}
    write_json(f"gemv_threads-{time.strftime('%Y%m%d-%H%M%S')}", payload)
    return payload


if __name__ == "__main__":
    main()
