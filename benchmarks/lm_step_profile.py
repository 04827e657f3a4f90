"""Where one batch-1 decode step spends its time: `torch.profiler` tables of the eager step and the
compiled step on the lm_speed config (random weights).

    python -m benchmarks.lm_step_profile [--threads 1] [--dtype fp32] [--experts op] [--no-eager]
        [--options "{'freezing': True}"] [--cache-lengths 256,4096,16384]

--options replaces the step's inductor options (default `compiled.INDUCTOR_OPTIONS`).

Prints the active weight bytes a token reads, the measured read bandwidth, ms per step (median-free:
32 steps after 8 warm-up steps, one run) and the profiler's top ops by self time; the last line is JSON.

`--cache-lengths` adds the compiled step's ms per step against the cache's preallocated length
(prompt + max_new_tokens in `generate`) with the same 128-token prompt: attending over the filled
blocks only (the step's default) and over the whole cache.
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile
from tqdm import tqdm

from benchmarks.common import memory_bandwidth
from benchmarks.lm_speed import BENCH_CONFIG, DTYPES, build_pair, decode_bytes_per_token
from mm_model.generation import decode_one_token, prefill
from mm_model.lm.compiled import INDUCTOR_OPTIONS, DecodeStep

PROMPT, CACHE = 128, 256


def _ms_per_step(model, step: Callable, ids: torch.Tensor, cache_length: int = CACHE) -> tuple:
    """(ms per step over 32 steps after 8 warm-up steps, the cache, the last tokens (1,))."""
    cache = model.new_cache(1, cache_length)
    tok = prefill(model, ids, cache).argmax(-1)
    for i in range(8):
        tok = step(tok, cache, torch.tensor([PROMPT + i])).argmax(-1)
    t = time.perf_counter()
    for i in range(8, 40):
        tok = step(tok, cache, torch.tensor([PROMPT + i])).argmax(-1)
    return (time.perf_counter() - t) / 32 * 1e3, cache, tok


def _profile(label: str, model, step: Callable, ids: torch.Tensor) -> float:
    """ms per step over 32 steps, then a profiler table over 5 more."""
    ms, cache, tok = _ms_per_step(model, step, ids)
    print(f"{label}: {ms:.1f} ms/step")
    with profile(activities=[ProfilerActivity.CPU]) as p:
        for i in range(40, 45):
            tok = step(tok, cache, torch.tensor([PROMPT + i])).argmax(-1)
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=48))
    return ms


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    parser.add_argument(
        "--experts", default=None, help="op, gather, reduce or loop (default: the step's own choice)"
    )
    parser.add_argument("--no-eager", action="store_true")
    parser.add_argument("--options", default=str(INDUCTOR_OPTIONS), help="inductor options (a dict literal)")
    parser.add_argument("--cache-lengths", default="", help="comma-separated preallocated cache lengths")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, _ = build_pair(BENCH_CONFIG, DTYPES[args.dtype])
    per_token = decode_bytes_per_token(model)
    gb_s = max(memory_bandwidth() for _ in range(3))
    print(f"active weights {per_token / 1e6:.0f} MB/token; read bandwidth {gb_s:.1f} GB/s; "
          f"limit {gb_s * 1e9 / per_token:.1f} tok/s")  # fmt: skip
    ids = torch.randint(0, BENCH_CONFIG.vocab_size, (1, PROMPT), generator=torch.Generator().manual_seed(0))
    out = {"threads": args.threads, "dtype": args.dtype, "options": args.options,
           "bytes_per_token": per_token, "bandwidth_gb_s": round(gb_s, 1)}  # fmt: skip
    with torch.inference_mode():
        if not args.no_eager:
            out["eager_ms"] = _profile("eager forward", model, lambda *a: decode_one_token(model, *a), ids)
        step = DecodeStep(model, experts=args.experts, options=ast.literal_eval(args.options))
        out["experts"] = step.experts
        t = time.perf_counter()
        cache = model.new_cache(1, CACHE)
        # The token from the prefill, as in generation: an inference tensor (a slice of `ids`, made
        # outside inference mode, would be another guard and a second compile).
        step(prefill(model, ids, cache).argmax(-1), cache, torch.tensor([PROMPT]))
        out["compile_s"] = round(time.perf_counter() - t, 1)
        out["compiled_ms"] = _profile(f"compiled ({step.experts}, {args.options})", model, step, ids)
        if args.cache_lengths:
            out["by_cache_length"] = _by_cache_length(model, step, ids, args.cache_lengths)
    print(json.dumps(out))
    return out


def _by_cache_length(model, step: DecodeStep, ids: torch.Tensor, lengths: str) -> list[dict]:
    """The compiled step's ms per step by preallocated cache length, filled blocks vs whole cache."""
    rows, block = [], step.block
    print("cache slots | filled blocks ms/step | whole cache ms/step")
    for n in tqdm([int(x) for x in lengths.split(",")], desc="cache lengths"):
        row = {"cache_slots": n}
        for key, b in (("blocks_ms", block), ("whole_ms", n)):
            step.block = b
            row[key] = round(_ms_per_step(model, step, ids, n)[0], 1)
        step.block = block
        print(f"{n:>11} | {row['blocks_ms']:>21} | {row['whole_ms']:>19}")
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
