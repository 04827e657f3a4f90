"""Multi-head latent attention (MLA) with two equal paths over the latent cache.

Shapes: B batch, S new tokens, T keys (cached + new), H heads, n = qk_nope_head_dim,
r = qk_rope_head_dim, v = v_head_dim, C = kv_lora_rank.

- `expanded` (prefill, and the slow twin): kv_b_proj turns every cached latent into per-head
  K (n + r) and V (v), then ordinary attention. Cheapest when S is large.
- `absorbed` (decode): kv_b_proj's key half is folded into the query (q_nope·W_UK, width C) and its
  value half into the output (W_UV), so attention runs directly on the C + r latent, shared by all
  heads (MQA-shaped). Nothing is expanded per step; cost per key is independent of H·(n + v).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compute import prepack
from compute.prepack import Linear
from mm_model.lm.config import LMConfig
from mm_model.lm.norm import RMSNorm
from mm_model.lm.rope import apply_rope, softmax_scale

# The reference builds q_a_layernorm and kv_a_layernorm without eps, so they use 1e-6 whatever
# rms_norm_eps says (transformers 5.23 DeepseekV3Attention).
_LATENT_NORM_EPS = 1e-6


class MLAttention(nn.Module):
    """DeepSeek-V3 MLA; parameter names follow the checkpoint's `self_attn.*`."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.num_heads, self.nope, self.rope = (
            cfg.num_attention_heads,
            cfg.qk_nope_head_dim,
            cfg.qk_rope_head_dim,
        )
        self.v_dim, self.kv_lora_rank = cfg.v_head_dim, cfg.kv_lora_rank
        d, h, bias = cfg.hidden_size, cfg.num_attention_heads, cfg.attention_bias
        if cfg.q_lora_rank is None:
            self.q_proj = Linear(d, h * cfg.qk_head_dim, bias=False)
        else:
            self.q_a_proj = Linear(d, cfg.q_lora_rank, bias=bias)
            self.q_a_layernorm = RMSNorm(cfg.q_lora_rank, _LATENT_NORM_EPS)
            self.q_b_proj = Linear(cfg.q_lora_rank, h * cfg.qk_head_dim, bias=False)
        self.kv_a_proj_with_mqa = Linear(d, cfg.latent_dim, bias=bias)
        self.kv_a_layernorm = RMSNorm(cfg.kv_lora_rank, _LATENT_NORM_EPS)
        self.kv_b_proj = Linear(cfg.kv_lora_rank, h * (cfg.qk_nope_head_dim + cfg.v_head_dim), bias=False)
        self.o_proj = Linear(h * cfg.v_head_dim, d, bias=bias)
        self.scale = softmax_scale(cfg)

    def project(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries and the new latents.

        Args:
            x: (B, S, D) normed hidden states; cos, sin: (B, S, r/2) fp32.
        Returns:
            q_nope (B, S, H, n), q_rot (B, S, H, r) post-rope, latent (B, S, C + r) = [norm(c_kv) | rope(k)].
        """
        b, s, _ = x.shape
        kv_a = self.kv_a_proj_with_mqa
        if hasattr(self, "q_proj"):
            q, latent = self.q_proj(x), kv_a(x)
        elif self.q_a_proj.bias is None and kv_a.bias is None and not prepack.hooked(self.q_a_proj, kv_a):
            q_a, latent = prepack.linears(x, (self.q_a_proj.weight, kv_a.weight))  # both read x: one matmul
            q = self.q_b_proj(self.q_a_layernorm(q_a))
        else:
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
            latent = kv_a(x)
        q = q.view(b, s, self.num_heads, self.nope + self.rope)
        q_nope, q_rot = q.split([self.nope, self.rope], dim=-1)
        c, k_rot = latent.split([self.kv_lora_rank, self.rope], dim=-1)
        latent = torch.cat((self.kv_a_layernorm(c), apply_rope(k_rot, cos, sin)), dim=-1)
        return q_nope, apply_rope(q_rot, cos, sin), latent

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        *,
        kv: Tensor | None = None,
        start: int = 0,
        mask: Tensor | None = None,
        absorb: bool = False,
    ) -> Tensor:
        """Attend the S new tokens (slots start..start+S-1) to every slot up to start+S-1.

        Args:
            x: (B, S, D) normed hidden states. cos, sin: (B, S, r/2) for the new tokens.
            kv: this layer's cache (B, T_max, C + r) or None (no cache: keys are the new tokens).
            mask: (B, 1, S, T) bool, True = may attend; None means plain causal without padding
                (valid only for S == 1 or start == 0).
            absorb: use the absorbed-weight path instead of expanding the latents.
        Returns:
            (B, S, D)
        """
        q_nope, q_rot, latent = self.project(x, cos, sin)
        s = x.shape[1]
        if kv is None:
            keys = latent
        else:
            kv[:, start : start + s].copy_(latent)
            keys = kv[:, : start + s]  # (B, T, C + r)
        attend = self._absorbed if absorb else self._expanded
        return self.o_proj(attend(q_nope, q_rot, keys, mask))

    def _expanded(self, q_nope: Tensor, q_rot: Tensor, keys: Tensor, mask: Tensor | None) -> Tensor:
        b, s, h, _ = q_nope.shape
        t = keys.shape[1]
        c, k_rot = keys.split([self.kv_lora_rank, self.rope], dim=-1)
        kv = self.kv_b_proj(c).view(b, t, h, self.nope + self.v_dim)
        k_nope, v = kv.split([self.nope, self.v_dim], dim=-1)
        k = torch.cat((k_nope, k_rot[:, :, None, :].expand(b, t, h, self.rope)), dim=-1)  # (B, T, H, n + r)
        q = torch.cat((q_nope, q_rot), dim=-1)  # (B, S, H, n + r)
        pad = self.nope + self.rope - self.v_dim
        if pad > 0 and q.device.type == "cpu":
            # The CPU's fused (flash) SDPA kernel wants V as wide as Q and K, and otherwise falls back
            # to the unfused math path, which materialises (B, H, S, T) scores and ignores causality:
            # zero columns cost a little copying and give the fused kernel (1 thread, AVX2 EPYC, 16
            # heads, causal: 0.42 -> 0.20 s at 1,024 tokens, 1.75 -> 0.66 s at 2,048).
            v = F.pad(v, (0, pad))
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
            attn_mask=mask, is_causal=mask is None and s > 1, scale=self.scale,
        )[..., : self.v_dim]  # fmt: skip
        return out.transpose(1, 2).reshape(b, s, h * self.v_dim)  # (B, S, H·v)

    def _absorbed_weights(self, upcast: bool) -> tuple[Tensor, Tensor]:
        """kv_b_proj's key and value halves, (H, n, C) and (H, v, C); in fp32 if `upcast` (kept on the
        weight between steps: upcasting them at every step cost 6 ms of a 50 ms decode step)."""

        def split(w: Tensor) -> tuple[Tensor, Tensor]:
            w = w.view(self.num_heads, self.nope + self.v_dim, self.kv_lora_rank)
            return w[:, : self.nope], w[:, self.nope :]

        weight = self.kv_b_proj.weight
        return split(prepack.fp32(weight) if upcast else weight)

    def _absorbed(self, q_nope: Tensor, q_rot: Tensor, keys: Tensor, mask: Tensor | None) -> Tensor:
        b, s, h, _ = q_nope.shape
        t = keys.shape[1]
        dtype = q_nope.dtype
        w_uk, w_uv = self._absorbed_weights(keys.device.type == "cpu")  # (H, n, C), (H, v, C)
        if w_uk.dtype != dtype:
            # These matmuls have few rows (H·S); CPU bf16 kernels are slow at that shape, with or
            # without native bf16 (2-core AVX2: ~1 GFLOP/s against ~70 in fp32; 2-core AVX512-BF16:
            # 200 us a matmul at decode against 70 in fp32), and the upcast is O(T·(C + r)).
            keys, q_nope, q_rot = (x.float() for x in (keys, q_nope, q_rot))
        q_lat = torch.matmul(q_nope.transpose(1, 2), w_uk)  # (B, H, S, C)
        q = torch.cat((q_lat, q_rot.transpose(1, 2)), dim=-1).reshape(b, h * s, -1)  # (B, H·S, C + r)
        scores = torch.bmm(q, keys.transpose(1, 2)).float() * self.scale  # (B, H·S, T)
        if mask is None and s > 1:
            mask = torch.ones(s, t, dtype=torch.bool, device=q.device).tril(t - s)[None, None]
        if mask is not None:
            allowed = mask.expand(b, h, s, t).reshape(b, h * s, t)
            scores = scores.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores, dim=-1).to(keys.dtype)
        o_lat = torch.bmm(probs, keys[..., : self.kv_lora_rank]).view(b, h, s, -1)  # (B, H, S, C)
        out = torch.matmul(o_lat, w_uv.transpose(1, 2))  # (B, H, S, v)
        return out.transpose(1, 2).reshape(b, s, h * self.v_dim).to(dtype)
