"""Multimodal checkpoints: key maps as data, meta-device build, safetensors in and out.

Reads the released K2.5 layout (`language_model.model.layers.N...`, `language_model.lm_head`,
`vision_tower.*`, `mm_projector.*`) and what `transformers`' `Kimi_K25ForConditionalGeneration.
save_pretrained` writes (5.23 reverses its load-time renames imperfectly: the LM layers come out as
`language_model.model.blocks.N`, the projector norm as `model.mm_projector.pre_norm` and the
patch embedding as `vision_tower.encoder.patch_embed`). Writes
the released layout, sharded with an index. Safetensors only; pickled weights are never read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from mm_model.config import ModelConfig
from mm_model.lm.loading import CheckpointError, checkpoint_files, export_state_dict, load_lm
from mm_model.multimodal import KimiK25Model
from vision.encoder import VisionTower
from vision.merger import Projector

# Checkpoint-key renames applied before matching, as (pattern, replacement) data.
KEY_ALIASES: tuple[tuple[str, str], ...] = (
    (r"^model\.mm_projector\.", "mm_projector."),  # transformers 5.23 save_pretrained
    (r"^vision_tower\.encoder\.patch_embed\.", "vision_tower.patch_embed."),  # same
    (r"^model\.vision_tower\.", "vision_tower."),
)
LM_PREFIX = "language_model."
VISION_PREFIXES = ("vision_tower.", "mm_projector.")
# Known keys we deliberately do not load (recomputed buffers).
IGNORED = (r"\.rotary_emb\.inv_freq$", r"time_weight$")


def _canonical(key: str) -> str:
    for pattern, repl in KEY_ALIASES:
        key = re.sub(pattern, repl, key)
    return key


def load_model(
    path: str | Path,
    *,
    config: ModelConfig | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    int4_kernel: bool | None = None,
    quantize_experts: bool = False,
) -> KimiK25Model:
    """Load a K2.5 multimodal checkpoint directory; unknown and missing keys are reported by name.

    Peak memory is the model plus one tensor: the model is built on the meta device and each
    checkpoint tensor is copied into its place and dropped. INT4 routed experts (the release's
    compressed-tensors format) stay INT4; `int4_kernel` and `quantize_experts` as in `load_lm`.
    """
    path = Path(path)
    cfg = config or ModelConfig.from_dir(path)
    files = checkpoint_files(path)
    language_model = load_lm(
        path, config=cfg.text, dtype=dtype, device=device, prefix=LM_PREFIX, int4_kernel=int4_kernel,
        quantize_experts=quantize_experts,
    )  # fmt: skip

    with torch.device("meta"):
        tower, projector = VisionTower(cfg.vision), Projector(cfg.vision)
    tower.to_empty(device=device)
    projector.to_empty(device=device)
    targets = {f"vision_tower.{k}": v for k, v in tower.state_dict(keep_vars=True).items()}
    targets.update({f"mm_projector.{k}": v for k, v in projector.state_dict(keep_vars=True).items()})
    targets = {k: v for k, v in targets.items() if not any(re.search(p, k) for p in IGNORED)}
    filled: set[str] = set()
    unknown: list[str] = []
    with torch.no_grad():
        for file in files:
            with safe_open(str(file), framework="pt") as f:
                for raw in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    if raw.startswith(LM_PREFIX):
                        continue  # load_lm has read and checked these
                    key = _canonical(raw)
                    if any(re.search(p, key) for p in IGNORED):
                        continue
                    if key not in targets:
                        unknown.append(raw)
                        continue
                    value = f.get_tensor(raw)
                    if tuple(value.shape) != tuple(targets[key].shape):
                        raise CheckpointError(
                            f"checkpoint tensor {raw!r} has shape {tuple(value.shape)}, "
                            f"expected {tuple(targets[key].shape)} from the config"
                        )
                    targets[key].copy_(value)
                    filled.add(key)
    missing = sorted(set(targets) - filled)
    if unknown or missing:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit the config: unknown keys {unknown[:20]}, "
            f"missing parameters {missing[:20]}"
        )
    tower.patch_embed.time_weight.copy_(_time_table(cfg))
    with torch.device("meta"):
        model = KimiK25Model(cfg)
    model.vision_tower = tower.to(dtype)
    model.mm_projector = projector.to(dtype)
    model.language_model = language_model
    return model.eval().requires_grad_(False)


def _time_table(cfg: ModelConfig) -> Tensor:
    from vision.encoder import time_table

    return time_table(cfg.vision.pos_emb_time, cfg.vision.hidden_size)


def released_state(model: KimiK25Model) -> Iterator[tuple[str, Tensor]]:
    """(key, tensor) in the released layout: per-expert LM keys, vision and projector as named."""
    for key, value in model.vision_tower.state_dict().items():
        if not any(re.search(p, key) for p in IGNORED):
            yield f"vision_tower.{key}", value
    for key, value in model.mm_projector.state_dict().items():
        yield f"mm_projector.{key}", value
    yield from export_state_dict(model.language_model, prefix=LM_PREFIX)


def save_model(
    model: KimiK25Model,
    path: str | Path,
    *,
    max_shard_bytes: int = 2 * 1024**3,
    tokenizer_dir: str | Path | None = None,
) -> Path:
    """Write config.json, preprocessor_config.json and safetensors shards in the released layout.

    One `model.safetensors` when it fits in one shard, else `model-0000i-of-0000n.safetensors` plus
    `model.safetensors.index.json`. Tokenizer files are copied from `tokenizer_dir` if given. INT4
    routed experts are written as the release writes them, with its `quantization_config`.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.config.save(path)
    _write_quantization_config(model, path / "config.json")
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for key, value in released_state(model):
        nbytes = value.numel() * value.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = value.detach().contiguous().cpu()
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(path / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        total = 0
        for i, shard in enumerate(shards, 1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(path / name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, name))
            total += sum(t.numel() * t.element_size() for t in shard.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    if tokenizer_dir is not None:
        for name in ("tokenizer.json", "tiktoken.model", "tokenizer_config.json", "special_tokens_map.json"):
            src = Path(tokenizer_dir) / name
            if src.exists():
                (path / name).write_bytes(src.read_bytes())
    return path


def _write_quantization_config(model: KimiK25Model, config_json: Path) -> None:
    """Declare the release's `quantization_config` (top-level and in text_config, as the release's
    config has it) exactly when the model holds INT4 experts; drop any stale one otherwise."""
    from mm_model.lm.int4 import release_quantization_config
    from mm_model.lm.int4_experts import int4_experts

    d = json.loads(config_json.read_text())
    d.pop("quantization_config", None)
    d["text_config"].pop("quantization_config", None)
    if int4_experts(model.language_model):
        d["quantization_config"] = release_quantization_config()
        d["text_config"]["quantization_config"] = release_quantization_config()
    config_json.write_text(json.dumps(d, indent=2) + "\n")
