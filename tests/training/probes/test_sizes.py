"""Accuracy by image size in tokens: the grouping, and a run on the bundled model."""

from __future__ import annotations

import json

from training.probes.run import main
from training.probes.sizes import bucket


def test_bucket_groups_by_split_and_token_range_with_the_mean_numeric_error():
    rows = [
        {"split": "seen", "tokens": 9, "correct": True, "error": 0},
        {"split": "seen", "tokens": 16, "correct": False, "error": -2},
        {"split": "seen", "tokens": 30, "correct": False, "error": None},  # not a number
        {"split": "unseen", "tokens": 70, "correct": True, "error": None},
    ]
    got = bucket(rows, edges=(0, 16, 36, 100))
    assert got == [
        {"split": "seen", "tokens": [0, 16], "n": 2, "accuracy": 0.5, "mean_error": -1.0},
        {"split": "seen", "tokens": [16, 36], "n": 1, "accuracy": 0.0, "mean_error": None},
        {"split": "unseen", "tokens": [36, 100], "n": 1, "accuracy": 1.0, "mean_error": None},
    ]


def test_the_unseen_images_are_larger_than_the_trained_ones(tmp_path):
    out = tmp_path / "curve.json"
    main(["sizes", "--task", "image/count_all", "--n", "8", "--json", str(out)])
    got = json.loads(out.read_text())["by_tokens"]
    assert sum(r["n"] for r in got) == 16 and {r["split"] for r in got} == {"seen", "unseen"}
    seen_max = max(r["tokens"][1] for r in got if r["split"] == "seen")
    assert seen_max <= 36 < max(r["tokens"][1] for r in got if r["split"] == "unseen")
    assert all(r["mean_error"] is not None for r in got)  # a count answers with a number
