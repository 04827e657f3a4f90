"""Tokens and counts on a larger canvas: the layouts, and a run on the bundled model."""

from __future__ import annotations

import json
import random

import pytest
import torch

import mm_model
from training.generators import images
from training.probes.canvas import count, embed, layouts
from training.probes.run import main


def test_layouts_place_the_picture_on_whole_cells_inside_larger_canvases():
    for w, h in ((112, 140), (168, 112)):
        got = layouts(w, h, (28, 56))
        assert got["+28 px a side"] == (w + 56, h + 56, 28, 28)
        strip_w, strip_h, x, _ = got["same tokens, one row of cells high"]
        assert strip_h == h and strip_w % 28 == 0 and x % 28 == 0 and x + w <= strip_w
        # about as many tokens as the +56 canvas, in one picture-high strip
        assert abs(strip_w * h - (w + 112) * (h + 112)) <= 28 * h
        assert got["+56 a side, picture in the corner"][2:] == (0, 0)


def test_unpadded_tokens_match_themselves_and_padding_changes_them(tmp_path):
    out = tmp_path / "probe.json"
    main(["canvas", "--n", "2", "--pads", "56", "--json", str(out)])
    got = json.loads(out.read_text())["canvases"]
    assert got["unpadded"]["token_cos"] > 0.999  # the same picture, encoded afresh
    assert got["+56 px a side"]["token_cos"] < 0.99  # the tower's tokens depend on the canvas
    assert all(r["n"] == 2 and 0 <= r["count_accuracy"] <= 1 for r in got.values())
    # more canvas, more of the tower's attention on it
    assert 0 < got["unpadded"]["attention_on_canvas"] < got["+56 px a side"]["attention_on_canvas"] < 1
    # unpadded, putting the picture's own tokens back changes nothing
    assert got["unpadded"]["count_accuracy_picture_tokens_back"] == got["unpadded"]["count_accuracy"]


@pytest.fixture(scope="module")
def model():
    return mm_model.load("tiny", dtype=torch.float32, device="cpu")


def test_count_reads_the_tokens_it_is_given(model):
    """One scene's tokens under another's pixels: the answer follows the tokens."""
    one, _ = images.scene(random.Random(1), 112, 112, 1)
    five, _ = images.scene(random.Random(2), 112, 112, 5)
    assert count(model, one) != count(model, five)
    assert count(model, one, embed(model, five)[0]) == count(model, five)
    assert count(model, one, embed(model, one)[0]) == count(model, one)
