"""The MoonViT-3D tower: patch embedding + position embeddings, pre-norm blocks, final LayerNorm.

Module and parameter names follow the released checkpoint (`vision_tower.patch_embed.proj`,
`vision_tower.patch_embed.pos_emb.weight`, `vision_tower.encoder.blocks.N.{norm0,norm1,wqkv,wo,
mlp.fc0,mlp.fc1}`, `vision_tower.encoder.final_layernorm`), so released weights load key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compute.dtypes import compute_dtype, layer_norm, linear
from vision.attention import packed_attention, select_backend
from vision.config import VisionConfig
from vision.packing import PackedVision
from vision.rope import apply_rope, rope_angles


def time_table(frames: int, dim: int) -> Tensor:
    """(frames+1, dim) float32 sin-cos table with a zero row 0 (single-frame items add nothing).

    Row f+1 = [sin(f w_0..w_{d/2-1}), cos(f w_0..w_{d/2-1})], w_k = 10000^(-2k/dim): sin half then cos
    half, not interleaved (InternVideo2's 1D recipe, as in the reference).
    """
    freqs = 1.0 / 10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    angles = torch.arange(frames, dtype=torch.float32)[:, None] * freqs
    table = torch.cat([angles.sin(), angles.cos()], dim=1)
    return torch.cat([table.new_zeros(1, dim), table])


class PositionGrid(nn.Module):
    """The learnable (H0, W0, C) position grid; each item reads it bicubically resampled to its (h, w)."""

    def __init__(self, height: int, width: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(height, width, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, index: Tensor, weight: Tensor) -> Tensor:
        """(N, 16) taps and weights -> (N, C) position embeddings."""
        table = self.weight.flatten(0, 1)
        return F.embedding_bag(index, table, per_sample_weights=weight.to(table.dtype), mode="sum")


class PatchEmbed(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        p = cfg.patch_size
        # Kept as a Conv2d for the checkpoint's (C, 3, p, p) shape; applied as one matmul over flattened
        # patches, which is the same arithmetic and faster than a strided conv on CPU.
        self.proj = nn.Conv2d(3, cfg.hidden_size, kernel_size=p, stride=p)
        self.pos_emb = PositionGrid(cfg.pos_emb_height, cfg.pos_emb_width, cfg.hidden_size)
        self.register_buffer("time_weight", time_table(cfg.pos_emb_time, cfg.hidden_size), persistent=False)

    def forward(self, packed: PackedVision, dtype: torch.dtype | None = None) -> Tensor:
        """Pixels (N, 3, p, p) -> (N, C) in `dtype` (default: the weights'): patch matmul + 2D grid + time."""
        w = self.proj.weight
        dtype = dtype or w.dtype
        x = F.linear(packed.patches.to(dtype).flatten(1), w.to(dtype).flatten(1), self.proj.bias.to(dtype))
        pos = self.pos_emb(packed.pos_index, packed.pos_weight)
        pos = pos + self.time_weight[packed.frame_index].to(pos.dtype)
        return x + pos.to(dtype)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.fc0 = nn.Linear(dim, hidden)
        self.fc1 = nn.Linear(hidden, dim)
        self.activation = "gelu_tanh" if act == "gelu_pytorch_tanh" else "gelu"

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """(N, C) -> (N, C), plus `residual` when given (fused into the last matmul where it can be)."""
        return linear(linear(x, self.fc0, activation=self.activation), self.fc1, residual=residual)


class Block(nn.Module):
    """Pre-norm block: x += wo(attn(norm0(x))); x += mlp(norm1(x))."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.head_dim
        self.norm0 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.norm1 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.wqkv = nn.Linear(d, 3 * d)  # rows [q; k; v], each heads x head_dim contiguous
        self.wo = nn.Linear(d, d)
        self.mlp = MLP(d, cfg.intermediate_size, cfg.hidden_act)

    def qkv(self, x: Tensor, rope: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, C) block input and (N, 1, D/2) rope rotations -> queries and keys (rotated) and values,
        each (N, H, D)."""
        n = x.shape[0]
        qkv = linear(layer_norm(x, self.norm0), self.wqkv).view(n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.unbind(1)
        return apply_rope(q, rope), apply_rope(k, rope), v

    def forward(self, x: Tensor, rope: Tensor, packed: PackedVision, backend: str) -> Tensor:
        n = x.shape[0]
        q, k, v = self.qkv(x, rope)
        attn = packed_attention(q, k, v, packed.cu_seqlens, packed.seqlens, packed.runs, backend)
        x = linear(attn.reshape(n, -1), self.wo, residual=x)
        return self.mlp(layer_norm(x, self.norm1), residual=x)


class Encoder(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers))
        self.final_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: Tensor, packed: PackedVision, backend: str = "auto") -> Tensor:
        backend = select_backend(x.device, x.dtype, backend)
        rope = rope_angles(packed.rope_pos, self.cfg.head_dim, self.cfg.rope_theta)
        for block in self.blocks:
            x = block(x, rope, packed, backend)
        return layer_norm(x, self.final_layernorm)


class VisionTower(nn.Module):
    """Packed patches -> per-patch features (N, C) after the final LayerNorm (before pooling)."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.encoder = Encoder(cfg)

    def forward(
        self, packed: PackedVision, backend: str = "auto", dtype: torch.dtype | None = None
    ) -> Tensor:
        """`dtype` is the activation dtype; default: `compute_dtype` of the weights on their device."""
        weight = self.patch_embed.proj.weight
        dtype = dtype or compute_dtype(weight.dtype, weight.device)
        return self.encoder(self.patch_embed(packed, dtype), packed, backend)

    def init_weights(self, std: float = 0.02) -> None:
        """Random init for trained-from-scratch or test models (checkpoints overwrite it)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.patch_embed.pos_emb.weight, std=std)
        self.patch_embed.time_weight.copy_(time_table(self.cfg.pos_emb_time, self.cfg.hidden_size))


def tower_flops_per_patch(cfg: VisionConfig, item_len: int) -> float:
    """Matmul FLOPs per patch for an item of `item_len` patches (linear layers + attention)."""
    d, m = cfg.hidden_size, cfg.intermediate_size
    linear = 2 * (3 * d * d + d * d + 2 * d * m)
    attention = 4 * item_len * d
    return cfg.num_hidden_layers * (linear + attention) + 2 * 3 * cfg.patch_size**2 * d
