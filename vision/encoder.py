"""The MoonViT-3D tower: patch embedding + position embeddings, pre-norm blocks, final LayerNorm.

Module and parameter names follow the released checkpoint (`vision_tower.patch_embed.proj`,
`vision_tower.patch_embed.pos_emb.weight`, `vision_tower.encoder.blocks.N.{norm0,norm1,wqkv,wo,
mlp.fc0,mlp.fc1}`, `vision_tower.encoder.final_layernorm`), so released weights load key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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

    def forward(self, packed: PackedVision) -> Tensor:
        """Pixels (N, 3, p, p) -> (N, C): linear patch embedding + 2D grid + time embedding."""
        w = self.proj.weight
        x = F.linear(packed.patches.to(w.dtype).flatten(1), w.flatten(1), self.proj.bias)
        pos = self.pos_emb(packed.pos_index, packed.pos_weight)
        pos = pos + self.time_weight[packed.frame_index].to(pos.dtype)
        return x + pos.to(x.dtype)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.fc0 = nn.Linear(dim, hidden)
        self.fc1 = nn.Linear(hidden, dim)
        self.approximate = "tanh" if act == "gelu_pytorch_tanh" else "none"

    def forward(self, x: Tensor) -> Tensor:
        return self.fc1(F.gelu(self.fc0(x), approximate=self.approximate))


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

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], packed: PackedVision, backend: str) -> Tensor:
        n = x.shape[0]
        qkv = self.wqkv(self.norm0(x)).view(n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.unbind(1)  # (N, H, D) each
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        attn = packed_attention(q, k, v, packed.cu_seqlens, packed.seqlens, packed.runs, backend)
        x = x + self.wo(attn.reshape(n, -1))
        return x + self.mlp(self.norm1(x))


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
        return self.final_layernorm(x)


class VisionTower(nn.Module):
    """Packed patches -> per-patch features (N, C) after the final LayerNorm (before pooling)."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.encoder = Encoder(cfg)

    def forward(self, packed: PackedVision, backend: str = "auto") -> Tensor:
        return self.encoder(self.patch_embed(packed), packed, backend)

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
