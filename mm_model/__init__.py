"""mm_model: native multimodal models of the Kimi K2.5 kind (MoonViT-3D + DeepSeek-V3-style MoE LM).

import mm_model
model = mm_model.load()                     # the bundled model, a checkpoint directory, or an endpoint URL
model.chat([{"role": "user", "content": [{"type": "image", "image": "shot.png"},
                                         {"type": "text", "text": "What is highlighted?"}]}])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vision.errors import ImageError, InputError, VideoError

if TYPE_CHECKING:
    from mm_model.api import ChatResult, Model, load
    from mm_model.remote import RemoteModel

__all__ = ["ChatResult", "ImageError", "InputError", "Model", "RemoteModel", "VideoError", "load"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The API pulls in torch and the model code: import it on first use, so `mm_model.InputError`
    # stays cheap for code that only needs the error types.
    if name in ("load", "Model", "ChatResult"):
        from mm_model import api

        return getattr(api, name)
    if name == "RemoteModel":
        from mm_model.remote import RemoteModel

        return RemoteModel
    raise AttributeError(f"module 'mm_model' has no attribute {name!r}")
