"""The DeepSeek-V3 / Kimi K2 MoE language backbone: MLA with a latent cache, routed experts, YaRN."""

from __future__ import annotations

from mm_model.lm.cache import LatentCache
from mm_model.lm.config import ConfigError, LMConfig, RopeScaling
from mm_model.lm.loading import CheckpointError, export_state_dict, load_lm, read_config
from mm_model.lm.model import DeepseekV3LM, cast_model, count_parameters, preferred_dtype

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DeepseekV3LM",
    "LMConfig",
    "LatentCache",
    "RopeScaling",
    "cast_model",
    "count_parameters",
    "export_state_dict",
    "load_lm",
    "preferred_dtype",
    "read_config",
]
