"""Routed experts with a sigmoid, bias-corrected, group-limited top-k router and shared experts.

Shape legend: N tokens, D hidden, E routed experts, k experts per token, I moe_intermediate_size,
G groups (n_group).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compute import prepack
from mm_model.lm.config import LMConfig
from mm_model.lm.norm import MLP

# Where `prepack` applies, the expert loop on packed weights runs while the experts get at most this
# many rows each on average; past it the grouped kernel wins. Measured on the lm_speed config (64
# experts, top 8) on a 2-core AVX512-BF16 EPYC: prefill 256 tokens (32 rows) 806 vs 697 tokens/s,
# 1024 tokens (128 rows) 515 vs 569.
LOOP_MAX_ROWS_PER_EXPERT = 64


class Router(nn.Module):
    """Top-k router; the parameter/buffer names follow the checkpoint's `mlp.gate.*`."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.top_k, self.n_group, self.topk_group = cfg.num_experts_per_tok, cfg.n_group, cfg.topk_group
        self.norm_topk_prob, self.scaling = cfg.norm_topk_prob, cfg.routed_scaling_factor
        self.weight = nn.Parameter(torch.zeros(cfg.n_routed_experts, cfg.hidden_size))
        # Kept in fp32 whatever the model dtype (the loader and `cast_model` see to it): it decides
        # which experts win, and bf16 rounding would flip close calls.
        self.register_buffer(
            "e_score_correction_bias", torch.zeros(cfg.n_routed_experts, dtype=torch.float32)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (N, D) -> weights (N, k) fp32, expert ids (N, k)."""
        scores = F.linear(x.float(), prepack.fp32(self.weight)).sigmoid()  # (N, E), routing math in fp32
        choice = scores + self.e_score_correction_bias  # the bias steers selection only
        if self.topk_group < self.n_group:
            n = choice.shape[0]
            grouped = choice.view(n, self.n_group, -1)  # (N, G, E/G)
            group_score = grouped.topk(2, dim=-1).values.sum(-1)  # (N, G): sum of each group's best two
            keep = group_score.topk(self.topk_group, dim=-1).indices
            dropped = torch.ones_like(group_score, dtype=torch.bool).scatter_(1, keep, False)
            # -inf, not 0: biased scores can be negative and must never beat a dropped group.
            choice = grouped.masked_fill(dropped[..., None], float("-inf")).view(n, -1)
        idx = choice.topk(self.top_k, dim=-1, sorted=False).indices  # (N, k)
        weights = scores.gather(1, idx)  # unbiased scores
        if self.norm_topk_prob:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return weights * self.scaling, idx


class Experts(nn.Module):
    """E SwiGLU experts, weights stacked for grouped matmuls.

    gate_up_proj: (E, 2I, D) with gate rows first; down_proj: (E, D, I). These are the names and
    layouts transformers 5 uses in memory; the loader stacks the per-expert checkpoint keys into them.
    """

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        e, d, i = cfg.n_routed_experts, cfg.hidden_size, cfg.moe_intermediate_size
        self.num_experts, self.intermediate = e, i
        self.gate_up_proj = nn.Parameter(torch.empty(e, 2 * i, d))
        self.down_proj = nn.Parameter(torch.empty(e, d, i))

    def _expert(self, e: int, x: Tensor) -> Tensor:  # (n, D) -> (n, D)
        gate, up = prepack.linear(x, self.gate_up_proj, None, e).chunk(2, dim=-1)
        return prepack.linear(F.silu(gate) * up, self.down_proj, None, e)

    def forward(self, x: Tensor, weights: Tensor, idx: Tensor, impl: str = "auto") -> Tensor:
        """Sum over each token's k experts of weight · expert(x).

        All (token, expert) pairs are dispatched at once: sorted by expert, each expert's rows run
        as one matmul, then scatter-added back to their tokens. Nothing loops over tokens. The matmuls
        are `torch._grouped_mm` when available (one call for all experts and no host sync), except
        for a few rows per expert (decode, short prompts) where `prepack` applies (bf16 on a
        native-bf16 CPU): there a loop over the experts that were hit ("direct" for one token), each
        on its packed weights, measured faster (the CPU grouped kernel visits every expert, hit or
        not, and repacks each weight).

        Args:
            x: (N, D); weights: (N, k) fp32; idx: (N, k) expert ids.
            impl: "auto", "grouped", "loop" (the slow twin, also the fallback) or "direct" (one
                token: its k experts in turn, without the sort / gather / scatter, which at batch-1
                decode cost almost as much as the expert matmuls).
        Returns:
            (N, D) in x's dtype.
        """
        rows = idx.numel() / self.num_experts
        if impl == "auto" and rows <= LOOP_MAX_ROWS_PER_EXPERT and prepack.applies(x, self.gate_up_proj):
            impl = "direct" if x.shape[0] == 1 else "loop"
        elif impl == "auto" and x.shape[0] == 1 and x.device.type == "cpu":
            # one token on the CPU in any dtype: its k experts beat the grouped kernel's visit of all E
            # (fp32, AVX2 EPYC, 1 thread, lm_speed's 64 experts: 2.8 vs 3.2-3.9 ms a layer)
            impl = "direct"
        if impl == "direct":
            return self._direct(x, weights, idx)
        k = idx.shape[1]
        flat = idx.reshape(-1)  # (N·k,)
        order = flat.argsort(stable=True)
        token_of = order // k  # (N·k,) source token of each sorted pair
        counts = torch.bincount(flat, minlength=self.num_experts)  # (E,)
        xs = x.index_select(0, token_of)  # (N·k, D), grouped by expert
        ys = None
        if impl in ("auto", "grouped") and hasattr(torch, "_grouped_mm"):
            try:
                ys = self._grouped(xs, counts.cumsum(0).to(torch.int32))
            except RuntimeError:  # dtype/device/alignment the kernel does not take
                if impl == "grouped":
                    raise
        if ys is None:
            ys = self._loop(xs, counts.tolist())
        ys = ys * weights.reshape(-1)[order, None].to(x.dtype)
        return torch.zeros_like(x).index_add_(0, token_of, ys)

    def _grouped(self, xs: Tensor, offs: Tensor) -> Tensor:  # (N·k, D) sorted by expert -> (N·k, D)
        h = torch._grouped_mm(xs, self.gate_up_proj.transpose(1, 2), offs=offs)  # (N·k, 2I)
        gate, up = h.chunk(2, dim=-1)
        return torch._grouped_mm(F.silu(gate) * up, self.down_proj.transpose(1, 2), offs=offs)

    def _direct(self, x: Tensor, weights: Tensor, idx: Tensor) -> Tensor:  # x (1, D) -> (1, D)
        if x.shape[0] != 1:
            raise ValueError(f"the direct expert path takes one token, got {x.shape[0]}")
        out = torch.zeros_like(x)
        for e, w in zip(idx[0].tolist(), weights[0].tolist()):
            out.add_(self._expert(e, x), alpha=w)
        return out

    def _loop(self, xs: Tensor, counts: list[int]) -> Tensor:
        ys = torch.empty_like(xs)
        start = 0
        for e, count in enumerate(counts):
            if count:
                ys[start : start + count] = self._expert(e, xs[start : start + count])
                start += count
        return ys


class MoE(nn.Module):
    """Routed experts plus shared experts on the same input (checkpoint names `mlp.gate`, `mlp.experts`,
    `mlp.shared_experts`)."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.gate = Router(cfg)
        self.experts = Experts(cfg)
        self.shared_experts = (
            MLP(cfg.hidden_size, cfg.moe_intermediate_size * cfg.n_shared_experts)
            if cfg.n_shared_experts
            else None
        )

    def forward(self, x: Tensor, routed: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None) -> Tensor:
        """(B, S, D) -> (B, S, D). routed: another formulation of `self.experts(x, weights, idx)` (the
        static decode step's, `lm.static_step`); None: the module itself."""
        flat = x.reshape(-1, x.shape[-1])
        weights, idx = self.gate(flat)
        out = (routed or self.experts)(flat, weights, idx).view_as(x)
        if self.shared_experts is not None:
            out = out + self.shared_experts(x)
        return out
