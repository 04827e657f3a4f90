"""The decode step, compiled by inductor where the user asks for it, eager otherwise.

Compiling costs time once per process and batch size (the cache length is a symbol in the graph), so
where it is on is chosen by the surface: off for `load` and one CLI answer (`load(..., compile=True)`
or `MM_MODEL_COMPILE=1` turn it on), on for the server and the demo, which pay the compile at start-up
(`warm_up`) and then serve many answers (`MM_MODEL_COMPILE=0` or `--compile off` turn it off). A
machine without a C++ compiler, or a compile that fails, falls back to the eager step with one printed
line.

`use_decode_step(model, step)` puts a `DecodeStep` on the model, where `generation.decode_one_token`
finds it; the prefill keeps the model's own forward.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from mm_model.lm.cache import LatentCache
from mm_model.lm.model import DeepseekV3LM
from mm_model.lm.moe import Experts, MoE
from mm_model.lm.static_step import EXPERT_IMPLS, decode_step, register_model
from vision.errors import InputError

ENV = "MM_MODEL_COMPILE"

# The compiled step attends over the cache's first `attended_slots` slots, a multiple of this, not
# the whole preallocated length (prompt + max_new_tokens): the step's time grows with the slots it
# reads. The length is a symbol in the graph, so a new multiple reuses it.
CACHE_BLOCK = 256

# Inductor sums more than this many fp32 terms in chunks (`need_use_acc_helper` in its C++ codegen),
# so the graph is specialised to an attended span of at most this many slots, and a longer span
# compiles a second graph once; `warm_up` pays for both.
LONG_SPAN = 4096

# Inductor settings for the step. `freezing` makes the weights graph constants, which lets inductor
# fold the per-step weight casts and pack the linear weights once (oneDNN for bf16, MKL for fp32).
# `cpp_wrapper` runs the graph's calls from C++ rather than Python: 25.6-28.0 ms a step against
# 26.8-31.0 without it, each run beside one without (lm_speed config, fp32, 2 threads, 2-core AVX2
# EPYC), for a compile 15 s longer (52-57 vs 37-40 s). Measured there and not kept: concat-linear (28.3
# alone, 27.5-28.2 with cpp_wrapper) and max_autotune with the CPP GEMM template (28.6).
# docs/bench/compiled_decode/session3/inductor_options.txt
INDUCTOR_OPTIONS: dict[str, Any] = {"freezing": True, "cpp_wrapper": True}


def compile_requested(compile: bool | None = None, default: bool = False) -> bool:
    """`compile` when given, else `MM_MODEL_COMPILE` ("1" on, "0" off), else `default`."""
    if compile is not None:
        return compile
    value = os.environ.get(ENV, "").strip()
    if value not in ("0", "1", ""):
        raise InputError(f"{ENV} must be 0 or 1, got {value!r}")
    return default if value == "" else value == "1"


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would call on the CPU, or None when there is none."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


# The routed experts' formulation where the experts are plain stacked weights: "reduce" keeps them in
# the graph, where inductor reads the k chosen experts' rows in place and spreads the work over the
# threads (lm_speed config, fp32, 2-core AVX2 EPYC, with freezing in force: 44.2 ms a step at 1
# thread and 34.1 at 2, against the custom op's 52.0 and 44.2, whose host loop and one-thread gemvs
# stay outside the graph; docs/bench/compiled_decode). INT4 experts, which the stacked-weight
# formulations cannot hold, and bf16 ones (prepacked inside the op on native-bf16 CPUs; "reduce" not
# measured there) take the custom op ("op").
DEFAULT_EXPERTS = "reduce"


def default_experts(model: DeepseekV3LM) -> str:
    """`DEFAULT_EXPERTS` for plain fp32 stacked experts, else "op"."""
    moe = [m for m in model.modules() if isinstance(m, MoE)]
    fp32 = plain_experts(model) and all(m.experts.gate_up_proj.dtype == torch.float32 for m in moe)
    return DEFAULT_EXPERTS if fp32 else "op"


def plain_experts(model: DeepseekV3LM) -> bool:
    """Whether every MoE layer holds plain stacked `Experts` (what "gather" and "reduce" need)."""
    return all(type(m.experts) is Experts for m in model.modules() if isinstance(m, MoE))


def compile_static(
    module: nn.Module,
    options: dict[str, Any] | None = None,
    dynamic_dims: tuple[tuple[int, int], ...] = (),
) -> Callable[..., Any]:
    """`module` compiled whole by inductor, called with inductor `options` (default `INDUCTOR_OPTIONS`)
    in force. They are patched around each call rather than passed as `torch.compile(options=...)`:
    inductor reads some (`freezing` among them) outside that scope, so there the weights stayed graph
    inputs and no linear was packed.

    Shapes are static except `dynamic_dims`, (argument index, dimension) pairs that the graph holds as
    symbols, so new sizes there reuse it (an argument that is a tuple of tensors: that dimension of
    each); no other dimension becomes dynamic on a recompile."""
    compiled = torch.compile(module, fullgraph=True, dynamic=None if dynamic_dims else False)
    settings = dict(INDUCTOR_OPTIONS if options is None else options)

    def call(*args: Any) -> Any:
        import torch._inductor.config as inductor_config  # 1.7 s to import: only where compiling
        import torch.fx.experimental._config as shape_config

        for i, dim in dynamic_dims:
            for tensor in args[i] if isinstance(args[i], (tuple, list)) else (args[i],):
                torch._dynamo.mark_dynamic(tensor, dim)
        # No duck shaping: two dynamic sizes that happen to be equal at the first call stay two
        # symbols (else the graph would assume them equal and recompile when they differ).
        with (
            inductor_config.patch(settings),
            torch._dynamo.config.patch(automatic_dynamic_shapes=False),
            shape_config.patch(use_duck_shape=False),
        ):
            return compiled(*args)

    return call


class _Step(nn.Module):
    """`decode_step` as a module, so the compiled graph holds the model's parameters (what `freezing`
    needs to treat them as constants)."""

    def __init__(self, model: DeepseekV3LM, experts: str) -> None:
        super().__init__()
        self.model, self.experts = model, experts

    def forward(
        self,
        tokens: Tensor,
        slot: Tensor,
        kv: tuple[Tensor, ...],
        key_valid: Tensor,
        pad: Tensor,
        attended: Tensor,
    ) -> Tensor:
        return decode_step(self.model, tokens, slot, kv, key_valid, pad, self.experts, attended)


class DecodeStep:
    """`(tokens (B,), cache, input_pos (1,)) -> (B, V) fp32 logits`, one static-shape step.

    Args:
        model: the LM; its routed experts are registered for the "op" formulation.
        compile: compile with inductor (fullgraph; falls back to eager with one printed line).
        experts: "op", "gather", "reduce" or "loop" (`static_step`); default `default_experts(model)`.
        options: inductor options, default `INDUCTOR_OPTIONS`.
    """

    def __init__(
        self,
        model: DeepseekV3LM,
        *,
        compile: bool = True,
        experts: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        experts = experts or default_experts(model)
        if experts not in EXPERT_IMPLS:
            raise ValueError(f"experts must be one of {EXPERT_IMPLS}, got {experts!r}")
        if experts in ("gather", "reduce") and not plain_experts(model):
            raise ValueError(f"experts={experts!r} needs plain stacked experts (not INT4)")
        register_model(model)
        self.experts = experts
        self._eager = _Step(model, experts)
        self.compiled = compile and cxx_compiler() is not None
        if compile and not self.compiled:
            print("mm_model: no C++ compiler found; decoding without torch.compile", file=sys.stderr)
        # The cache length (the layers' dim 1, key_valid dim 1) and the attended span (argument 5's
        # length, `attended_slots`) are symbols: one graph serves every prompt and answer length (a
        # recompile per length cost 41-48 s at the lm_speed size). 2 threads there: 29.5-30.3 ms a step
        # from 256 to 16,384 preallocated slots (docs/bench/compiled_decode/session3).
        dynamic = ((2, 1), (3, 1), (5, 0))
        self._fn = compile_static(self._eager, options, dynamic) if self.compiled else self._eager
        self.block = CACHE_BLOCK

    def __call__(self, tokens: Tensor, cache: LatentCache, input_pos: Tensor) -> Tensor:
        # Only the span's length is read (uninitialised bytes, one per slot).
        span = torch.empty(attended_slots(cache.length + 1, cache.max_length, self.block), dtype=torch.bool,
                           device=cache.kv.device)  # fmt: skip
        args = (tokens, input_pos, cache.layers, cache.key_valid, cache.pad, span)
        try:
            logits = self._fn(*args)
        except Exception as e:  # a compile failure shows at the first call of each shape
            if not self.compiled:
                raise
            print(f"mm_model: torch.compile failed ({type(e).__name__}); decoding eagerly", file=sys.stderr)
            self.compiled, self._fn = False, self._eager
            logits = self._fn(*args)
        cache.length += 1  # the caller writes the slot right after the filled ones (as generation does)
        return logits


def attended_slots(filled: int, max_length: int, block: int = CACHE_BLOCK) -> int:
    """Slots the step attends over: `filled` rounded up to a multiple of `block`, at most `max_length`."""
    return min(max_length, -(-filled // block) * block)


def warm_up(model: DeepseekV3LM, batch_size: int = 1) -> float | None:
    """Run the model's decode step at `batch_size` as requests will, so that its compiles happen now
    and not in a request: once through `generate`, and, where the context window allows spans over
    `LONG_SPAN`, once at that slot (its own graph). Seconds taken; None without a step."""
    from mm_model.generation import generate  # generation reads the step off the model: no cycle at import

    if model.decode_step is None:
        return None
    start = time.perf_counter()
    generate(model, [[0, 0]] * batch_size, max_new_tokens=2)
    if model.config.max_position_embeddings > LONG_SPAN:
        with torch.inference_mode():  # the slot's contents do not matter, only the shapes
            cache = model.new_cache(batch_size, LONG_SPAN + 1)
            cache.length = LONG_SPAN
            tokens = torch.zeros(batch_size, dtype=torch.long, device=cache.kv.device)
            model.decode_step(tokens, cache, torch.tensor([LONG_SPAN], device=cache.kv.device))
    return time.perf_counter() - start


def use_decode_step(model: DeepseekV3LM, step: DecodeStep | None) -> DeepseekV3LM:
    """Set (or with None, remove) the step `generation.decode_one_token` runs for this model."""
    model.decode_step = step
    return model
