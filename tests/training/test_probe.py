"""The direct-supervision probe learns an easy kind (a single shape's colour) on a tiny tower."""

from __future__ import annotations

import json

from training.probe import main


def test_probe_learns_colour_directly_and_writes_its_curve(tmp_path, monkeypatch):
    out = tmp_path / "curve.json"
    sizes = {"vision_hidden": 32, "vision_layers": 1, "lm_hidden": 64, "lm_layers": 2, "moe_inter": 32}
    monkeypatch.setattr("sys.argv", ["probe", "--kind", "basics/colour_single", "--steps", "60", "--batch", "8",
                                     "--lr", "3e-3", "--every", "30", "--heldout", "48", "--threads", "1",
                                     "--sizes", json.dumps(sizes), "--json", str(out)])  # fmt: skip
    main()
    curve = json.loads(out.read_text())["curve"]
    assert [c["step"] for c in curve] == [0, 30, 60]
    assert curve[-1]["heldout_accuracy"] >= 0.6  # six colours: chance is 1/6
    assert curve[-1]["heldout_accuracy"] > curve[0]["heldout_accuracy"]
