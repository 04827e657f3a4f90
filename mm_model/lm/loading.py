"""Load `deepseek_v3` safetensors checkpoints into `DeepseekV3LM`, tensor by tensor.

Key maps are data: a checkpoint key (after stripping `prefix` and applying `KEY_ALIASES`) either
names one of our parameters exactly or matches a rule in `KEY_RULES` that places it in a slice of a
stacked parameter. The model is built on the meta device, its storage allocated once in the target
dtype, and each checkpoint tensor copied in and dropped: peak memory is the model plus one tensor.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor

from mm_model.jsonfile import read_json
from mm_model.lm.config import LMConfig
from mm_model.lm.model import DeepseekV3LM, cast_model
from vision.errors import InputError


class CheckpointError(InputError):
    """A checkpoint directory or file is missing, unreadable or does not fit the config."""


# Renames applied before matching: transformers' Kimi_K25 save_pretrained writes the language-model
# layers as `model.blocks.N` (its vision rename reversed onto the LM), the released files `model.layers.N`.
KEY_ALIASES: tuple[tuple[str, str], ...] = ((r"^model\.blocks\.(\d+)\.", r"model.layers.\1."),)

# (checkpoint key pattern, our parameter, part): per-expert released keys go into the stacked experts.
# part "gate"/"up" are the two halves of gate_up_proj[e]; "whole" is down_proj[e].
KEY_RULES: tuple[tuple[str, str, str], ...] = (
    (r"^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.gate_proj\.weight$", "model.layers.{0}.mlp.experts.gate_up_proj", "gate"),
    (r"^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.up_proj\.weight$", "model.layers.{0}.mlp.experts.gate_up_proj", "up"),
    (r"^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.down_proj\.weight$", "model.layers.{0}.mlp.experts.down_proj", "whole"),
)  # fmt: skip

# Checkpoint keys that are known and deliberately not loaded.
IGNORED_KEYS: tuple[str, ...] = (r"\.rotary_emb\.inv_freq$",)


def _resolve(key: str, cfg: LMConfig) -> tuple[str, tuple[int, slice] | None] | None:
    """Our parameter name and (expert, row slice) for a checkpoint key; None for an ignored key."""
    for pattern, repl in KEY_ALIASES:
        key = re.sub(pattern, repl, key)
    if any(re.search(p, key) for p in IGNORED_KEYS):
        return None
    layer = re.match(r"^model\.layers\.(\d+)\.", key)
    if layer and int(layer.group(1)) >= cfg.num_hidden_layers:
        return None  # multi-token-prediction layers (e.g. DeepSeek-V3's layer 61); we build none
    for pattern, target, part in KEY_RULES:
        m = re.match(pattern, key)
        if m:
            i, e = m.group(1), int(m.group(2))
            n = cfg.moe_intermediate_size
            rows = {"gate": slice(0, n), "up": slice(n, 2 * n), "whole": slice(None)}[part]
            return target.format(i), (e, rows)
    return key, None


def checkpoint_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint directory (from the index when there is one)."""
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {str(path)!r} does not exist")
    index = path / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{str(index)!r} is not a safetensors index ({e})") from e
        files = [path / name for name in sorted(set(weight_map.values()))]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise CheckpointError(f"shards listed in {index.name} are missing: {missing}")
        return files
    files = sorted(path.glob("*.safetensors"))
    if not files:
        pickles = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
        hint = f" (found {pickles}: only safetensors are read, never pickles)" if pickles else ""
        raise CheckpointError(f"no *.safetensors in {str(path)!r}{hint}")
    return files


def read_config(path: str | Path, key: str | None = None) -> LMConfig:
    """LMConfig from `path/config.json` (or its sub-dict `key`, e.g. "text_config")."""
    d = read_json(Path(path) / "config.json", CheckpointError)
    return LMConfig.from_hf_dict(d[key] if key else d)


def build_empty(cfg: LMConfig, dtype: torch.dtype, device: torch.device | str = "cpu") -> DeepseekV3LM:
    """The model with uninitialized storage in `dtype` (router biases fp32), rope buffers computed."""
    with torch.device("meta"):
        model = cast_model(DeepseekV3LM(cfg), dtype)
    model.to_empty(device=device)
    model.reset_buffers()
    return model.eval().requires_grad_(False)


def load_lm(
    path: str | Path,
    *,
    config: LMConfig | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    prefix: str = "",
) -> DeepseekV3LM:
    """Load a `deepseek_v3` checkpoint directory (single file or sharded with an index).

    Args:
        config: defaults to the directory's config.json.
        dtype: storage dtype (float32 or bfloat16); the router correction biases stay fp32.
        prefix: only keys starting with it are read, with it stripped (e.g. "language_model.").
    Raises:
        CheckpointError (an InputError) for a bad directory, unknown or missing keys (named), or
        shape mismatches.
    """
    path = Path(path)
    files = checkpoint_files(path)
    cfg = config or read_config(path)
    model = build_empty(cfg, dtype, device)
    targets = model.state_dict(keep_vars=True)
    need_parts = {name: t.shape[0] * (2 if name.endswith("gate_up_proj") else 1)
                  for name, t in targets.items() if name.endswith(("experts.gate_up_proj", "experts.down_proj"))}  # fmt: skip
    filled: dict[str, set] = {name: set() for name in targets}
    unknown: list[str] = []
    with torch.no_grad():
        for file in files:
            with safe_open(str(file), framework="pt") as f:
                for raw in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    if not raw.startswith(prefix):
                        continue
                    resolved = _resolve(raw[len(prefix) :], cfg)
                    if resolved is None:
                        continue
                    name, where = resolved
                    if name not in targets:
                        # Zero-size tensors (e.g. the reference's empty shared expert when
                        # n_shared_experts is 0) carry nothing; anything else is a real mismatch.
                        if math.prod(f.get_slice(raw).get_shape()) != 0:
                            unknown.append(raw)
                        continue
                    _copy_into(targets[name], where, f.get_tensor(raw), raw)
                    filled[name].add(None if where is None else (where[0], where[1].start))
    if cfg.tie_word_embeddings:
        filled["lm_head.weight"] |= filled["model.embed_tokens.weight"]
    missing = [n for n, got in filled.items() if len(got) < need_parts.get(n, 1) and None not in got]
    if unknown or missing:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit the config: unknown keys {unknown[:20]}"
            f"{' ...' if len(unknown) > 20 else ''}, missing parameters {missing[:20]}"
            f"{' ...' if len(missing) > 20 else ''}"
        )
    return model


def _copy_into(target: Tensor, where: tuple[int, slice] | None, value: Tensor, key: str) -> None:
    dest = target if where is None else target[where[0], where[1]]
    if tuple(dest.shape) != tuple(value.shape):
        raise CheckpointError(
            f"checkpoint tensor {key!r} has shape {tuple(value.shape)}, expected {tuple(dest.shape)}"
        )
    dest.copy_(value)


def export_state_dict(model: DeepseekV3LM, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
    """(key, tensor) pairs in the released per-expert layout (what `load_lm` reads), views, no copies."""
    cfg: LMConfig = model.config
    n = cfg.moe_intermediate_size
    for name, t in model.state_dict().items():
        if cfg.tie_word_embeddings and name == "lm_head.weight":
            continue
        m = re.match(r"^(model\.layers\.\d+\.mlp\.experts)\.(gate_up_proj|down_proj)$", name)
        if not m:
            yield prefix + name, t
            continue
        for e in range(t.shape[0]):
            base = f"{prefix}{m.group(1)}.{e}"
            if m.group(2) == "gate_up_proj":
                yield f"{base}.gate_proj.weight", t[e, :n]
                yield f"{base}.up_proj.weight", t[e, n:]
            else:
                yield f"{base}.down_proj.weight", t[e]
