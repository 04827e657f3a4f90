"""Weight bytes: of a checkpoint directory (from the safetensors headers, no tensor read), of the
released Kimi K2.5 (computed from its config), and of a loaded module (what is resident)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from safetensors import safe_open
from torch import nn

from mm_model.config import ModelConfig
from mm_model.lm.int4 import GROUP_SIZE
from mm_model.lm.loading import checkpoint_files

DTYPE_BYTES = {
    "BF16": 2,
    "F16": 2,
    "F32": 4,
    "F64": 8,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
INT4_SUFFIX = re.compile(r"\.weight_(packed|scale|shape)$")


@dataclass(frozen=True)
class Footprint:
    """Bytes by kind. `int4_*`: the routed experts (packed words, scales); `other`: everything else."""

    int4_tensors: int
    int4_packed_bytes: int
    int4_scale_bytes: int
    other_tensors: int
    other_bytes: int
    other_elements: int
    int4_names: tuple[str, ...] = ()  # the INT4 keys with layer and expert numbers as N

    @property
    def total_bytes(self) -> int:
        return self.int4_packed_bytes + self.int4_scale_bytes + self.other_bytes

    def resident_bytes(self, other_element_bytes: int = 2, cpu_kernel: bool = False) -> int:
        """Bytes in memory when loaded with the non-INT4 tensors at `other_element_bytes` each (2:
        bf16); the CPU kernel layout holds a zero beside each scale (same bytes again)."""
        scales = self.int4_scale_bytes * (2 if cpu_kernel else 1)
        return self.int4_packed_bytes + scales + self.other_elements * other_element_bytes


def checkpoint_footprint(path: str | Path) -> Footprint:
    """Tensor bytes of a checkpoint as stored, split into INT4 expert tensors and the rest."""
    counts = {"int4": 0, "packed": 0, "scale": 0, "other": 0, "other_bytes": 0, "elements": 0}
    names: set[str] = set()
    for file in checkpoint_files(Path(path)):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                s = f.get_slice(key)
                elements = 1
                for d in s.get_shape():
                    elements *= d
                n = DTYPE_BYTES.get(s.get_dtype(), 4) * elements
                m = INT4_SUFFIX.search(key)
                if m:
                    counts["int4"] += 1
                    names.add(re.sub(r"\.\d+\.", ".N.", INT4_SUFFIX.sub(".weight_*", key)))
                    counts["scale" if m.group(1) == "scale" else "packed"] += n
                else:
                    counts["other"] += 1
                    counts["other_bytes"] += n
                    counts["elements"] += elements
    c = counts
    f = Footprint(c["int4"], c["packed"], c["scale"], c["other"], c["other_bytes"], c["elements"])
    return replace(f, int4_names=tuple(sorted(names)))


def release_footprint(cfg: ModelConfig) -> Footprint:
    """The released INT4 checkpoint's weight bytes, from the config: routed experts at 4 bits with a
    bf16 scale per 32 weights (weight_shape: 2 int32 each), everything else bf16 except the fp32
    router correction biases."""
    from mm_model.lm.model import count_parameters
    from vision.model import MoonViT3d

    t = cfg.text
    n_moe = sum(t.is_moe_layer(i) for i in range(t.num_hidden_layers))
    routed = n_moe * t.n_routed_experts * 3 * t.moe_intermediate_size * t.hidden_size
    matrices = n_moe * t.n_routed_experts * 3
    lm_total, _ = count_parameters(t)
    vision = sum(p.numel() for p in MoonViT3d.build(cfg.vision, device="meta").parameters())
    other = lm_total - routed + vision
    biases = n_moe * t.n_routed_experts
    return Footprint(
        int4_tensors=3 * matrices,
        int4_packed_bytes=routed // 2 + matrices * 2 * 4,
        int4_scale_bytes=routed // GROUP_SIZE * 2,
        other_tensors=0,
        other_bytes=other * 2 + biases * 4,
        other_elements=other + 2 * biases,  # fp32 biases: two bf16-sized elements each
        int4_names=tuple(
            f"language_model.model.layers.N.mlp.experts.N.{p}_proj.weight_*" for p in ("down", "gate", "up")
        ),
    )


def resident_bytes(module: nn.Module) -> int:
    """Bytes of the distinct tensors a module holds (parameters and buffers; tied ones once)."""
    seen: dict[int, int] = {}
    for t in [*module.parameters(), *module.buffers()]:
        seen[t.data_ptr()] = max(seen.get(t.data_ptr(), 0), t.numel() * t.element_size())
    return sum(seen.values())


def gib(n: int) -> str:
    """Bytes for people: GiB (and GB, as disk sizes are quoted), MiB below one GiB."""
    if n < 2**30:
        return f"{n / 2**20:,.1f} MiB"
    return f"{n / 2**30:,.1f} GiB ({n / 1e9:,.1f} GB)"
