"""Image loading, mode conversion, bad files, and `navit_resize` / image-processor parity."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mm_model import InputError
from vision.packing import patchify
from vision.preprocess import image_pixels, load_image, navit_resize, num_tokens, to_rgb


@pytest.mark.parametrize(
    ("name", "hw", "resized", "padded"),
    [
        # Hand-computed with the reference rule (research/moonvit3d.md §1.2).
        ("small_no_upscale", (10, 10), (10, 10), (28, 28)),
        ("one_pixel", (1, 1), (1, 1), (28, 28)),
        ("square_224", (224, 224), (224, 224), (224, 224)),
        ("landscape_1000x700", (700, 1000), (700, 1000), (700, 1008)),
        ("over_budget_4000x3000", (3000, 4000), (1554, 2073), (1568, 2100)),
        ("full_hd_under_budget", (1080, 1920), (1080, 1920), (1092, 1932)),
        ("per_side_cap_tall", (8000, 100), (7168, 89), (7168, 112)),
    ],
)
def test_navit_resize_table(name, hw, resized, padded):
    plan = navit_resize(*hw)
    assert plan.resized == resized, name
    assert plan.padded == padded, name
    assert plan.padded[0] % 28 == 0 and plan.padded[1] % 28 == 0


def test_num_tokens_examples():
    assert num_tokens(224, 224) == 64
    assert num_tokens(700, 1000) == 25 * 36
    # Video frames use the 4096-patch budget: 1280x720 -> grid 50x86 -> 1075 tokens (§4.2).
    assert num_tokens(720, 1280, video=True) == 1075


@pytest.mark.parity
@settings(max_examples=300, deadline=None)
@given(
    h=st.integers(1, 20000),
    w=st.integers(1, 20000),
    budget=st.sampled_from([16384, 4096, 1024, 64]),
    side=st.sampled_from([512, 64]),
)
def test_navit_resize_matches_reference(h, w, budget, side):
    ref = pytest.importorskip("transformers.models.kimi_k25.image_processing_kimi_k25")
    expected = ref.navit_resize(h, w, 14, 2, budget, side)
    assert tuple(navit_resize(h, w, 14, 2, budget, side)) == expected


def _smooth_image(h: int, w: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (max(1, h // 16), max(1, w // 16), 3), dtype=np.uint8)
    return Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)


@pytest.mark.parity
@pytest.mark.parametrize(
    "hw",
    [
        (1, 1),
        (13, 700),
        (300, 10000),
        (10000, 300),
        (720, 1280),
        (1280, 720),
        (1200, 900),
        (3000, 4000),
        (57, 91),
    ],
    ids=lambda hw: f"{hw[0]}x{hw[1]}",
)
def test_image_processor_parity(hw):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torchvision")
    image = _smooth_image(*hw, seed=hw[0] * 7 + hw[1])
    ref = transformers.Kimi_K25ImageProcessor()(images=[image], return_tensors="pt")
    ours, grid = patchify(image_pixels(image))
    assert [list(grid)] == ref["image_grid_thw"].tolist()
    diff = (ours - ref["pixel_values"]).abs()
    # We resize with PIL bicubic (Moonshot's pipeline), transformers with torchvision's antialiased
    # bicubic: on smooth content they agree to a couple of uint8 levels (1 level = 2/255 here).
    assert diff.max() <= 4 * 2 / 255 + 1e-6, diff.max()
    assert diff.mean() <= 0.002, diff.mean()


# ---------------------------------------------------------------- bad and unusual files


def _png_bytes(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims a size, followed by a tiny truncated IDAT (a bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def _case_truncated_png(tmp_path):
    data = _png_bytes(_smooth_image(64, 64, 1))
    path = tmp_path / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    return path


def _case_corrupt_jpeg(tmp_path):
    buf = io.BytesIO()
    _smooth_image(64, 64, 2).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    data[200:400] = b"\xff" * 200  # garbage in the entropy-coded data and markers
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(bytes(data[:300]))
    return path


def _case_zero_bytes(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    return path


def _case_bomb(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(30000, 30000))
    return path


def _case_over_our_limit(tmp_path):
    # 12000 x 12000 = 144M pixels: under PIL's own hard limit, over ours.
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(12000, 12000))
    return path


def _case_missing(tmp_path):
    return tmp_path / "does_not_exist.png"


def _case_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is text, not a picture\n" * 10)
    return path


@pytest.mark.parametrize(
    "make",
    [
        _case_truncated_png,
        _case_corrupt_jpeg,
        _case_zero_bytes,
        _case_bomb,
        _case_over_our_limit,
        _case_missing,
        _case_not_an_image,
    ],
    ids=lambda f: f.__name__.removeprefix("_case_"),
)
def test_bad_image_raises_input_error_naming_file(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(InputError) as info:
        image_pixels(path)
    assert path.name in str(info.value)


def test_bad_inputs_of_wrong_kind():
    with pytest.raises(InputError, match="path, bytes or PIL"):
        load_image(12345)
    with pytest.raises(InputError, match="zero bytes"):
        load_image(b"")


def test_directory_is_refused(tmp_path):
    with pytest.raises(InputError, match="directory"):
        load_image(tmp_path)


def test_one_pixel_image_encodes():
    pixels = image_pixels(Image.new("RGB", (1, 1), (255, 0, 0)))
    assert pixels.shape == (1, 3, 28, 28)
    assert pixels[0, :, 0, 0].tolist() == [1.0, -1.0, -1.0]
    assert (pixels[0, :, 1:, :] == -1).all()  # zero padding normalizes to -1


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    arr = np.full((8, 8), 32768, dtype=np.uint16)  # mid grey in 16 bits
    path = tmp_path / "grey16.png"
    Image.fromarray(arr).save(path)
    image = load_image(path)
    assert Image.open(path).mode.startswith("I")
    assert image.mode == "RGB"
    assert abs(np.asarray(image)[0, 0, 0] - 128) <= 1  # clipping would give 255


def test_palette_png_with_transparency_goes_over_white(tmp_path):
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    image.putpixel((0, 0), 1)
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)
    rgb = np.asarray(load_image(path))
    assert rgb[1, 1].tolist() == [255, 255, 255]  # transparent black -> white background
    assert rgb[0, 0].tolist() == [200, 10, 10]


def test_rgba_and_la_composite_over_white():
    rgba = Image.new("RGBA", (2, 2), (0, 0, 255, 0))
    assert np.asarray(to_rgb(rgba))[0, 0].tolist() == [255, 255, 255]
    half = Image.new("LA", (2, 2), (0, 128))
    assert abs(int(np.asarray(to_rgb(half))[0, 0, 0]) - 127) <= 1


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path)  # pure red in CMYK
    r, g, b = np.asarray(load_image(path))[8, 8].tolist()
    assert r > 200 and g < 60 and b < 60


def test_binary_mode_image():
    one = Image.new("1", (3, 3), 1)
    assert np.asarray(to_rgb(one))[0, 0].tolist() == [255, 255, 255]


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    r, g, b = np.asarray(load_image(path))[4, 4].tolist()
    assert r > 200 and g < 50 and b < 50


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 10, 20))  # white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    loaded = load_image(path)
    assert loaded.size == (20, 40)
    top = np.asarray(loaded)[2, 10]
    assert top.mean() > 200  # the left band is now on top


def test_bytes_and_pil_inputs_agree(tmp_path):
    image = _smooth_image(50, 70, 3)
    data = _png_bytes(image)
    path = tmp_path / "x.png"
    path.write_bytes(data)
    a, b, c = image_pixels(path), image_pixels(data), image_pixels(image)
    assert (a == b).all() and (a == c).all()
