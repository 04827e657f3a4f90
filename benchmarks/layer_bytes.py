"""Bytes of Kimi K2.5-shaped decoder layers, from the config alone (pure functions, no tensors).

What a layer holds in memory (resident) and what one batch-1 decode token reads from it, by part,
with the routed experts in INT4 and everything else in `dtype_bytes` per value; plus how many layers
fit in a given amount of memory and the whole-model decode projection built on a measured layer.

Shape legend: D hidden, H heads, n / r / v nope / rope / value head dims, C kv_lora_rank,
Q q_lora_rank, E routed experts, k experts per token, I moe_intermediate_size, F dense intermediate,
V vocabulary, P cached tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mm_model.lm.config import LMConfig
from mm_model.lm.int4 import GROUP_SIZE

# Bytes per group of 32 INT4 weights besides the 16 packed bytes: the release keeps one bf16 scale;
# torch's CPU kernel layout keeps a bf16 (scale, zero) pair (`Int4Experts.to_cpu_kernel_`).
GROUP_EXTRA_BYTES = {"release": 2, "cpu": 4}
BIAS_BYTES = 4  # the router's correction bias stays fp32 in every dtype (`cast_model`)


@dataclass(frozen=True)
class LayerBytes:
    """One layer: `resident` bytes in memory and `read` bytes per decode token, by part."""

    resident: int
    read: dict[str, int] = field(default_factory=dict)

    @property
    def read_total(self) -> int:
        return sum(self.read.values())


def int4_matrix_bytes(n: int, k: int, layout: str = "cpu") -> int:
    """Bytes of one (N, K) INT4 matrix: K/2 packed bytes a row plus each group's scale (and zero)."""
    return n * k // 2 + n * (k // GROUP_SIZE) * GROUP_EXTRA_BYTES[layout]


def int4_expert_bytes(cfg: LMConfig, layout: str = "cpu") -> int:
    """One routed expert: gate_up (2I, D) and down (D, I)."""
    d, i = cfg.hidden_size, cfg.moe_intermediate_size
    return int4_matrix_bytes(2 * i, d, layout) + int4_matrix_bytes(d, i, layout)


def attention_values(cfg: LMConfig) -> dict[str, int]:
    """Values of each MLA weight, (out, in) products. The absorbed decode path reads all of kv_b:
    its key half is folded into the query and its value half into the output."""
    d, h, c = cfg.hidden_size, cfg.num_attention_heads, cfg.kv_lora_rank
    q = (
        {"q_proj": h * cfg.qk_head_dim * d}
        if cfg.q_lora_rank is None
        else {"q_a_proj": cfg.q_lora_rank * d, "q_a_layernorm": cfg.q_lora_rank,
              "q_b_proj": h * cfg.qk_head_dim * cfg.q_lora_rank}
    )  # fmt: skip
    return {**q, "kv_a_proj_with_mqa": cfg.latent_dim * d, "kv_a_layernorm": c,
            "kv_b_proj": h * (cfg.qk_nope_head_dim + cfg.v_head_dim) * c, "o_proj": d * h * cfg.v_head_dim}  # fmt: skip


def _common(cfg: LMConfig, dtype_bytes: int, prompt: int) -> dict[str, int]:
    """Attention, the two layer norms and the latent cache of P + 1 tokens (the prompt and the new
    token, all read by the step's attention), in bytes."""
    return {
        "attention": sum(attention_values(cfg).values()) * dtype_bytes,
        "norms": 2 * cfg.hidden_size * dtype_bytes,
        "latent_cache": (prompt + 1) * cfg.latent_dim * dtype_bytes,
    }


def moe_layer_bytes(cfg: LMConfig, dtype_bytes: int, prompt: int, layout: str = "cpu") -> LayerBytes:
    """A MoE layer with INT4 routed experts: resident holds all E experts, a token reads k of them."""
    d, e = cfg.hidden_size, cfg.n_routed_experts
    read = _common(cfg, dtype_bytes, prompt)
    read["router"] = e * d * dtype_bytes + e * BIAS_BYTES
    read["shared_expert"] = 3 * d * cfg.moe_intermediate_size * cfg.n_shared_experts * dtype_bytes
    expert = int4_expert_bytes(cfg, layout)
    read["routed_experts_int4"] = cfg.num_experts_per_tok * expert
    resident = sum(read.values()) - read["routed_experts_int4"] + e * expert
    return LayerBytes(resident, read)


def dense_layer_bytes(cfg: LMConfig, dtype_bytes: int, prompt: int) -> LayerBytes:
    """One of the first `first_k_dense_replace` layers: MLA and a dense SwiGLU of width F."""
    read = _common(cfg, dtype_bytes, prompt)
    read["dense_mlp"] = 3 * cfg.hidden_size * cfg.intermediate_size * dtype_bytes
    return LayerBytes(sum(read.values()), read)


def head_bytes(cfg: LMConfig, dtype_bytes: int) -> LayerBytes:
    """Embedding and lm_head: all V·D of each resident (one table if tied); a token reads one
    embedding row, the final norm and the whole lm_head."""
    v, d = cfg.vocab_size, cfg.hidden_size
    read = {"embedding_row": d * dtype_bytes, "final_norm": d * dtype_bytes, "lm_head": v * d * dtype_bytes}
    tables = 1 if cfg.tie_word_embeddings else 2
    return LayerBytes(tables * v * d * dtype_bytes + d * dtype_bytes, read)


def model_resident_bytes(cfg: LMConfig, dtype_bytes: int, prompt: int, layout: str = "cpu") -> int:
    """The whole model at this dtype and INT4 layout (dense + MoE layers, embedding, lm_head)."""
    dense = cfg.first_k_dense_replace
    moe = cfg.num_hidden_layers - dense
    return (
        dense * dense_layer_bytes(cfg, dtype_bytes, prompt).resident
        + moe * moe_layer_bytes(cfg, dtype_bytes, prompt, layout).resident
        + head_bytes(cfg, dtype_bytes).resident
    )


def layers_that_fit(available: int, per_layer: int, reserve: int = 0) -> int:
    """How many layers of `per_layer` bytes fit in `available` bytes, keeping `reserve` free."""
    return max(0, (available - reserve) // per_layer)


def projection(
    cfg: LMConfig, moe_layer_s: float, achieved_gb_s: float, dtype_bytes: int, prompt: int
) -> dict:
    """Whole-model decode time per token: the measured MoE-layer time for every MoE layer, and for
    the dense layers and the embedding / lm_head their bytes at the achieved GB/s (an estimate: they
    were not run). A projection, not a measurement."""
    dense = cfg.first_k_dense_replace
    moe = cfg.num_hidden_layers - dense
    dense_s = dense * dense_layer_bytes(cfg, dtype_bytes, prompt).read_total / (achieved_gb_s * 1e9)
    head_s = head_bytes(cfg, dtype_bytes).read_total / (achieved_gb_s * 1e9)
    total = moe * moe_layer_s + dense_s + head_s
    return {"moe_layers": moe, "dense_layers": dense, "moe_s": moe * moe_layer_s, "dense_s_estimated": dense_s,
            "head_s_estimated": head_s, "token_s": total, "tok_s": 1 / total}  # fmt: skip
