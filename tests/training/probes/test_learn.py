"""The probe learns an easy kind (a single shape's colour) on a tiny model: directly, and through the LM."""

from __future__ import annotations

import json

import pytest

from training.probes.run import main


def test_probe_learns_colour_directly_and_writes_its_curve(tmp_path):
    out = tmp_path / "curve.json"
    sizes = {"vision_hidden": 32, "vision_layers": 1, "lm_hidden": 64, "lm_layers": 2, "moe_inter": 32}
    main(["learn", "--kind", "basics/colour_single", "--steps", "60", "--batch", "8", "--lr", "3e-3",
          "--every", "30", "--heldout", "48", "--threads", "1", "--sizes", json.dumps(sizes), "--json", str(out)])  # fmt: skip
    curve = json.loads(out.read_text())["curve"]
    assert [c["step"] for c in curve] == [0, 30, 60]
    assert curve[-1]["heldout_accuracy"] >= 0.6  # six colours: chance is 1/6
    assert curve[-1]["heldout_accuracy"] > curve[0]["heldout_accuracy"]


def test_probe_through_the_lm_learns_colour_from_the_answer_tokens(tmp_path):
    sizes = {"vision_hidden": 32, "vision_layers": 1, "lm_hidden": 64, "lm_layers": 2, "moe_inter": 32}
    # One seed is one trajectory, and where this small model leaves chance is a matter of rounding: on
    # fp32 (a CPU without native bf16) seed 0 was at 0.69 after 180 steps with SDPA's unfused kernel
    # and at 0.25 with the fused one (same gradients to 1e-6), seeds 1 and 2 at 0.85 and 0.77 with the
    # fused one. So two seeds, judged on their mean.
    finals = []
    for seed in (0, 1):
        out = tmp_path / f"curve{seed}.json"
        main(["learn", "--kind", "basics/colour_single", "--lm", "--steps", "180", "--batch", "8", "--lr", "3e-3",
              "--every", "90", "--heldout", "48", "--threads", "1", "--seed", str(seed), "--sizes", json.dumps(sizes),
              "--json", str(out)])  # fmt: skip
        curve = json.loads(out.read_text())["curve"]
        assert [c["step"] for c in curve] == [0, 90, 180]
        assert curve[0]["heldout_accuracy"] < 0.2  # a random LM writes no colour word
        finals.append(curve[-1]["heldout_accuracy"])
    assert sum(finals) / len(finals) >= 0.35, finals  # chance is 1/6


def test_probe_rejects_a_kind_the_direct_mode_cannot_read(capsys):
    with pytest.raises(SystemExit):
        main(["learn", "--kind", "image/colour_of"])  # the answer depends on the question
    assert "--kind image/colour_of: direct mode takes one of" in capsys.readouterr().err
