"""Configuration of the DeepSeek-V3 / Kimi K2 language backbone.

Field names follow the `deepseek_v3` / `kimi_k2` `config.json` so that `from_hf_dict` is mostly a
copy. Presets: `k25` (the released Kimi K2.5 text config) and `tiny` (tests).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from vision.errors import InputError


class ConfigError(InputError):
    """A language-model config field is missing, has the wrong type or an unsupported value."""


@dataclass(frozen=True)
class RopeScaling:
    """YaRN settings as written in `rope_scaling` / `rope_parameters`.

    Optional fields stay None when the config omits them: the reference treats a missing `mscale`
    differently from `mscale = 1` (see `rope.yarn_attention_factor`), so absence is kept.
    """

    factor: float
    original_max_position_embeddings: int
    beta_fast: float | None = None
    beta_slow: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    attention_factor: float | None = None
    truncate: bool = True
    rope_type: str = "yarn"

    def __post_init__(self) -> None:
        if self.rope_type != "yarn":
            raise ConfigError(
                f"rope_scaling.rope_type {self.rope_type!r} not supported (only 'yarn' or none)"
            )
        if not self.factor or self.factor < 1:
            raise ConfigError(f"rope_scaling.factor must be >= 1, got {self.factor}")
        if self.original_max_position_embeddings < 1:
            raise ConfigError(
                "rope_scaling.original_max_position_embeddings must be >= 1, "
                f"got {self.original_max_position_embeddings}"
            )


_ROPE_OPTIONAL = ("beta_fast", "beta_slow", "mscale", "mscale_all_dim", "attention_factor")


@dataclass(frozen=True)
class LMConfig:
    """DeepSeek-V3-style MoE decoder with MLA attention (Kimi K2 / K2.5 language model)."""

    vocab_size: int = 163840
    hidden_size: int = 7168
    intermediate_size: int = 18432  # dense SwiGLU of the first `first_k_dense_replace` layers
    moe_intermediate_size: int = 2048  # per routed (and per shared) expert
    num_hidden_layers: int = 61
    num_attention_heads: int = 64
    q_lora_rank: int | None = 1536  # None: a plain q_proj
    kv_lora_rank: int = 512
    qk_nope_head_dim: int = 128
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    n_routed_experts: int = 384
    num_experts_per_tok: int = 8
    n_shared_experts: int = 1
    n_group: int = 1
    topk_group: int = 1
    routed_scaling_factor: float = 2.827
    norm_topk_prob: bool = True
    first_k_dense_replace: int = 1
    scoring_func: str = "sigmoid"
    hidden_act: str = "silu"
    rms_norm_eps: float = 1e-5
    rope_theta: float = 50000.0
    rope_scaling: RopeScaling | None = None
    rope_interleave: bool = True
    max_position_embeddings: int = 262144
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    num_nextn_predict_layers: int = 0  # MTP modules in the checkpoint; we build none (like the reference)
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    extra: tuple[tuple[str, Any], ...] = field(
        default=(), compare=False, repr=False
    )  # unknown keys, round-tripped

    def __post_init__(self) -> None:
        if isinstance(self.rope_scaling, dict):
            object.__setattr__(self, "rope_scaling", RopeScaling(**self.rope_scaling))
        if isinstance(self.eos_token_id, list):
            object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))
        positive = ("vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size",
                    "num_hidden_layers", "num_attention_heads", "kv_lora_rank", "qk_nope_head_dim",
                    "qk_rope_head_dim", "v_head_dim", "n_routed_experts", "num_experts_per_tok",
                    "n_group", "topk_group", "max_position_embeddings")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"LMConfig.{name} must be a positive int, got {value!r}")
        if self.q_lora_rank is not None and self.q_lora_rank < 1:
            raise ConfigError(f"LMConfig.q_lora_rank must be None or >= 1, got {self.q_lora_rank}")
        if self.n_shared_experts < 0:
            raise ConfigError(f"LMConfig.n_shared_experts must be >= 0, got {self.n_shared_experts}")
        if self.qk_rope_head_dim % 2:
            raise ConfigError(f"LMConfig.qk_rope_head_dim {self.qk_rope_head_dim} must be even (rope pairs)")
        if not 0 <= self.first_k_dense_replace <= self.num_hidden_layers:
            raise ConfigError(
                f"LMConfig.first_k_dense_replace {self.first_k_dense_replace} not in [0, num_hidden_layers "
                f"{self.num_hidden_layers}]"
            )
        if self.n_routed_experts % self.n_group:
            raise ConfigError(
                f"LMConfig.n_routed_experts {self.n_routed_experts} not divisible by n_group {self.n_group}"
            )
        if self.n_group > 1 and self.n_routed_experts // self.n_group < 2:
            # The group score is the sum of each group's top-2 experts (the reference crashes here).
            raise ConfigError(f"LMConfig.n_group {self.n_group} leaves fewer than 2 experts per group")
        if self.topk_group > self.n_group:
            raise ConfigError(f"LMConfig.topk_group {self.topk_group} > n_group {self.n_group}")
        selectable = self.topk_group * (self.n_routed_experts // self.n_group)
        if self.num_experts_per_tok > selectable:
            raise ConfigError(
                f"LMConfig.num_experts_per_tok {self.num_experts_per_tok} > the {selectable} experts "
                f"in topk_group {self.topk_group} groups"
            )
        if self.scoring_func != "sigmoid":
            raise ConfigError(f"LMConfig.scoring_func {self.scoring_func!r} not supported (only 'sigmoid')")
        if self.hidden_act != "silu":
            raise ConfigError(f"LMConfig.hidden_act {self.hidden_act!r} not supported (only 'silu')")
        if not self.rope_theta > 0:
            raise ConfigError(f"LMConfig.rope_theta must be > 0, got {self.rope_theta}")
        if not self.rms_norm_eps > 0:
            raise ConfigError(f"LMConfig.rms_norm_eps must be > 0, got {self.rms_norm_eps}")

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def latent_dim(self) -> int:
        """Values cached per token per layer: compressed kv + the shared rope key."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    def is_moe_layer(self, layer_idx: int) -> bool:
        return layer_idx >= self.first_k_dense_replace

    # ---- presets -------------------------------------------------------------------------------
    @classmethod
    def k25(cls, **overrides: Any) -> LMConfig:
        """The released Kimi K2.5 text config (about 1.03T parameters, 32B activated)."""
        base: dict[str, Any] = dict(
            rope_scaling=RopeScaling(factor=64.0, original_max_position_embeddings=4096, beta_fast=32.0,
                                     beta_slow=1.0, mscale=1.0, mscale_all_dim=1.0),
            bos_token_id=163584, eos_token_id=163585, pad_token_id=163839,
        )  # fmt: skip
        return cls(**{**base, **overrides})

    @classmethod
    def tiny(cls, **overrides: Any) -> LMConfig:
        """A ~0.2M-parameter model with every feature on (q lora, groups, YaRN, dense + MoE layers)."""
        base: dict[str, Any] = dict(
            vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
            num_hidden_layers=3, num_attention_heads=4, q_lora_rank=32, kv_lora_rank=16,
            qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8,
            num_experts_per_tok=2, n_group=2, topk_group=1, routed_scaling_factor=2.5,
            first_k_dense_replace=1, rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=256,
            rope_scaling=RopeScaling(factor=4.0, original_max_position_embeddings=64, beta_fast=32.0,
                                     beta_slow=1.0, mscale=1.0, mscale_all_dim=1.0),
            bos_token_id=1, eos_token_id=2, pad_token_id=0,
        )  # fmt: skip
        return cls(**{**base, **overrides})

    def replace(self, **changes: Any) -> LMConfig:
        return replace(self, **changes)

    # ---- config.json ---------------------------------------------------------------------------
    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> LMConfig:
        """Read a `deepseek_v3` / `kimi_k2` config.json dict (`rope_scaling` or `rope_parameters`)."""
        if not isinstance(d, dict):
            raise ConfigError(f"LM config must be a dict, got {type(d).__name__}")
        d = dict(d)
        known = {f.name for f in fields(cls)} - {"rope_scaling", "extra", "rope_theta"}
        kwargs: dict[str, Any] = {k: d.pop(k) for k in list(d) if k in known}
        rope = d.pop("rope_parameters", None) or d.pop("rope_scaling", None) or {}
        d.pop("rope_scaling", None)
        if not isinstance(rope, dict):
            raise ConfigError(f"rope_scaling / rope_parameters must be a dict, got {type(rope).__name__}")
        rope = dict(rope)
        top_theta = d.pop("rope_theta", None)
        theta = rope.pop("rope_theta", top_theta if top_theta is not None else 10000.0)
        kwargs["rope_theta"] = float(theta)
        rope_type = rope.pop("rope_type", rope.pop("type", "default"))
        rope.pop("type", None)
        if rope_type == "yarn":
            if rope.get("factor") is None:
                raise ConfigError("rope_scaling.factor is required for yarn")
            # As the reference: a top-level original_max_position_embeddings wins, then the dict's, then
            # max_position_embeddings.
            orig = d.pop("original_max_position_embeddings", None) or rope.get(
                "original_max_position_embeddings"
            )
            orig = orig or kwargs.get("max_position_embeddings", cls.max_position_embeddings)
            kwargs["rope_scaling"] = RopeScaling(
                factor=float(rope["factor"]),
                original_max_position_embeddings=int(orig),
                truncate=bool(rope.get("truncate", True)),
                **{k: (None if rope.get(k) is None else float(rope[k])) for k in _ROPE_OPTIONAL},
            )
        elif rope_type != "default":
            raise ConfigError(f"rope type {rope_type!r} not supported (only 'default' or 'yarn')")
        if kwargs.get("q_lora_rank") == 0:
            kwargs["q_lora_rank"] = None
        moe_freq = d.get("moe_layer_freq", 1)
        if moe_freq != 1:
            raise ConfigError(f"moe_layer_freq {moe_freq} not supported (only 1)")
        topk_method = d.get("topk_method", "noaux_tc")
        if topk_method not in ("noaux_tc", None):
            raise ConfigError(f"topk_method {topk_method!r} not supported (only 'noaux_tc')")
        # Derived or reference-only keys that need no field; everything else is kept for round-trip.
        for k in ("qk_head_dim", "head_dim", "num_key_value_heads", "architectures", "model_type",
                  "transformers_version", "dtype", "torch_dtype", "auto_map"):  # fmt: skip
            d.pop(k, None)
        try:
            return cls(**kwargs, extra=tuple(sorted(d.items())))
        except TypeError as e:  # e.g. a list where an int belongs
            raise ConfigError(f"bad LM config value: {e}") from e

    def to_hf_dict(self) -> dict[str, Any]:
        """A `deepseek_v3` config.json dict, readable by `transformers.DeepseekV3Config`."""
        d = {k: v for k, v in asdict(self).items() if k not in ("rope_scaling", "extra")}
        d.update(dict(self.extra))
        d["num_key_value_heads"] = self.num_attention_heads
        d["model_type"] = "deepseek_v3"
        d["architectures"] = ["DeepseekV3ForCausalLM"]
        if isinstance(self.eos_token_id, tuple):
            d["eos_token_id"] = list(self.eos_token_id)
        rope: dict[str, Any] = {"rope_type": "default", "rope_theta": self.rope_theta}
        if self.rope_scaling is not None:
            rs = self.rope_scaling
            rope = {"rope_type": "yarn", "rope_theta": self.rope_theta, "factor": rs.factor,
                    "original_max_position_embeddings": rs.original_max_position_embeddings}  # fmt: skip
            rope.update({k: getattr(rs, k) for k in _ROPE_OPTIONAL if getattr(rs, k) is not None})
            if not rs.truncate:
                rope["truncate"] = False
        d["rope_parameters"] = rope
        return d
