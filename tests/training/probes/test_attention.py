"""The attention probe: mean attention per head on the named objects, and what a head reads there."""

from __future__ import annotations

import json
import math

import torch

from training.probes.attention import head_mass, held_out_r2
from training.probes.run import main


def test_head_mass_averages_each_heads_attention_per_named_object():
    order = torch.tensor([0, 1, 0, 1])
    mass = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.25, 0.75]]).clamp(min=1e-9).log()  # (P, H)
    got = head_mass({"mass": mass, "order": order}, 2)
    assert got == [[0.5, 0.375], [0.5, 0.625]]  # [head][object]


def test_held_out_r2_finds_a_place_a_head_carries_and_not_one_it_does_not():
    g = torch.Generator().manual_seed(0)
    where = torch.rand(300, 2, generator=g)
    noise = torch.randn(300, 16, generator=g)
    carried = noise.clone()
    carried[:, :2] += 20 * where  # two of the head's channels hold (x, y), well above the noise
    assert held_out_r2(carried, where) > 0.9
    assert held_out_r2(noise, where) < 0.2


def test_the_bundled_model_looks_at_both_objects_of_a_left_right_question(tmp_path):
    out = tmp_path / "probe.json"
    main(["attention", "--n", "96", "--json", str(out)])
    got = json.loads(out.read_text())
    position = got["kinds"]["image/position"]
    assert position["objects"] == 2 and len(position["mass"]) == 4  # four LM layers
    head0, head1 = position["mass"][got["layer"]][:2]
    # the attention targets' heads: each on its own object, the other object barely
    assert head0[0] > 0.5 and head1[1] > 0.5 and head0[1] < 0.2 and head1[0] < 0.2
    assert all(math.isfinite(r) for r in position["read_r2"]) and min(position["read_r2"]) > 0.3
    # the seventh stage's: head 0 finds the button a question names by its label (stage 6: 0.43)
    assert got["kinds"]["screenshot/button_colour"]["mass"][got["layer"]][0][0] > 0.6
    count = got["kinds"]["image/count_all"]  # the count head's view: a share of attention, a fit
    assert len(count["count_mass"]) == 4 and all(0 <= m <= 1 for m in count["count_mass"])
    assert math.isfinite(count["count_r2"])
