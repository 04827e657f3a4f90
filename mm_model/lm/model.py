"""The DeepSeek-V3 / Kimi K2 decoder: embeddings, MLA + (dense | MoE) blocks, final norm, lm_head.

Parameter names are the checkpoint's (`model.layers.N.self_attn.q_a_proj.weight`, ...) so loading
is a prefix strip; the only layout change is the stacked routed experts (see `moe.Experts`).

Batches of prompts with different lengths are left-padded: pass `attention_mask` (B, S) with 0 on
the padding; each row's rope positions start at 0 on its first real token and padding is never
attended to (the padding rows' own outputs are garbage and must be ignored).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from compute.prepack import Linear
from mm_model.lm.attention import MLAttention
from mm_model.lm.cache import LatentCache, left_padding
from mm_model.lm.config import LMConfig
from mm_model.lm.moe import MoE
from mm_model.lm.norm import MLP, RMSNorm
from mm_model.lm.rope import rope_cos_sin, rope_parameters
from vision.errors import InputError

if TYPE_CHECKING:
    from mm_model.lm.compiled import DecodeStep

# Queries at most this many new tokens use the absorbed path by default: it saves expanding every
# cached latent each step, while a long prefill is cheaper expanded (per key it does H·(n+v)·C work
# once instead of H·(C + r + C) per query).
ABSORB_MAX_NEW_TOKENS = 16


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LMConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = MLAttention(cfg)
        self.mlp: nn.Module = (
            MoE(cfg) if cfg.is_moe_layer(layer_idx) else MLP(cfg.hidden_size, cfg.intermediate_size)
        )
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, h: Tensor, cos: Tensor, sin: Tensor, **attn: object) -> Tensor:  # (B, S, D)
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, **attn)
        return h + self.mlp(self.post_attention_layernorm(h))


class Backbone(nn.Module):
    """`model.*` of the checkpoint: embed_tokens, layers, norm."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class DeepseekV3LM(nn.Module):
    """Causal LM over token ids or embeddings, with an optional latent cache."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = Backbone(cfg)
        self.lm_head = Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.tie_weights()
        inv_freq, self.attention_factor = rope_parameters(cfg)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        # A `compiled.DecodeStep` that `generation.decode_one_token` runs instead of `forward`, set by
        # `compiled.use_decode_step` (by `load(..., compile=True)`); None: forward.
        self.decode_step: DecodeStep | None = None

    def tie_weights(self) -> None:
        """Share lm_head and embed_tokens when the config ties them."""
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def reset_buffers(self) -> None:
        """Recompute non-checkpoint buffers and re-tie weights (after building on the meta device and
        `to_empty`, which allocates each module's parameters separately)."""
        self.tie_weights()
        inv_freq, _ = rope_parameters(self.config)
        self.inv_freq = inv_freq.to(self.lm_head.weight.device)

    def embed(self, input_ids: Tensor) -> Tensor:
        """Token embeddings (B, S) -> (B, S, D); media features are scattered into these."""
        return self.model.embed_tokens(input_ids)

    def new_cache(self, batch_size: int, max_length: int) -> LatentCache:
        """A latent cache matching this model's dtype and device."""
        w = self.lm_head.weight
        return LatentCache(self.config, batch_size, max_length, dtype=w.dtype, device=w.device)

    def forward(
        self,
        input_ids: Tensor | None = None,
        *,
        inputs_embeds: Tensor | None = None,
        cache: LatentCache | None = None,
        input_pos: Tensor | None = None,
        attention_mask: Tensor | None = None,
        absorb: bool | None = None,
        last_only: bool = False,
    ) -> Tensor:
        """Logits for the new tokens.

        Args:
            input_ids: (B, S) token ids, or None with `inputs_embeds` (B, S, D).
            cache: a `LatentCache`; the tokens are written at slots `input_pos` and attend to every
                earlier slot. Without a cache the call is a full causal forward over the S tokens.
            input_pos: (S,) consecutive cache slots; default: right after what the cache holds (slot 0
                when `attention_mask` is given). Writing at slot 0 starts a new sequence.
            attention_mask: (B, S) 1 = token, 0 = left padding. With a cache, only on the first call
                (slot 0); the cache remembers it for later steps.
            absorb: force the absorbed (True) or expanded (False) attention path; default picks
                absorbed for short steps (<= ABSORB_MAX_NEW_TOKENS) with a cache.
            last_only: return only the last position's logits, (B, 1, V).
        Returns:
            (B, S, V) logits (or (B, 1, V) with last_only), in the model dtype.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("pass exactly one of input_ids and inputs_embeds")
        h = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        b, s, _ = h.shape
        device = h.device
        if cache is None:
            if input_pos is not None and int(input_pos[0]) != 0:
                raise InputError("input_pos must start at 0 without a cache")
            start, end = 0, s
            positions = torch.arange(s, device=device)[None, :].expand(b, s)
            mask, max_pos = None, s - 1
            if attention_mask is not None:
                pad = left_padding(attention_mask).to(device)
                if bool(pad.any()):
                    positions = (positions - pad[:, None]).clamp_min(0)
                    mask = _mask(attention_mask.to(device=device, dtype=torch.bool), 0, s, device)
                max_pos = s - 1 - int(pad.min())
        else:
            if input_pos is None:  # continue after the cache's contents; a padded prompt starts anew
                first = 0 if attention_mask is not None else cache.length
                input_pos = torch.arange(first, first + s, device=device)
            start, end = int(input_pos[0]), int(input_pos[-1]) + 1
            if end - start != s:
                raise InputError(f"input_pos must be {s} consecutive slots, got {input_pos.tolist()}")
            if end > cache.max_length:
                raise InputError(f"sequence of {end} tokens exceeds the cache length {cache.max_length}")
            if cache.batch_size != b:
                raise InputError(f"cache holds {cache.batch_size} rows, input has {b}")
            if attention_mask is not None:
                if start != 0:
                    raise InputError(
                        "attention_mask is only accepted on the first (slot 0) call with a cache"
                    )
                cache.set_padding(attention_mask)
            elif start == 0:
                cache.reset()
            positions = cache.positions(input_pos)
            needs_mask = cache.has_padding or (s > 1 and start > 0)
            mask = _mask(cache.key_valid, start, end, device) if needs_mask else None
            max_pos = end - 1 - cache.min_pad
        if max_pos >= self.config.max_position_embeddings:
            raise InputError(
                f"position {max_pos} is beyond the context window "
                f"(max_position_embeddings {self.config.max_position_embeddings})"
            )
        if absorb is None:
            absorb = cache is not None and s <= ABSORB_MAX_NEW_TOKENS
        cos, sin = rope_cos_sin(positions, self.inv_freq, self.attention_factor)
        for i, layer in enumerate(self.model.layers):
            kv = None if cache is None else cache.kv[i]
            h = layer(h, cos, sin, kv=kv, start=start, mask=mask, absorb=absorb)
        if cache is not None:
            cache.length = end
        if last_only:
            h = h[:, -1:]
        return self.lm_head(self.model.norm(h))


def _mask(key_valid: Tensor, start: int, end: int, device: torch.device) -> Tensor:
    """(B, 1, S, T) bool: query slot q attends key slot j <= q that is not padding (and always itself,
    so padding queries never see an all-masked row)."""
    q = torch.arange(start, end, device=device)[:, None]  # (S, 1)
    j = torch.arange(end, device=device)[None, :]  # (1, T)
    causal = j <= q
    return ((causal[None] & key_valid[:, None, :end]) | (j == q)[None])[:, None]


def cast_model(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """`model.to(dtype)` except the router correction biases, which stay fp32."""
    keep = {
        name: buf.detach().clone()
        for name, buf in model.named_buffers()
        if name.endswith("e_score_correction_bias")
    }
    model.to(dtype)
    for name, value in keep.items():
        owner = model.get_submodule(name.rsplit(".", 1)[0])
        owner.e_score_correction_bias = value
    return model


def preferred_dtype(device: torch.device | str = "cpu") -> torch.dtype:
    """bf16 where the hardware has fast bf16 matmuls, else fp32.

    On a CPU without AVX512-BF16 / AMX, bf16 matmuls are emulated: measured on a 2-core AVX2 EPYC
    with torch 2.14.1, a 1024² bf16 matmul ran at ~1 GFLOP/s against ~70 in fp32, and bf16 GEMV was
    2.5x slower than fp32 even though it reads half the bytes.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32
    return torch.float32


def count_parameters(cfg: LMConfig) -> tuple[int, int]:
    """(total, activated per token) parameter counts of the architecture, built on the meta device.

    Activated counts every non-routed-expert parameter plus k of the E routed experts per MoE layer.
    """
    with torch.device("meta"):
        model = DeepseekV3LM(cfg)
    total = sum(p.numel() for p in model.parameters())
    n_moe = sum(cfg.is_moe_layer(i) for i in range(cfg.num_hidden_layers))
    per_expert = 3 * cfg.hidden_size * cfg.moe_intermediate_size
    inactive = n_moe * (cfg.n_routed_experts - cfg.num_experts_per_tok) * per_expert
    return total, total - inactive
