"""mm_model: native multimodal models of the Kimi K2.5 kind (MoonViT-3D + DeepSeek-V3-style MoE LM)."""

from __future__ import annotations

from vision.errors import ImageError, InputError, VideoError

__all__ = ["ImageError", "InputError", "VideoError"]
__version__ = "0.1.0"
