"""Key maps between our (= the released checkpoint's) vision names and `transformers`' `kimi_k25` names.

`transformers` splits the fused `wqkv` into q/k/v and permutes q and k rows per head from the
original interleaved RoPE pairs (half, 2) to rotate-half order (2, half) (its `PermuteForRope`).
Used by the parity tests and by checkpoint conversion; `transformers` is imported lazily.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from vision.config import VisionConfig

if TYPE_CHECKING:
    from vision.model import MoonViT3d

# Ours (relative to `vision_tower.` / `mm_projector.`) -> transformers (relative to the vision model /
# the projection module). `{}` is the block index.
TOWER_TO_HF: dict[str, str] = {
    "patch_embed.proj.weight": "patch_embed.proj.weight",
    "patch_embed.proj.bias": "patch_embed.proj.bias",
    "patch_embed.pos_emb.weight": "patch_embed.pos_emb.position_embeddings",
    "encoder.blocks.{}.norm0.weight": "layers.{}.norm1.weight",
    "encoder.blocks.{}.norm0.bias": "layers.{}.norm1.bias",
    "encoder.blocks.{}.norm1.weight": "layers.{}.norm2.weight",
    "encoder.blocks.{}.norm1.bias": "layers.{}.norm2.bias",
    "encoder.blocks.{}.wo.weight": "layers.{}.attn.proj.weight",
    "encoder.blocks.{}.wo.bias": "layers.{}.attn.proj.bias",
    "encoder.blocks.{}.mlp.fc0.weight": "layers.{}.mlp.fc1.weight",
    "encoder.blocks.{}.mlp.fc0.bias": "layers.{}.mlp.fc1.bias",
    "encoder.blocks.{}.mlp.fc1.weight": "layers.{}.mlp.fc2.weight",
    "encoder.blocks.{}.mlp.fc1.bias": "layers.{}.mlp.fc2.bias",
    "encoder.final_layernorm.weight": "final_layernorm.weight",
    "encoder.final_layernorm.bias": "final_layernorm.bias",
    # Fused: split into three and permuted, see `split_wqkv`.
    "encoder.blocks.{}.wqkv.weight": "layers.{}.attn.{q,k,v}_proj.weight",
    "encoder.blocks.{}.wqkv.bias": "layers.{}.attn.{q,k,v}_proj.bias",
}
PROJECTOR_TO_HF: dict[str, str] = {
    "pre_norm.weight": "pre_norm.weight",
    "pre_norm.bias": "pre_norm.bias",
    "proj.0.weight": "in_proj.weight",
    "proj.0.bias": "in_proj.bias",
    "proj.2.weight": "out_proj.weight",
    "proj.2.bias": "out_proj.bias",
}


def rope_permute(t: Tensor, num_heads: int, inverse: bool = False) -> Tensor:
    """Reorder q/k rows per head: interleaved pairs (half, 2) -> rotate-half (2, half), or back."""
    rows = t.shape[0]
    half = rows // num_heads // 2
    shape = (num_heads, 2, half) if inverse else (num_heads, half, 2)
    return t.reshape(*shape, *t.shape[1:]).transpose(1, 2).reshape(rows, *t.shape[1:])


def split_wqkv(t: Tensor, num_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    q, k, v = t.chunk(3, dim=0)
    return rope_permute(q, num_heads), rope_permute(k, num_heads), v


def fuse_qkv(q: Tensor, k: Tensor, v: Tensor, num_heads: int) -> Tensor:
    return torch.cat([rope_permute(q, num_heads, inverse=True), rope_permute(k, num_heads, inverse=True), v])


def _match(table: dict[str, str], key: str) -> tuple[str, str | None] | None:
    for ours, theirs in table.items():
        pattern = "^" + re.escape(ours).replace(r"\{\}", r"(\d+)") + "$"
        m = re.match(pattern, key)
        if m:
            return theirs, (m.group(1) if m.groups() else None)
    return None


def tower_state_to_hf(state: dict[str, Tensor], num_heads: int) -> dict[str, Tensor]:
    """Our `vision_tower` state dict -> `Kimi_K25VisionModel` state dict. Raises on unknown keys."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        hit = _match(TOWER_TO_HF, key)
        if hit is None:
            raise KeyError(f"vision tower key {key!r} has no transformers counterpart")
        theirs, block = hit
        name = theirs.replace("{}", block or "", 1)
        if "{q,k,v}" in name:
            for part, tensor in zip("qkv", split_wqkv(value, num_heads)):
                out[name.replace("{q,k,v}", part)] = tensor
        else:
            out[name] = value
    return out


def projector_state_to_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {PROJECTOR_TO_HF[k]: v for k, v in state.items()}


def hf_configs(cfg: VisionConfig):
    """`transformers` (Kimi_K25Config, Kimi_K25VisionConfig) equivalent to `cfg` (tiny text side)."""
    from transformers import Kimi_K25Config

    vision = dict(
        patch_size=cfg.patch_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_act=cfg.hidden_act,
        pos_emb_height=cfg.pos_emb_height,
        pos_emb_width=cfg.pos_emb_width,
        pos_emb_time=cfg.pos_emb_time,
        merge_kernel_size=list(cfg.merge_kernel_size),
        rope_parameters={"rope_type": "axial", "rope_theta": cfg.rope_theta},
    )
    text = dict(
        model_type="deepseek_v3",
        hidden_size=cfg.text_hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        vocab_size=32,
    )
    full = Kimi_K25Config(
        vision_config=vision,
        text_config=text,
        projection_hidden_size=cfg.hidden_size,
        projection_layer_norm_eps=cfg.projector_ln_eps,
    )
    return full, full.vision_config


def to_transformers(model: MoonViT3d, attn_implementation: str = "sdpa"):
    """Build `transformers`' (Kimi_K25VisionModel, Kimi_K25MultimodalProjection) with `model`'s weights."""
    from transformers.models.kimi_k25.modeling_kimi_k25 import (
        Kimi_K25MultimodalProjection,
        Kimi_K25VisionModel,
    )

    full, vision = hf_configs(model.cfg)
    vision._attn_implementation = attn_implementation
    tower = Kimi_K25VisionModel(vision)
    projector = Kimi_K25MultimodalProjection(full)
    missing, unexpected = tower.load_state_dict(
        tower_state_to_hf(model.vision_tower.state_dict(), model.cfg.num_attention_heads), strict=False
    )
    # Non-persistent buffers (rotary inv_freq, time table) are recomputed by transformers itself.
    assert not unexpected and all("inv_freq" in k or "time_position" in k for k in missing), (
        missing,
        unexpected,
    )
    projector.load_state_dict(projector_state_to_hf(model.mm_projector.state_dict()))
    dtype = next(model.parameters()).dtype
    return tower.to(dtype).eval(), projector.to(dtype).eval()
