"""Static latent KV cache for MLA.

Per token and layer it holds the normed compressed kv (`kv_lora_rank` values) followed by the
post-rope shared key (`qk_rope_head_dim`): 576 values for K2.5 instead of 64·(192+128) for a
per-head K/V cache. One preallocated tensor per cache; decode writes one slot per step in place.

Batches of different-length prompts are left-padded: every row writes the same slots, `key_valid`
marks the padding slots (never attended to) and `pad` (leading pad count per row) turns a slot
into that row's rope position, `position = slot - pad`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mm_model.lm.config import LMConfig
from vision.errors import InputError


class LatentCache:
    """Preallocated MLA latent cache, owned by the caller (one per generation).

    Attributes:
        kv: (L, B, T, kv_lora_rank + qk_rope_head_dim) cached latents, [c_kv | k_rot].
        key_valid: (B, T) bool, False at padding slots.
        pad: (B,) long, leading padding slots per row.
        length: slots filled so far (a Python int: the host needs it for slicing anyway).
    """

    def __init__(
        self,
        cfg: LMConfig,
        batch_size: int,
        max_length: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        if max_length < 1 or batch_size < 1:
            raise InputError(
                f"cache needs batch_size >= 1 and max_length >= 1, got {batch_size}, {max_length}"
            )
        self.kv_lora_rank = cfg.kv_lora_rank
        self.max_length = max_length
        self.kv = torch.zeros(
            cfg.num_hidden_layers, batch_size, max_length, cfg.latent_dim, dtype=dtype, device=device
        )
        self.key_valid = torch.ones(batch_size, max_length, dtype=torch.bool, device=device)
        self.pad = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.has_padding = False
        self.min_pad = 0
        self.length = 0

    @property
    def layers(self) -> tuple[Tensor, ...]:
        """`kv` as L views (B, T, C + r), one per layer."""
        return self.kv.unbind(0)

    @property
    def batch_size(self) -> int:
        return self.kv.shape[1]

    def reset(self) -> None:
        """Forget the contents (no reallocation)."""
        self.key_valid.fill_(True)
        self.pad.zero_()
        self.has_padding = False
        self.min_pad = 0
        self.length = 0

    def set_padding(self, attention_mask: Tensor) -> None:
        """Record left padding of the prompt about to be prefilled at slot 0.

        Args:
            attention_mask: (B, S) with 1 for tokens and 0 for left padding.
        """
        if attention_mask.shape[0] != self.batch_size:
            raise InputError(
                f"attention_mask has {attention_mask.shape[0]} rows, cache holds {self.batch_size}"
            )
        pad = left_padding(attention_mask)
        self.key_valid.fill_(True)  # forget an earlier prompt's padding
        self.key_valid[:, : attention_mask.shape[1]] = attention_mask.to(torch.bool)
        self.pad.copy_(pad)
        self.has_padding = bool(pad.any())
        self.min_pad = int(pad.min())

    def positions(self, input_pos: Tensor) -> Tensor:
        """Rope positions (B, S) for slots `input_pos` (S,)."""
        pos = input_pos[None, :] - self.pad[:, None]
        return pos.clamp_min(0) if self.has_padding else pos

    def bytes_per_token(self) -> int:
        """Cache bytes per token over all layers."""
        return self.kv.shape[0] * self.kv.shape[-1] * self.kv.element_size()


def left_padding(attention_mask: Tensor) -> Tensor:
    """Leading padding count per row (B,) of a left-padded (B, S) mask (1 = token, 0 = padding).

    Raises InputError for a mask that is not left padding or has a row without tokens.
    """
    mask = attention_mask.to(torch.bool)
    if mask.dim() != 2:
        raise InputError(f"attention_mask must be (batch, seq), got shape {tuple(mask.shape)}")
    pad = (~mask).sum(-1)
    expected = torch.arange(mask.shape[1], device=mask.device)[None, :] >= pad[:, None]
    if not torch.equal(mask, expected):
        raise InputError("attention_mask must be left padding (zeros only before the first token)")
    if bool((pad == mask.shape[1]).any()):
        raise InputError("attention_mask has a row with no tokens")
    return pad


def latent_cache_bytes_per_token(cfg: LMConfig, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes per token (all layers) of the latent cache."""
    return cfg.num_hidden_layers * cfg.latent_dim * torch.empty((), dtype=dtype).element_size()


def per_head_cache_bytes_per_token(cfg: LMConfig, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes per token (all layers) of a classic per-head K (qk_head_dim) + V (v_head_dim) cache."""
    per_layer = cfg.num_attention_heads * (cfg.qk_head_dim + cfg.v_head_dim)
    return cfg.num_hidden_layers * per_layer * torch.empty((), dtype=dtype).element_size()
