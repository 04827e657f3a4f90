"""Load `deepseek_v3` safetensors checkpoints into `DeepseekV3LM`, tensor by tensor.

Key maps are data: a checkpoint key (after stripping `prefix` and applying `KEY_ALIASES`) either
names one of our parameters exactly or matches a rule in `KEY_RULES` that places it in a slice of a
stacked parameter. The model is built on the meta device, its storage allocated once in the target
dtype, and each checkpoint tensor copied in and dropped: peak memory is the model plus one tensor.
INT4 routed experts (the release's compressed-tensors `pack-quantized`, `int4.py`) are built as
`Int4Experts` and filled the same way, so they are never held in a wider dtype.
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
from tqdm import tqdm

from mm_model.jsonfile import read_json
from mm_model.lm.config import LMConfig
from mm_model.lm.errors import CheckpointError
from mm_model.lm.model import DeepseekV3LM, cast_model

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

# INT4 routed experts (compressed-tensors pack-quantized, see `int4.py`): `weight_packed` and
# `weight_scale` go into the stacked buffers of `int4_experts.Int4Experts` (gate/up halves as above);
# `weight_shape` is checked against the config, not stored.
INT4_KEY_RULE = (
    r"^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight_(packed|scale|shape)$"
)
INT4_TARGETS = (
    "experts.gate_up_packed",
    "experts.gate_up_scale",
    "experts.down_packed",
    "experts.down_scale",
)

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
    if cfg.tie_word_embeddings and key == "lm_head.weight":
        return None  # tied: the head is embed_tokens (as transformers does when its config ties them)
    m = re.match(INT4_KEY_RULE, key)
    if m:
        i, e, proj, kind = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        n = cfg.moe_intermediate_size
        rows = {"gate": slice(0, n), "up": slice(n, 2 * n), "down": slice(None)}[proj]
        return f"model.layers.{i}.mlp.experts.{'down' if proj == 'down' else 'gate_up'}_{kind}", (e, rows)
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


def build_empty(
    cfg: LMConfig,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    int4_scale_dtype: torch.dtype | None = None,
) -> DeepseekV3LM:
    """The model with uninitialized storage in `dtype` (router biases fp32), rope buffers computed.

    With `int4_scale_dtype`, the routed experts are `Int4Experts` (packed INT4 + scales of that dtype),
    swapped in on the meta device so no full-precision expert storage is ever allocated.
    """
    with torch.device("meta"):
        model = cast_model(DeepseekV3LM(cfg), dtype)
        if int4_scale_dtype is not None:
            from mm_model.lm.int4_experts import Int4Experts

            for i, layer in enumerate(model.model.layers):
                if cfg.is_moe_layer(i):
                    layer.mlp.experts = Int4Experts(cfg, int4_scale_dtype)
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
    int4_kernel: bool | None = None,
    quantize_experts: bool = False,
) -> DeepseekV3LM:
    """Load a `deepseek_v3` checkpoint directory (single file or sharded with an index).

    A checkpoint whose config.json has a compressed-tensors `quantization_config` (the release's
    INT4 routed experts) loads into `Int4Experts`: the experts stay 4-bit in memory, shard by shard.

    Args:
        config: defaults to the directory's config.json.
        dtype: storage dtype (float32 or bfloat16) of everything that is not INT4; the router
            correction biases stay fp32.
        prefix: only keys starting with it are read, with it stripped (e.g. "language_model.").
        int4_kernel: hold INT4 experts in torch's CPU 4-bit kernel layout (faster, not exportable);
            default: for bf16 on the CPU.
        quantize_experts: quantise full-precision routed experts to INT4 (bf16 scales) while
            reading them (for `convert --to released-int4`): peak memory is the INT4 model.
    Raises:
        CheckpointError (an InputError) for a bad directory, unknown or missing keys (named), shape
        mismatches, or an unsupported quantization config (the field and value named).
    """
    path = Path(path)
    files = checkpoint_files(path)
    cfg = config or read_config(path)
    scheme = _quantization(path)
    scale_dtype = _int4_scale_dtype(files, prefix) if scheme is not None else None
    quantize = quantize_experts and scheme is None
    if quantize:
        from mm_model.lm.int4 import quantize_int4

        scale_dtype = torch.bfloat16  # as released
    model = build_empty(cfg, dtype, device, int4_scale_dtype=scale_dtype)
    targets = model.state_dict(keep_vars=True)
    need_parts = {name: t.shape[0] * (2 if "gate_up" in name.rsplit(".", 1)[-1] else 1) for name, t in targets.items()
                  if name.endswith(("experts.gate_up_proj", "experts.down_proj", *INT4_TARGETS))}  # fmt: skip
    filled: dict[str, set] = {name: set() for name in targets}
    unknown: list[str] = []
    with torch.no_grad():
        for file in tqdm(files, desc="loading shards", unit="shard", disable=len(files) < 2):
            with safe_open(str(file), framework="pt") as f:
                for raw in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    if not raw.startswith(prefix):
                        continue
                    resolved = _resolve(raw[len(prefix) :], cfg)
                    if resolved is None:
                        continue
                    name, where = resolved
                    if name.endswith("_shape") and name[: -len("shape")] + "packed" in targets:
                        _check_shape(targets[name[: -len("shape")] + "packed"], where, f.get_tensor(raw), raw)
                        continue
                    if quantize and name.endswith(("experts.gate_up_proj", "experts.down_proj")):
                        # Routed experts quantised as they are read, after rounding to `dtype`: the
                        # same bits as quantising the loaded model, never its full-precision experts.
                        base = name[: -len("_proj")]
                        packed, scale = quantize_int4(f.get_tensor(raw).to(dtype), scale_dtype)
                        for part, value in (("packed", packed), ("scale", scale)):
                            _copy_into(targets[f"{base}_{part}"], where, value, raw)
                            filled[f"{base}_{part}"].add(
                                None if where is None else (where[0], where[1].start)
                            )
                        continue
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
    if int4_kernel or (
        int4_kernel is None and dtype == torch.bfloat16 and torch.device(device).type == "cpu"
    ):
        from mm_model.lm.int4_experts import int4_experts

        for _, experts in int4_experts(model):
            experts.to_cpu_kernel_()
    return model


def _quantization(path: Path):
    """The validated INT4 scheme of `path/config.json`, or None (no file, or not quantized)."""
    from mm_model.lm.int4 import find_quantization_config

    if not (path / "config.json").exists():
        return None
    return find_quantization_config(read_json(path / "config.json", CheckpointError))


def _int4_scale_dtype(files: list[Path], prefix: str) -> torch.dtype:
    """The dtype of the first `weight_scale` in the checkpoint (read from the header, no data)."""
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key.startswith(prefix) and key.endswith(".weight_scale"):
                    name = f.get_slice(key).get_dtype()
                    dtypes = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
                    if name not in dtypes:
                        raise CheckpointError(
                            f"INT4 scale {key!r} has dtype {name}; expected BF16, F16 or F32"
                        )
                    return dtypes[name]
    raise CheckpointError(
        "config.json declares INT4 quantization but the checkpoint has no weight_scale tensors"
    )


def _check_shape(packed: Tensor, where: tuple[int, slice] | None, value: Tensor, key: str) -> None:
    """A `weight_shape` tensor must say (rows, inputs) of the matrix its `weight_packed` fills."""
    assert where is not None
    dest = packed[where[0], where[1]]
    expected = [dest.shape[0], dest.shape[1] * 8]
    if value.dtype.is_floating_point or value.tolist() != expected:
        raise CheckpointError(
            f"checkpoint tensor {key!r} is {value.tolist()}, expected {expected} from the config"
        )


def _copy_into(target: Tensor, where: tuple[int, slice] | None, value: Tensor, key: str) -> None:
    dest = target if where is None else target[where[0], where[1]]
    if tuple(dest.shape) != tuple(value.shape):
        raise CheckpointError(
            f"checkpoint tensor {key!r} has shape {tuple(value.shape)}, expected {tuple(dest.shape)}"
        )
    if not target.dtype.is_floating_point and value.dtype != target.dtype:
        # packed INT4 words: a silent cast would change the bits
        raise CheckpointError(f"checkpoint tensor {key!r} has dtype {value.dtype}, expected {target.dtype}")
    if key.endswith(".weight_scale") and value.dtype != target.dtype:
        raise CheckpointError(f"INT4 scale {key!r} has dtype {value.dtype}, the others {target.dtype}")
    dest.copy_(value)


def export_state_dict(model: DeepseekV3LM, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
    """(key, tensor) pairs in the released per-expert layout (what `load_lm` reads), views, no copies."""
    cfg: LMConfig = model.config
    n = cfg.moe_intermediate_size
    for name, t in model.state_dict().items():
        if cfg.tie_word_embeddings and name == "lm_head.weight":
            continue
        q = re.match(r"^(model\.layers\.\d+\.mlp\.experts)\.(gate_up|down)_(packed|scale)$", name)
        if q:
            yield from _export_int4(model, prefix, q.group(1), q.group(2), q.group(3), t, n)
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


def _export_int4(
    model: DeepseekV3LM, prefix: str, module: str, matrix: str, kind: str, t: Tensor, n: int
) -> Iterator[tuple[str, Tensor]]:
    """The release's per-expert `weight_packed` (+ `weight_shape`, int32 as released) or `weight_scale`."""
    if getattr(model.get_submodule(module), "layout", "release") != "release":
        raise CheckpointError(
            f"{module} holds INT4 experts in the CPU kernel layout, which is not a checkpoint layout: "
            "load with int4_kernel=False (or in float32) to write a checkpoint"
        )
    halves = (
        (("gate_proj", slice(0, n)), ("up_proj", slice(n, 2 * n)))
        if matrix == "gate_up"
        else (("down_proj", slice(None)),)
    )
    for e in range(t.shape[0]):
        for proj, rows in halves:
            value = t[e, rows]
            yield f"{prefix}{module}.{e}.{proj}.weight_{kind}", value
            if kind == "packed":
                shape = torch.tensor([value.shape[0], value.shape[1] * 8], dtype=torch.int32)
                yield f"{prefix}{module}.{e}.{proj}.weight_shape", shape
