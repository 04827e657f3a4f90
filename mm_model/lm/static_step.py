"""A decode step with static shapes, written so that `torch.compile` can take it whole.

Shape legend: B batch rows, L layers, T cache slots (the preallocated length), D hidden, k experts per
token, V vocabulary.

`DeepseekV3LM.forward` serves every case (prefill, padding, no cache) and slices the cache to the
filled length with Python ints, so under `torch.compile` every step has new shapes and recompiles;
its expert dispatch also reads routing decisions back to the host (`.tolist()`). The step here is
the decode case only, on tensors only:

- the slot to write is a (1,) tensor, the latent is written with `index_copy_`, and attention runs
  over all T preallocated slots with a validity mask (slots not yet written, and left padding, are
  masked), so the shapes are the same at every step;
- nothing reads a tensor back to the host;
- the routed experts are either one custom op that the graph holds (`"op"`: inside it, the module's
  own eager dispatch, packed or INT4 weights included) or a formulation on the stacked weights
  (`"gather"`: the k experts' weights gathered and multiplied with `bmm`; `"reduce"`: the same as a
  multiply-and-sum, which inductor fuses into one loop reading the gathered rows in place).

Eager, the step is the slow twin of the compiled one; `decode_step` with `experts="loop"` runs the
module's own `Experts.forward` and is the twin of both expert formulations.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mm_model.lm.attention import MLAttention
from mm_model.lm.model import DecoderLayer, DeepseekV3LM
from mm_model.lm.moe import Experts, MoE
from mm_model.lm.rope import rope_cos_sin

EXPERT_IMPLS = ("op", "gather", "reduce", "loop")

# The custom op cannot take a module, so it takes this key instead; the entry goes with the module.
_EXPERTS: weakref.WeakValueDictionary[int, Experts] = weakref.WeakValueDictionary()


def register_model(model: DeepseekV3LM) -> None:
    """Make the model's routed experts reachable by `routed_experts` (keyed by id, held weakly).
    Outside the step: the graph cannot trace the registration, only read the key."""
    for layer in model.model.layers:
        if isinstance(layer.mlp, MoE):
            register_experts(layer.mlp)


def register_experts(mlp: MoE) -> None:
    """Make one MoE layer's routed experts reachable by `routed_experts` (a single layer's step,
    `layer_step`, needs only this)."""
    _EXPERTS[id(mlp.experts)] = mlp.experts


@torch.library.custom_op("mm_model::routed_experts", mutates_args=())
def routed_experts(x: Tensor, weights: Tensor, idx: Tensor, key: int) -> Tensor:
    """`Experts.forward(x, weights, idx)` of the registered module `key`, as one opaque op: x (N, D),
    weights (N, k) fp32, idx (N, k) -> (N, D). Its host syncs and per-expert calls stay inside."""
    experts = _EXPERTS[key]
    # One token: its k experts in turn on views of the stacked weights (nothing copied, no sort).
    return experts(x, weights, idx, impl="direct" if x.shape[0] == 1 else "auto")


@routed_experts.register_fake
def _(x: Tensor, weights: Tensor, idx: Tensor, key: int) -> Tensor:
    return torch.empty_like(x)


def gathered_experts(
    experts: Experts, x: Tensor, weights: Tensor, idx: Tensor, reduce: bool = False
) -> Tensor:
    """Sum over each token's k experts of weight · expert(x), on the experts' gathered weights.

    x (N, D), weights (N, k) fp32, idx (N, k) -> (N, D). One `bmm` per matrix over the N·k
    (token, expert) pairs; reads (and copies) k expert weights per token, so it suits small N.
    With `reduce`, each product is written as `(w * x).sum(-1)`: eager that materialises the product,
    compiled it becomes one reduction loop over the gathered rows with no copy.
    """
    n, k = idx.shape
    flat = idx.reshape(-1)  # (N·k,)
    xs = x[:, None, :].expand(n, k, x.shape[-1]).reshape(n * k, 1, -1)  # (N·k, 1, D)
    if reduce:
        h = (experts.gate_up_proj[flat] * xs).sum(-1)[:, None]  # (N·k, 1, 2I)
    else:
        h = torch.bmm(xs, experts.gate_up_proj[flat].transpose(1, 2))  # (N·k, 1, 2I)
    gate, up = h.chunk(2, dim=-1)
    a = F.silu(gate) * up
    if reduce:
        y = (experts.down_proj[flat] * a).sum(-1)[:, None]  # (N·k, 1, D)
    else:
        y = torch.bmm(a, experts.down_proj[flat].transpose(1, 2))  # (N·k, 1, D)
    return (y.view(n, k, -1) * weights[..., None].to(y.dtype)).sum(1)


def _moe(mlp: MoE, x: Tensor, experts: str) -> Tensor:  # (B, 1, D) -> (B, 1, D)
    """The MoE layer with its routed experts in the `experts` formulation (module docstring)."""
    if experts == "op":  # registered by `register_model`
        return mlp(x, lambda flat, weights, idx: routed_experts(flat, weights, idx, id(mlp.experts)))
    if experts in ("gather", "reduce"):
        return mlp(x, lambda flat, weights, idx: gathered_experts(mlp.experts, flat, weights, idx,
                                                                  reduce=experts == "reduce"))  # fmt: skip
    return mlp(x)


def _attention(attn: MLAttention, x: Tensor, cos: Tensor, sin: Tensor, kv: Tensor, slot: Tensor,
               mask: Tensor) -> Tensor:  # fmt: skip
    """x (B, 1, D) -> (B, 1, D); writes the new latent into kv (B, T, C + r) at `slot` (1,) and
    attends over its first S slots, S the width of `mask` (B, 1, 1, S)."""
    q_nope, q_rot, latent = attn.project(x, cos, sin)
    kv.index_copy_(1, slot, latent)
    return attn.o_proj(attn._absorbed(q_nope, q_rot, kv[:, : mask.shape[-1]], mask))


def layer_step(layer: DecoderLayer, h: Tensor, cos: Tensor, sin: Tensor, kv: Tensor, slot: Tensor,
               mask: Tensor, experts: str) -> Tensor:  # fmt: skip
    """One decoder layer of the step: h (B, 1, D) -> (B, 1, D); writes kv (B, T, C + r) at `slot`;
    attends over as many slots as `mask` (B, 1, 1, S) is wide."""
    h = h + _attention(layer.self_attn, layer.input_layernorm(h), cos, sin, kv, slot, mask)
    x = layer.post_attention_layernorm(h)
    return h + (_moe(layer.mlp, x, experts) if isinstance(layer.mlp, MoE) else layer.mlp(x))


def decode_step(
    model: DeepseekV3LM,
    tokens: Tensor,
    slot: Tensor,
    kv: Tensor | Sequence[Tensor],
    key_valid: Tensor,
    pad: Tensor,
    experts: str = "op",
    attended: Tensor | None = None,
) -> Tensor:
    """One greedy-or-sampled decode step with shapes independent of the step.

    Args:
        tokens: (B,) the tokens chosen last step.
        slot: (1,) long, the cache slot they go to (= the slots already filled).
        kv: the cache's latents, (L, B, T, C + r) or L tensors (B, T, C + r), written at `slot` in
            place. Compiled, give the L layers as separate tensors (`LatentCache.layers`): each
            layer's write is then in place, where a write into one (L, ...) input became a scatter
            that copied the whole cache every layer and step.
        key_valid: (B, T) bool, False at left-padding slots. pad: (B,) long, leading padding per row.
        experts: "op", "gather", "reduce" or "loop" (see the module docstring).
        attended: (S,) any values, S <= T: attend over the first S slots only (slot < S); None: all T.
            Its length, not a slice made by the caller, carries S: a slice of the cache would be a
            strided view, a different layout from the whole cache and another compile.
    Returns:
        (B, V) fp32 next-token logits.
    """
    h = model.embed(tokens[:, None])  # (B, 1, D)
    t = kv[0].shape[1] if attended is None else attended.shape[0]
    # Slots after `slot` are not written yet: masked like padding. (B, 1, 1, S)
    mask = (key_valid[:, :t] & (torch.arange(t, device=slot.device) <= slot))[:, None, None, :]
    positions = (slot[None, :] - pad[:, None]).clamp_min(0)  # (B, 1) rope positions
    cos, sin = rope_cos_sin(positions, model.inv_freq, model.attention_factor)
    for i, layer in enumerate(model.model.layers):
        h = layer_step(layer, h, cos, sin, kv[i], slot, mask, experts)
    return model.lm_head(model.model.norm(h))[:, -1].float()
