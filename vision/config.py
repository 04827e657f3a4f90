"""Configuration of the MoonViT-3D tower, its projector and the media preprocessing.

Presets: `k25` (the released Kimi K2.5 sizes) and `tiny` (tests). Field names follow the
`transformers` `Kimi_K25VisionConfig` where one exists; `from_hf` also reads the released
checkpoint's `vt_*` names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class VisionConfig:
    """MoonViT-3D tower + patch-merger projector."""

    patch_size: int = 14
    hidden_size: int = 1152
    num_hidden_layers: int = 27
    num_attention_heads: int = 16
    intermediate_size: int = 4304
    hidden_act: str = "gelu_pytorch_tanh"  # tower MLP; the projector uses exact GELU
    pos_emb_height: int = 64
    pos_emb_width: int = 64
    pos_emb_time: int = 4  # max frames per chunk, rows of the sin-cos time table
    merge_kernel_size: tuple[int, int] = (2, 2)
    rope_theta: float = 10000.0
    layer_norm_eps: float = 1e-5
    projector_ln_eps: float = 1e-5
    text_hidden_size: int = 7168  # projector output = LM hidden size

    def __post_init__(self) -> None:
        object.__setattr__(self, "merge_kernel_size", tuple(self.merge_kernel_size))
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"VisionConfig.hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.head_dim % 4:
            # 2D RoPE splits each head into (row, column) complex pairs: head_dim/4 frequencies per axis.
            raise ValueError(f"VisionConfig head_dim {self.head_dim} must be a multiple of 4 for 2D RoPE")
        if self.hidden_size % 2:
            raise ValueError(f"VisionConfig.hidden_size {self.hidden_size} must be even (sin-cos time table)")
        for name in (
            "patch_size",
            "num_hidden_layers",
            "intermediate_size",
            "pos_emb_height",
            "pos_emb_width",
            "pos_emb_time",
            "text_hidden_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"VisionConfig.{name} must be >= 1, got {getattr(self, name)}")
        if len(self.merge_kernel_size) != 2 or min(self.merge_kernel_size) < 1:
            raise ValueError(
                f"VisionConfig.merge_kernel_size must be two positive ints, got {self.merge_kernel_size}"
            )
        if self.hidden_act not in ("gelu_pytorch_tanh", "gelu"):
            raise ValueError(f"VisionConfig.hidden_act {self.hidden_act!r} not supported")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def merge_area(self) -> int:
        return self.merge_kernel_size[0] * self.merge_kernel_size[1]

    @classmethod
    def k25(cls, **overrides: Any) -> VisionConfig:
        """The released Kimi K2.5 tower (about 417M parameters) and projector into a 7168-wide LM."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> VisionConfig:
        """A few-thousand-parameter tower for tests: same structure, small sizes."""
        base = dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=96,
            pos_emb_height=8,
            pos_emb_width=8,
            text_hidden_size=48,
        )
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["merge_kernel_size"] = list(self.merge_kernel_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VisionConfig:
        """Read our own names, `transformers`' names, or the released checkpoint's `vt_*` names."""
        aliases = {
            "vt_hidden_size": "hidden_size",
            "vt_num_hidden_layers": "num_hidden_layers",
            "vt_num_attention_heads": "num_attention_heads",
            "vt_intermediate_size": "intermediate_size",
            "init_pos_emb_height": "pos_emb_height",
            "init_pos_emb_width": "pos_emb_width",
            "init_pos_emb_time": "pos_emb_time",
        }
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            name = aliases.get(key, key)
            if name in known:
                kwargs[name] = value
        rope = d.get("rope_parameters") or {}
        if "rope_theta" in rope:
            kwargs["rope_theta"] = rope["rope_theta"]
        return cls(**kwargs)


@dataclass(frozen=True)
class MediaConfig:
    """Preprocessing of images and video frames (the checkpoint's `media_proc_cfg`)."""

    patch_size: int = 14
    merge_kernel_size: int = 2
    in_patch_limit: int = 16384  # images
    patch_limit_on_one_side: int = 512
    in_patch_limit_each_frame: int = 4096  # video frames
    sample_fps: float = 2.0
    temporal_merge_kernel_size: int = 4  # frames per video chunk
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # Refuse images whose header claims more pixels than this before decoding (decompression bombs).
    max_image_pixels: int = 128_000_000
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in (
            "patch_size",
            "merge_kernel_size",
            "in_patch_limit",
            "patch_limit_on_one_side",
            "in_patch_limit_each_frame",
            "temporal_merge_kernel_size",
            "max_image_pixels",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"MediaConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.sample_fps <= 0:
            raise ValueError(f"MediaConfig.sample_fps must be > 0, got {self.sample_fps}")
        if any(s <= 0 for s in self.image_std):
            raise ValueError(f"MediaConfig.image_std must be positive, got {self.image_std}")

    @classmethod
    def k25(cls, **overrides: Any) -> MediaConfig:
        return cls(**overrides)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MediaConfig:
        """Read a `media_proc_cfg` dict (unknown keys are kept in `extra`; None means default)."""
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in d.items() if k in known and v is not None}
        for k in ("image_mean", "image_std"):
            if k in kwargs:
                kwargs[k] = tuple(kwargs[k])
        return cls(**kwargs, extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return {**self.extra, **d}
