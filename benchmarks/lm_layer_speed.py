"""K2.5-width MoE decoder layers, routed experts in INT4: batch-1 decode time per layer against the
bytes a token reads and the machine's read bandwidth, and the whole-model projection from it.

    python -m benchmarks.lm_layer_speed [--layers 1] [--threads 1,2] [--dtype auto|bf16|fp32]
        [--prompt 128] [--steps 32] [--compile on|off] [--config k25|tiny]

Builds `--layers` MoE layers at the release's width (`LMConfig.k25()`: hidden 7168, 64 heads, MLA
q_lora 1536 / kv_lora 512 / rope 64 / nope 128 / v 128, 384 routed experts top-8 of 2048, one shared
expert) with random weights: routed experts as random INT4 bytes made directly in torch's CPU kernel
layout (never in floating point), everything else random normal in `--dtype` (auto: what
`compute.dtypes` computes in; fp32 on AVX2-only CPUs, where bf16 matmuls are emulated). Before
allocating, it says how many layers this machine's memory holds and refuses more.

Each step feeds a fresh random hidden state (so routing, with random router weights and correction
bias, spreads over the experts and successive tokens read different experts from DRAM) through the
layers; each layer attends over a latent cache of `--prompt` random latents plus the new token (the
slot is rewritten each step, so every step reads the same P + 1 keys). Reports per-layer ms (median
and best of `--steps` after 3 warm-up steps), MB read per token per layer, GB/s, the fraction of the
read bandwidth measured at the same thread count, the INT4 kernel's own GB/s on a (1 x 7168) @
(7168 x 4096) product, a profile of one step where the fraction is under 60%, and the projected
whole-model decode (a projection, not a measurement). Prints a table; the last line is the JSON,
also written to benchmarks/results/lm_layer_speed-<time>.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import machine, mem_available, memory_bandwidth, print_machine, print_table, write_json
from benchmarks.int4_layer import dequantised_twin, moe_only, random_moe_layer
from benchmarks.layer_bytes import (
    dense_layer_bytes,
    head_bytes,
    layers_that_fit,
    model_resident_bytes,
    moe_layer_bytes,
    projection,
)
from benchmarks.lm_speed import DTYPES
from compute.dtypes import compute_dtype
from mm_model.footprint import resident_bytes
from mm_model.lm.compiled import compile_static
from mm_model.lm.config import LMConfig
from mm_model.lm.int4 import GROUP_SIZE
from mm_model.lm.rope import rope_cos_sin, rope_parameters
from mm_model.lm.static_step import layer_step, register_experts

CONFIGS = {"k25": LMConfig.k25, "tiny": LMConfig.tiny}
TARGET = 0.6  # the bar: INT4 decode at >= 60% of the measured read bandwidth
WARMUP = 3
# Reference check (tiny config only: the twin materialises every expert): the INT4 path rounds its
# activations to bf16 for the kernel, so the layer's update (output - input) may differ by that much.
REFERENCE_TOLERANCE = 2e-2


def pick_dtype(name: str) -> torch.dtype:
    """--dtype: "auto" follows `compute.dtypes` for bf16 weights on the CPU (bf16 with native bf16)."""
    return DTYPES.get(name) or compute_dtype(torch.bfloat16, "cpu")


def dtype_name(dtype: torch.dtype) -> str:
    return next((name for name, d in DTYPES.items() if d == dtype), str(dtype))


class Stack(nn.Module):
    """The layers as one static-shape step (`static_step.layer_step`, experts as one custom op), what
    the compiled rows compile. h (1, 1, D) -> (1, 1, D); kv: L tensors (1, T, C + r), one per layer
    (as `DecodeStep` passes them: each write then stays in place), written at `slot`."""

    def __init__(self, layers: nn.ModuleList) -> None:
        super().__init__()
        self.layers = layers
        for layer in layers:
            register_experts(layer.mlp)

    def forward(
        self, h: Tensor, cos: Tensor, sin: Tensor, kv: tuple[Tensor, ...], slot: Tensor, mask: Tensor
    ) -> Tensor:
        for i, layer in enumerate(self.layers):
            h = layer_step(layer, h, cos, sin, kv[i], slot, mask, "op")
        return h


def eager_step(layers: nn.ModuleList, h: Tensor, cos: Tensor, sin: Tensor, kv: Tensor, prompt: int) -> Tensor:
    """The model's own eager decode path through each layer (absorbed MLA over kv[:, :P + 1])."""
    for i, layer in enumerate(layers):
        h = layer(h, cos, sin, kv=kv[i], start=prompt, absorb=True)
    return h


def time_steps(step: Any, inputs: Tensor) -> list[float]:
    """Seconds of each call `step(h)` over inputs (S, 1, 1, D), after WARMUP untimed calls."""
    for h in inputs[:WARMUP]:
        step(h)
    times = []
    for h in inputs[WARMUP:]:
        t = time.perf_counter()
        step(h)
        times.append(time.perf_counter() - t)
    return times


def kernel_alone_gb_s(experts: nn.Module, count: int = 64, repeats: int = 3) -> dict[str, float]:
    """GB/s of torch's INT4 CPU kernel alone on (1 x D) @ (D x 2I) products, over `count` different
    experts' gate_up matrices (more than any cache holds at K2.5 width), best of `repeats` passes."""
    count = min(count, experts.gate_up_packed.shape[0])
    x = torch.randn(1, experts.gate_up_packed.shape[2] * 2, dtype=torch.bfloat16)
    packed, scale = experts.gate_up_packed[:count], experts.gate_up_scale[:count]
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for e in range(count):
            torch._weight_int4pack_mm_for_cpu(x, packed[e], GROUP_SIZE, scale[e])
        best = min(best, time.perf_counter() - t)
    nbytes = count * (packed[0].numel() + scale[0].numel() * scale.element_size())
    return {"gb_s": nbytes / best / 1e9, "ms_per_matrix": best / count * 1e3,
            "shape": f"(1 x {x.shape[1]}) @ ({x.shape[1]} x {packed.shape[1]})"}  # fmt: skip


def profile_table(step: Any, inputs: Tensor) -> str:
    """torch.profiler table of a few steps, ops by self CPU time."""
    with profile(activities=[ProfilerActivity.CPU]) as p:
        for h in inputs:
            step(h)
    return p.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40)


def fit_report(cfg: LMConfig, dtype_bytes: int, prompt: int, reserve: int) -> dict[str, Any]:
    """Bytes per layer and of the whole model from the config, and how many layers this machine holds."""
    layer = moe_layer_bytes(cfg, dtype_bytes, prompt)
    available = mem_available()
    return {"moe_layer_resident": layer.resident, "dense_layer_resident": dense_layer_bytes(cfg, dtype_bytes, prompt).resident,
            "head_resident": head_bytes(cfg, dtype_bytes).resident,
            "model_resident": model_resident_bytes(cfg, dtype_bytes, prompt), "mem_available": available,
            "reserve": reserve, "layers_fit": layers_that_fit(available, layer.resident, reserve)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=list(CONFIGS), default="k25")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--threads", default="1,2", help="comma list, each timed in turn")
    parser.add_argument(
        "--dtype", choices=("auto", "bf16", "fp32"), default="auto", help="non-expert weights"
    )
    parser.add_argument("--prompt", type=int, default=128, help="cached tokens each step attends to")
    parser.add_argument("--steps", type=int, default=32, help="timed steps per case")
    parser.add_argument("--compile", choices=("on", "off"), default="on", help="also time the compiled step")
    parser.add_argument("--reserve-gb", type=float, default=4.0, help="memory left free for the machine")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    base = CONFIGS[args.config]()
    cfg = moe_only(base, args.layers)
    dtype = pick_dtype(args.dtype)
    nbytes = torch.empty((), dtype=dtype).element_size()
    fit = fit_report(base, nbytes, args.prompt, int(args.reserve_gb * 2**30))
    layer_b = moe_layer_bytes(cfg, nbytes, args.prompt)
    n_moe = base.num_hidden_layers - base.first_k_dense_replace
    print(f"{args.config}: {base.num_hidden_layers} layers ({base.first_k_dense_replace} dense, {n_moe} MoE) need "
          f"{fit['model_resident'] / 1e9:.1f} GB with INT4 experts (CPU kernel layout) and {dtype_name(dtype)} elsewhere: "
          f"{n_moe} x {layer_b.resident / 1e9:.2f} GB MoE + {base.first_k_dense_replace} x "
          f"{fit['dense_layer_resident'] / 1e9:.2f} GB dense + {fit['head_resident'] / 1e9:.2f} GB embedding/lm_head; "
          f"this machine (MemAvailable {fit['mem_available'] / 1e9:.1f} GB, keeping {args.reserve_gb:g} GiB free) "
          f"fits {fit['layers_fit']} MoE layer(s)")  # fmt: skip
    if args.layers > fit["layers_fit"]:
        raise SystemExit(f"--layers {args.layers} does not fit: {args.layers} x {layer_b.resident / 1e9:.2f} GB "
                         f"> {(fit['mem_available'] - fit['reserve']) / 1e9:.1f} GB usable; at most {fit['layers_fit']}")  # fmt: skip
    rng = np.random.default_rng(args.seed)
    t = time.perf_counter()
    layers = nn.ModuleList(random_moe_layer(cfg, dtype, rng, progress=True) for _ in range(args.layers))
    build_s = time.perf_counter() - t
    assert resident_bytes(layers) <= layer_b.resident * args.layers, "built more than the byte count says"
    gen = torch.Generator().manual_seed(args.seed)
    d, p = cfg.hidden_size, args.prompt
    inputs = torch.randn(WARMUP + args.steps, 1, 1, d, generator=gen).to(dtype)  # (S, 1, 1, D)
    kv = torch.randn(args.layers, 1, p + 1, cfg.latent_dim, generator=gen).to(dtype)  # random prompt latents
    inv_freq, factor = rope_parameters(cfg)
    cos, sin = rope_cos_sin(torch.tensor([[p]]), inv_freq, factor)  # the new token at position P
    hit: list[set[int]] = [set() for _ in layers]
    hooks = [layer.mlp.gate.register_forward_hook(lambda m, i, out, s=s: s.update(out[1].flatten().tolist()))
             for layer, s in zip(layers, hit)]  # fmt: skip
    results: dict[str, Any] = {
        "config": args.config, "layers": args.layers, "dtype": dtype_name(dtype), "prompt": p,
        "steps": args.steps, "build_s": round(build_s, 1), "fit": fit, "bytes_per_token_per_layer": layer_b.read,
        "bytes_per_token_layer_total": layer_b.read_total, "rows": [], "kernel_alone": {}, "profile": {},
        "load_avg_start": os.getloadavg()[0],
    }  # fmt: skip
    with torch.inference_mode():
        if args.config == "tiny":  # the dequantised fp32 twin on the same weights (module docstring)
            twin = nn.ModuleList(dequantised_twin(layer, cfg) for layer in layers)
            a = eager_step(layers, inputs[0], cos, sin, kv.clone(), p).float()
            b = eager_step(twin, inputs[0].float(), cos, sin, kv.float(), p)
            x = inputs[0].float()
            rel = float((a - b).abs().max() / (b - x).abs().max())
            results["reference"] = {"update_max_rel_diff": rel, "tolerance": REFERENCE_TOLERANCE}
        stack = Stack(layers)
        compiled = None
        mask = torch.ones(1, 1, 1, p + 1, dtype=torch.bool)  # the compiled step's: all P + 1 slots valid
        slot = torch.tensor([p])
        for threads in [int(n) for n in args.threads.split(",") if n]:
            torch.set_num_threads(threads)
            bandwidth = max(memory_bandwidth() for _ in range(3))
            results["kernel_alone"][threads] = kernel_alone_gb_s(layers[0].mlp.experts)
            for mode in ("eager", "compiled") if args.compile == "on" else ("eager",):
                if mode == "eager":
                    step = lambda h: eager_step(layers, h, cos, sin, kv, p)  # noqa: E731
                else:
                    if compiled is None:  # after the eager rows, whose routing the hooks count
                        for hook in hooks:  # host code the graph cannot hold
                            hook.remove()
                        compiled = compile_static(stack)
                        t = time.perf_counter()
                        out = compiled(inputs[0], cos, sin, kv.unbind(0), slot, mask)
                        results["compile_s"] = round(time.perf_counter() - t, 1)
                        ref = eager_step(layers, inputs[0], cos, sin, kv, p)
                        results["compiled_max_abs_diff"] = float((out - ref).abs().max())
                    step = lambda h, c=compiled: c(h, cos, sin, kv.unbind(0), slot, mask)  # noqa: E731
                times = time_steps(step, inputs)
                med, best = statistics.median(times) / args.layers, min(times) / args.layers
                gb_s = layer_b.read_total / med / 1e9
                proj = projection(base, med, gb_s, nbytes, p)
                results["rows"].append({
                    "threads": threads, "mode": mode, "layer_ms_median": med * 1e3, "layer_ms_best": best * 1e3,
                    "mb_per_token_layer": layer_b.read_total / 1e6, "gb_s": gb_s, "bandwidth_gb_s": bandwidth,
                    "of_bandwidth": gb_s / bandwidth, "of_bandwidth_best": layer_b.read_total / best / 1e9 / bandwidth,
                    "projected_tok_s": proj["tok_s"], "projection": proj,
                })  # fmt: skip
                if mode == "eager" and gb_s / bandwidth < TARGET and str(threads) not in results["profile"]:
                    results["profile"][str(threads)] = table = profile_table(step, inputs[:3])
                    print(
                        f"eager step at {threads} thread(s), {gb_s / bandwidth:.0%} of the bandwidth:\n{table}"
                    )
    results["distinct_experts_hit"] = [len(s) for s in hit]
    results["machine"] = machine()
    results["load_avg_end"] = os.getloadavg()[0]
    report(results, base)
    write_json(f"lm_layer_speed-{time.strftime('%Y%m%d-%H%M%S')}", results)
    return results


def report(results: dict[str, Any], base: LMConfig) -> None:
    """The human table and the lines under it."""
    print_machine(results["machine"])
    cols = ["threads", "mode", "layer_ms_median", "layer_ms_best", "mb_per_token_layer", "gb_s", "bandwidth_gb_s",
            "of_bandwidth", "projected_tok_s"]  # fmt: skip
    print_table(results["rows"], cols)
    print("MB read per token per layer: " + ", ".join(
        f"{k} {v / 1e6:.1f}" for k, v in results["bytes_per_token_per_layer"].items()))  # fmt: skip
    for threads, k in results["kernel_alone"].items():
        print(
            f"INT4 kernel alone, {threads} thread(s): {k['shape']} {k['ms_per_matrix']:.2f} ms, {k['gb_s']:.1f} GB/s"
        )
    print(f"distinct routed experts hit per layer (eager steps): {results['distinct_experts_hit']} "
          f"of {base.n_routed_experts}")  # fmt: skip
    for r in results["rows"]:
        pr = r["projection"]
        print(f"projected {base.num_hidden_layers}-layer decode on this machine ({r['threads']} thread(s), {r['mode']}; "
              f"a projection, not a measurement): {pr['moe_layers']} MoE x {r['layer_ms_median']:.1f} ms + "
              f"{pr['dense_layers']} dense {pr['dense_s_estimated'] * 1e3:.0f} ms + embedding/lm_head "
              f"{pr['head_s_estimated'] * 1e3:.0f} ms (both estimated at {r['gb_s']:.1f} GB/s) = "
              f"{pr['token_s'] * 1e3:.0f} ms -> {pr['tok_s']:.2f} tok/s")  # fmt: skip
    if "reference" in results:
        ref = results["reference"]
        print(f"INT4 layer vs dequantised fp32 twin: update max rel diff {ref['update_max_rel_diff']:.4f} "
              f"(tolerance {ref['tolerance']})")  # fmt: skip


if __name__ == "__main__":
    main()
