"""Vision tower + projector + language model as one module, named as the released checkpoint.

Media placeholders (`<|media_pad|>`) are expanded in `input_ids` before the model sees them (one
per merged vision token, as vLLM and `transformers` do); their embedding rows are overwritten in
order with the projected vision features. Positions stay plain 1-D (no M-RoPE in K2.5).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor, nn

from mm_model.config import ModelConfig
from mm_model.lm.cache import LatentCache
from mm_model.lm.model import DeepseekV3LM
from vision.encoder import VisionTower
from vision.errors import InputError
from vision.merger import Projector
from vision.model import embed_packed
from vision.packing import PackedVision, pack_grids


class PlaceholderMismatch(InputError):
    """The prompt's media placeholders do not match the number of vision features."""


class KimiK25Model(nn.Module):
    """`vision_tower`, `mm_projector`, `language_model`: the released K2.5 module tree."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.vision_tower = VisionTower(cfg.vision)
        self.mm_projector = Projector(cfg.vision)
        self.language_model = DeepseekV3LM(cfg.text)

    # ---- vision -------------------------------------------------------------------------------
    def pack(self, pixel_values: Tensor, grid_thws: Tensor) -> PackedVision:
        """Packed patches (N, 3, p, p) and their (M, 3) grids -> `PackedVision` on the model's device."""
        device = self.mm_projector.pre_norm.weight.device
        return pack_grids(pixel_values, grid_thws, self.config.vision).to(device)

    def embed_media(self, packed: PackedVision) -> Tensor:
        """All items' LM embeddings in order: (sum of merged tokens, hidden)."""
        return embed_packed(self.vision_tower, self.mm_projector, packed)

    def embed_pixels(self, pixel_values: Tensor, grid_thws: Tensor) -> Tensor:
        """Packed patches (N, 3, p, p) and their (M, 3) grids -> all items' LM embeddings (T, hidden)."""
        return self.embed_media(self.pack(pixel_values, grid_thws))

    def encode_media(self, pixel_values: Tensor, grid_thws: Tensor) -> list[Tensor]:
        """Per-item LM embeddings, each ((h/2)*(w/2), hidden)."""
        packed = self.pack(pixel_values, grid_thws)
        return list(self.embed_media(packed).split(packed.tokens))

    # ---- language -----------------------------------------------------------------------------
    def merge_media(self, input_ids: Tensor, media: Tensor | None) -> Tensor:
        """Token embeddings (B, S, D) with placeholder rows replaced, in order, by `media` (T, D)."""
        pad = self.config.media_placeholder_token_id
        is_pad = input_ids == pad
        n_pad = int(is_pad.sum())
        n_feat = 0 if media is None else media.shape[0]
        if n_pad != n_feat:
            raise PlaceholderMismatch(
                f"the prompt has {n_pad} media placeholder tokens (id {pad}) but the media give {n_feat} "
                "vision features; expand each placeholder to its item's merged token count"
            )
        embeds = self.language_model.embed(input_ids)
        if n_pad:
            embeds = embeds.masked_scatter(is_pad[..., None], media.to(embeds.dtype))
        return embeds

    def forward(
        self,
        input_ids: Tensor,
        pixel_values: Tensor | None = None,
        grid_thws: Tensor | None = None,
        *,
        media_embeds: Tensor | None = None,
        cache: LatentCache | None = None,
        attention_mask: Tensor | None = None,
        input_pos: Tensor | None = None,
        last_only: bool = False,
    ) -> Tensor:
        """Logits (B, S, V) for `input_ids` (B, S) with placeholders already expanded.

        Media come as packed `pixel_values` (N, 3, p, p) + `grid_thws` (M, 3), or as precomputed
        `media_embeds` (T, D) (e.g. reused from an earlier turn).
        """
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        if pixel_values is not None:
            if grid_thws is None:
                raise InputError("pixel_values need grid_thws")
            media_embeds = self.embed_pixels(pixel_values, grid_thws)
        embeds = self.merge_media(input_ids, media_embeds)
        return self.language_model(
            inputs_embeds=embeds,
            cache=cache,
            attention_mask=attention_mask,
            input_pos=input_pos,
            last_only=last_only,
        )

    # ---- construction -------------------------------------------------------------------------
    def init_weights(self, std: float = 0.02) -> None:
        """Random init (for training from scratch or tests); checkpoints overwrite it."""
        self.vision_tower.init_weights(std)
        self.mm_projector.init_weights(std)
        for name, p in self.language_model.named_parameters():
            if p.dim() >= 2:
                nn.init.trunc_normal_(p, std=std)
            elif "bias" in name:
                nn.init.zeros_(p)
            else:
                nn.init.ones_(p)
        self.language_model.reset_buffers()

    @classmethod
    def build(
        cls, cfg: ModelConfig, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> KimiK25Model:
        """Randomly initialised (or shapes only on device "meta")."""
        with torch.device(device) if device is not None else nullcontext():
            model = cls(cfg)
        if str(device) != "meta":
            with torch.no_grad():
                model.init_weights()
        if dtype is not None:
            from mm_model.lm.model import cast_model

            cast_model(model, dtype)
        return model.eval()
