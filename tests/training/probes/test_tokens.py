"""The per-token probes: a linear read-out finds what features carry and nothing they do not."""

from __future__ import annotations

import json
import math

import torch

from training.probes.run import main
from training.probes.tokens import classify, regress


def test_classify_reads_a_label_the_features_carry_and_not_one_they_do_not():
    g = torch.Generator().manual_seed(0)
    y, yt = torch.randint(0, 4, (300,), generator=g), torch.randint(0, 4, (100,), generator=g)
    noise = lambda n: torch.randn(n, 16, generator=g)  # noqa: E731
    carry = lambda labels: noise(len(labels)) + 3 * torch.nn.functional.one_hot(labels, 16).float()  # noqa: E731
    assert classify(carry(y), y, carry(yt), yt, 4, steps=200) > 0.9
    assert classify(noise(300), y, noise(100), yt, 4, steps=200) < 0.45  # chance 0.25


def test_regress_gives_r2_near_one_for_a_linear_target_and_near_zero_for_noise():
    g = torch.Generator().manual_seed(1)
    x, xt = torch.randn(200, 8, generator=g), torch.randn(100, 8, generator=g)
    w = torch.randn(8, 2, generator=g)
    assert min(regress(x, x @ w + 0.5, xt, xt @ w + 0.5)) > 0.999
    assert max(regress(x, torch.rand(200, 2, generator=g), xt, torch.rand(100, 2, generator=g))) < 0.2


def test_the_bundled_tokens_carry_each_shapes_colour(tmp_path):
    out = tmp_path / "probe.json"
    main(["tokens", "--train", "80", "--test", "30", "--json", str(out)])
    got = json.loads(out.read_text())
    assert got["objects"]["train"] >= 160 and got["objects"]["test"] >= 60  # 2..5 shapes a scene
    assert got["colour_accuracy"] >= 0.8  # six colours: chance 1/6
    assert 0 <= got["shape_accuracy"] <= 1
    assert all(math.isfinite(got[k]) and got[k] <= 1 for k in ("x_r2", "y_r2"))
    assert got["title_accuracy"] >= 0.8  # eight titles, drawn large
    assert 0 <= got["button_label_accuracy"] <= 1 and 0 <= got["colour_button_label_accuracy"] <= 1
