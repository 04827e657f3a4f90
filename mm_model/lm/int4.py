"""The released checkpoint's INT4 format: compressed-tensors `pack-quantized`, 4-bit symmetric, group 32.

Kimi K2.5 ships its routed experts this way (every other tensor bf16). Per expert Linear with weight
(N, K) the checkpoint holds, in place of `weight`:
    weight_packed (N, K/8) int32: 8 values per word, value i of the word in bits 4i..4i+3
                                  (little-endian), each stored as q + 8 in [0, 15]
    weight_scale  (N, K/32) bf16:  one scale per group of 32 consecutive inputs
    weight_shape  (2,) int:        (N, K)
and w = q · scale, computed in the scale's dtype. This layout is read from compressed-tensors 0.20.1
(`compressors/pack_quantized/helpers.py` `pack_to_int32`, `forward_helpers._dequantize`) and
checked against it in the tests; the config fields are those of the released `config.json`.

Shape legend: N output rows, K inputs, G = K/32 groups; leading dims (e.g. E experts) pass through.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mm_model.lm.errors import CheckpointError

BITS = 4
GROUP_SIZE = 32
PER_WORD = 32 // BITS  # values per int32 word
QMIN, QMAX = -(2 ** (BITS - 1)), 2 ** (BITS - 1) - 1  # -8, 7

# The `quantization_config` of the released Kimi-K2.5 `config.json`, field for field (it appears both
# top-level and inside `text_config` in the dump of the release's config). Only the routed experts
# match: the ignore list names everything else that is a Linear in the language model.
RELEASE_QUANTIZATION_CONFIG: dict[str, Any] = {
    "config_groups": {
        "group_0": {
            "input_activations": None,
            "output_activations": None,
            "targets": ["Linear"],
            "weights": {
                "actorder": None,
                "block_structure": None,
                "dynamic": False,
                "group_size": GROUP_SIZE,
                "num_bits": BITS,
                "observer": "minmax",
                "observer_kwargs": {},
                "strategy": "group",
                "symmetric": True,
                "type": "int",
            },
        }
    },
    "format": "pack-quantized",
    "ignore": [
        "lm_head",
        "re:.*self_attn.*",
        "re:.*shared_experts.*",
        r"re:.*mlp\.(gate|up|gate_up|down)_proj.*",
    ],
    "kv_cache_scheme": None,
    "quant_method": "compressed-tensors",
    "quantization_status": "compressed",
}


def release_quantization_config() -> dict[str, Any]:
    """A fresh copy of the release's `quantization_config` (what `--to released-int4` writes)."""
    return copy.deepcopy(RELEASE_QUANTIZATION_CONFIG)


@dataclass(frozen=True)
class Int4Scheme:
    """A validated pack-quantized INT4 scheme (the only one we compute with)."""

    group_size: int = GROUP_SIZE
    ignore: tuple[str, ...] = ()


# (field, the only accepted value) for each config group's `weights`; absent fields take these.
_WEIGHT_FIELDS: tuple[tuple[str, Any], ...] = (
    ("num_bits", BITS), ("type", "int"), ("symmetric", True), ("strategy", "group"),
    ("group_size", GROUP_SIZE), ("dynamic", False), ("actorder", None), ("block_structure", None),
)  # fmt: skip


def _require(field: str, value: Any, allowed: Any, what: str) -> None:
    if value != allowed or type(value) is not type(allowed):
        raise CheckpointError(
            f"unsupported quantization: {field} is {value!r}; only {allowed!r} ({what}) is supported"
        )


def parse_quantization_config(d: Any, where: str = "quantization_config") -> Int4Scheme:
    """Validate a compressed-tensors `quantization_config` dict; raise `CheckpointError` naming the
    first field whose value we do not support (never load weights we would compute wrongly)."""
    if not isinstance(d, dict):
        raise CheckpointError(f"{where} must be a dict, got {type(d).__name__}")
    what = "compressed-tensors pack-quantized INT4, symmetric, group 32"
    _require(f"{where}.quant_method", d.get("quant_method"), "compressed-tensors", what)
    _require(f"{where}.format", d.get("format"), "pack-quantized", what)
    status = d.get("quantization_status", "compressed")
    _require(f"{where}.quantization_status", status, "compressed", "weights stored packed")
    if d.get("kv_cache_scheme") is not None:
        _require(f"{where}.kv_cache_scheme", d["kv_cache_scheme"], None, "no KV-cache quantization")
    groups = d.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise CheckpointError(f"{where}.config_groups must be a non-empty dict, got {groups!r}")
    for name, group in groups.items():
        at = f"{where}.config_groups.{name}"
        if not isinstance(group, dict) or not isinstance(group.get("weights"), dict):
            raise CheckpointError(f"{at}.weights must be a dict, got {group!r}")
        if group.get("format") is not None:
            _require(f"{at}.format", group["format"], "pack-quantized", what)
        for act in ("input_activations", "output_activations"):
            if group.get(act) is not None:
                _require(f"{at}.{act}", group[act], None, "weight-only quantization")
        weights = group["weights"]
        for field, allowed in _WEIGHT_FIELDS:
            _require(f"{at}.weights.{field}", weights.get(field, allowed), allowed, what)
    ignore = d.get("ignore") or []
    if not isinstance(ignore, list) or not all(isinstance(s, str) for s in ignore):
        raise CheckpointError(f"{where}.ignore must be a list of strings, got {ignore!r}")
    return Int4Scheme(group_size=GROUP_SIZE, ignore=tuple(ignore))


def find_quantization_config(config: dict[str, Any]) -> Int4Scheme | None:
    """The INT4 scheme of a config.json dict, or None if unquantized. The release's config carries it
    in `text_config` (and transformers copies it to the top level); where both are present, both
    must be supported and the top-level one is used."""
    text = config.get("text_config")
    inner = text.get("quantization_config") if isinstance(text, dict) else None
    scheme = None if inner is None else parse_quantization_config(inner, "text_config.quantization_config")
    top = config.get("quantization_config")
    return scheme if top is None else parse_quantization_config(top)


# ---- packing math (pure functions) -------------------------------------------------------------
def pack_int4(q: Tensor) -> Tensor:
    """int8 values in [-8, 7], (..., K) -> int32 words (..., K/8), value i of a word in bits 4i.."""
    assert q.shape[-1] % PER_WORD == 0, q.shape
    u = (q.to(torch.int32) + 8).view(*q.shape[:-1], -1, PER_WORD)  # (..., K/8, 8) in [0, 15]
    shifts = torch.arange(0, 32, BITS, dtype=torch.int32, device=q.device)
    # The top nibble sets the sign bit: summing in int64 and wrapping keeps the two's-complement word.
    words = (u.to(torch.int64) << shifts.to(torch.int64)).sum(-1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def unpack_int4(packed: Tensor) -> Tensor:
    """int32 words (..., K/8) -> int8 values (..., K) in [-8, 7]."""
    b = packed.contiguous().view(torch.uint8)  # (..., K/2): little-endian bytes, low nibble first
    return (torch.stack((b & 0xF, b >> 4), dim=-1).flatten(-2).view(torch.int8)) - 8


def quantize_int4(w: Tensor, scale_dtype: torch.dtype = torch.bfloat16) -> tuple[Tensor, Tensor]:
    """(..., N, K) float -> packed (..., N, K/8) int32 and scale (..., N, K/32) in `scale_dtype`.

    Symmetric min-max per group of 32, as compressed-tensors' minmax observer: scale = max|w| / 7.5
    (half the 15-step range), q = clamp(round(w / scale), -8, 7); the division uses the scale as
    stored, so dequantising reproduces the rounding exactly.
    """
    if w.shape[-1] % GROUP_SIZE:
        raise CheckpointError(f"cannot quantize a weight of shape {tuple(w.shape)}: K not a multiple of 32")
    g = w.float().unflatten(-1, (-1, GROUP_SIZE))  # (..., N, G, 32)
    amax = g.abs().amax(-1)
    scale = torch.where(amax > 0, amax / ((QMAX - QMIN) / 2), torch.ones_like(amax)).to(scale_dtype)
    q = torch.round(g / scale.float()[..., None]).clamp_(QMIN, QMAX).to(torch.int8).flatten(-2)
    return pack_int4(q), scale


def dequantize_int4(packed: Tensor, scale: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """packed (..., N, K/8), scale (..., N, K/32) -> w (..., N, K), computed in the scale's dtype as
    compressed-tensors does (so a bf16 scale rounds each product to bf16), then cast to `dtype`."""
    q = unpack_int4(packed).unflatten(-1, (-1, GROUP_SIZE))  # (..., N, G, 32)
    w = (q.to(scale.dtype) * scale[..., None]).flatten(-2)
    return w if dtype is None else w.to(dtype)
