"""Images in, normalized pixel tensors out: load, orient, convert to RGB, `navit_resize`, pad, normalize.

`navit_resize` reproduces the reference arithmetic (Moonshot `media_utils.navit_resize_image`,
`transformers` `kimi_k25.image_processing.navit_resize`): never upscale, shrink to the patch budget
and the per-side cap, then pad bottom/right with zeros to a multiple of patch * merge.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from vision.config import MediaConfig
from vision.errors import ImageError, check_file_or_bytes, describe_source

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image


class ResizePlan(NamedTuple):
    """Unpacks like the reference: `(new_h, new_w), (padded_h, padded_w) = navit_resize(...)`."""

    resized: tuple[int, int]
    padded: tuple[int, int]


def navit_resize(
    height: int,
    width: int,
    patch_size: int = 14,
    merge_kernel_size: int = 2,
    max_patches: int = 16384,
    max_size_per_side: int = 512,
) -> ResizePlan:
    """Target size for an image of (height, width) pixels, with the reference's semantics.

    Args:
        max_patches: patch budget (16384 for images, 4096 for each video frame in K2.5).
        max_size_per_side: cap on patches along either side.
    Returns:
        ((new_h, new_w), (padded_h, padded_w)); the padded sides are multiples of patch * merge.
    """
    if height < 1 or width < 1:
        raise ValueError(f"navit_resize: size must be positive, got {height}x{width}")
    patches = max(1, height // patch_size) * max(1, width // patch_size)
    scale = min(
        1.0,  # never upscale
        math.sqrt(max_patches / patches),
        max_size_per_side * patch_size / height,
        max_size_per_side * patch_size / width,
    )
    cap = max_size_per_side * patch_size
    # int() truncation, as the reference does, not rounding.
    new_h = min(max(1, int(height * scale)), cap)
    new_w = min(max(1, int(width * scale)), cap)
    factor = merge_kernel_size * patch_size
    return ResizePlan((new_h, new_w), (-(-new_h // factor) * factor, -(-new_w // factor) * factor))


def plan_for(height: int, width: int, cfg: MediaConfig, *, video: bool = False) -> ResizePlan:
    """`navit_resize` with the image or the per-video-frame budget of `cfg`."""
    return navit_resize(
        height,
        width,
        cfg.patch_size,
        cfg.merge_kernel_size,
        cfg.in_patch_limit_each_frame if video else cfg.in_patch_limit,
        cfg.patch_limit_on_one_side,
    )


def num_tokens(height: int, width: int, cfg: MediaConfig | None = None, *, video: bool = False) -> int:
    """LM tokens one image (or one video chunk) of this pixel size costs: (grid_h/2) * (grid_w/2)."""
    cfg = cfg or MediaConfig()
    ph, pw = plan_for(height, width, cfg, video=video).padded
    unit = cfg.patch_size * cfg.merge_kernel_size
    return (ph // unit) * (pw // unit)


def load_image(source: ImageSource, *, max_pixels: int = MediaConfig.max_image_pixels) -> Image.Image:
    """Open an image from a path, bytes or PIL image; EXIF-orient it and convert it to RGB.

    Animated images give their first frame. Raises `ImageError` (an `InputError`) naming the input
    for missing, unreadable, truncated or oversized (decompression bomb) files.
    """
    name = describe_source(source)
    if isinstance(source, Image.Image):
        image = source
    else:
        image = _open(source, name)
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image {name} has an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(
            f"image {name} is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (possible decompression bomb)"
        )
    try:
        if getattr(image, "is_animated", False):
            image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageError(f"image {name} could not be decoded ({type(exc).__name__}: {exc})") from exc


def _open(source: ImageSource, name: str) -> Image.Image:
    fp = check_file_or_bytes(source, "image", ImageError, name)
    if fp is None:
        raise ImageError(f"image input must be a path, bytes or PIL.Image, got {type(source).__name__}")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit decides; PIL's warning below its hard limit is noise here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image {name} is too large to decode safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"image {name} is not a recognised image format") from exc
    except OSError as exc:
        raise ImageError(f"image {name} could not be opened ({exc})") from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    Transparency is composited over white. Difference from reference: Moonshot's `_to_pil` does a
    plain `.convert("RGB")`, which turns transparent pixels black; for screenshots and logos white
    is what a viewer shows. High-bit-depth greyscale is scaled down rather than clipped at 255.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if mode == "F":
            top = max(float(arr.max(initial=0)), 1.0) if arr.max(initial=0) > 1 else 1.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def resize_and_pad(image: Image.Image, plan: ResizePlan) -> np.ndarray:
    """Bicubic resize to `plan.resized`, zero-pad bottom/right to `plan.padded`.

    Returns uint8 (padded_h, padded_w, 3). Zero padding becomes -1 after normalization, as in the
    reference; padded patches are real tokens that take part in attention and merging.
    """
    (new_h, new_w), (pad_h, pad_w) = plan
    if image.size != (new_w, new_h):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    arr = np.asarray(image, dtype=np.uint8)
    if (pad_h, pad_w) == (new_h, new_w):
        return arr
    out = np.zeros((pad_h, pad_w, 3), dtype=np.uint8)
    out[:new_h, :new_w] = arr
    return out


def normalize(pixels: np.ndarray | torch.Tensor, cfg: MediaConfig | None = None) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) with (x/255 - mean) / std, via a 256-entry table."""
    cfg = cfg or MediaConfig()
    # PIL's arrays are read-only, which torch warns about: copy only when not contiguous and writable
    u8 = torch.as_tensor(np.require(pixels, requirements="CW") if isinstance(pixels, np.ndarray) else pixels)
    if u8.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got {u8.dtype}")
    levels = torch.arange(256, dtype=torch.float32) / 255.0
    mean = torch.tensor(cfg.image_mean, dtype=torch.float32)
    std = torch.tensor(cfg.image_std, dtype=torch.float32)
    table = (levels[:, None] - mean) / std  # (256, 3): same fp32 arithmetic as the reference, once
    idx = u8.long()
    return torch.stack([table[:, c][idx[..., c]] for c in range(3)], dim=-3)


def image_pixels(source: ImageSource, cfg: MediaConfig | None = None) -> torch.Tensor:
    """One image, ready for `vision.packing.patchify`: float32 (1, 3, H, W), H and W multiples of 28."""
    cfg = cfg or MediaConfig()
    image = load_image(source, max_pixels=cfg.max_image_pixels)
    plan = plan_for(image.height, image.width, cfg)
    return normalize(resize_and_pad(image, plan), cfg).unsqueeze(0)
