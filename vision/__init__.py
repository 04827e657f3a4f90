"""MoonViT-3D: image preprocessing, NaViT patch packing, the vision tower and its projector."""

from vision.config import MediaConfig, VisionConfig
from vision.errors import ImageError, InputError
from vision.packing import PackedVision, pack, patchify
from vision.preprocess import image_pixels, load_image, navit_resize, num_tokens

__all__ = [
    "ImageError",
    "InputError",
    "MediaConfig",
    "PackedVision",
    "VisionConfig",
    "image_pixels",
    "load_image",
    "navit_resize",
    "num_tokens",
    "pack",
    "patchify",
]
