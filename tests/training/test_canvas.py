"""Canvas twins: larger seen canvases whose shared cells hold exactly the picture's pixels."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from training import canvas
from training.generators import images, sample, screenshots


@pytest.mark.parametrize("family", ["image", "basics", "screenshot"])
def test_twins_are_larger_seen_sizes_with_whole_cell_offsets(family):
    (lo_w, hi_w), (lo_h, hi_h), aspect = canvas.SEEN[family]
    made = 0
    for i in range(40):
        rng = random.Random(i)
        w, h = rng.randint(lo_w, hi_w), rng.randint(lo_h, hi_h)
        box = canvas.twin_box(rng, (w, h), family)
        if box is None:
            continue
        made += 1
        left, top, right, bottom = box
        big_w, big_h = w + left + right, h + top + bottom
        assert min(box) >= 0 and max(big_w - w, big_h - h) >= 28
        assert big_w <= hi_w and big_h <= hi_h and max(big_w, big_h) <= aspect * min(big_w, big_h)
        assert left % 28 == 0 and top % 28 == 0
        if family == "screenshot":
            assert top == 0  # the title bar stays on top
    assert made >= 20


@pytest.mark.parametrize("family", ["image", "screenshot"])
def test_largest_twins_fill_the_largest_seen_canvas(family):
    (lo_w, hi_w), (lo_h, hi_h), _ = canvas.SEEN[family]
    for i in range(20):
        rng = random.Random(i)
        w, h = rng.randint(lo_w, hi_w - 28), rng.randint(lo_h, hi_h - 28)
        left, top, right, bottom = canvas.twin_box(rng, (w, h), family, largest=True)
        assert (w + left + right, h + top + bottom) == (hi_w, hi_h)
        assert left % 28 == 0 and top % 28 == 0


def test_no_twin_for_a_picture_already_at_the_largest_seen_size_or_a_video():
    rng = random.Random(0)
    assert canvas.twin_box(rng, (images.SEEN_SIDE[1], images.SEEN_SIDE[1]), "image") is None
    assert canvas.twin_box(rng, (screenshots.SEEN_WIDTH[1], screenshots.SEEN_HEIGHT[1]), "screenshot") is None
    assert canvas.twin_box(rng, (100, 100), "video") is None


def test_shared_cells_index_the_same_pixels_in_picture_and_twin():
    rng = np.random.default_rng(0)
    w, h = 101, 90  # partial last cells: left out
    image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    box = (56, 28, 13, 40)
    twin = canvas.pad_edges(image, box)
    assert twin.size == (w + 56 + 13, h + 28 + 40)
    here, there = canvas.shared_cells((w, h), box)
    assert len(here) == (w // 28) * (h // 28) == len(there)

    def cell(img, index, cols):
        r, c = divmod(int(index), cols)
        return np.asarray(img)[r * 28 : (r + 1) * 28, c * 28 : (c + 1) * 28]

    for a, b in zip(here.tolist(), there.tolist()):
        np.testing.assert_array_equal(cell(image, a, -(-w // 28)), cell(twin, b, -(-twin.size[0] // 28)))
    # edge padding repeats the border: a uniform background stays uniform
    flat = Image.new("RGB", (90, 90), (230, 240, 250))
    assert (np.asarray(canvas.pad_edges(flat, box)) == (230, 240, 250)).all()


def test_picture_is_the_image_of_a_single_image_question_only():
    assert canvas.picture(sample("train", 0, family="image").messages) is not None
    assert canvas.picture(sample("train", 0, family="video").messages) is None


def test_background_patches_are_an_images_flat_canvas_and_none_in_video():
    import mm_model  # the bundled processor: patches as the trainer packs them

    processor = mm_model.load("tiny", dtype=torch.float32, device="cpu").processor
    for i in range(3):
        image, _ = images.scene(random.Random(i), 140, 112, 4)
        item = processor.image_item(image)
        got = canvas.background_patches(item.patches, torch.tensor([item.grid]))
        _, h, w = item.grid
        pixels = np.asarray(image)[: h * 14, : w * 14].reshape(h, 14, w, 14, 3).transpose(0, 2, 1, 3, 4)
        want = (pixels.reshape(h * w, -1, 3) == pixels[0, 0, 0, 0]).all(-1).all(-1)
        assert 0 < want.sum() < h * w and np.array_equal(got.numpy(), want)
    # the same patches as one 4-frame chunk: no background
    chunk = item.patches.repeat(4, 1, 1, 1)
    assert not canvas.background_patches(chunk, torch.tensor([[4, h, w]])).any()
