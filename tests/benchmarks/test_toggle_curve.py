"""benchmarks/toggle_curve: the curriculum task source and answer matching."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.common import same_answer
from benchmarks.toggle_curve import curriculum_tasks
from training.evaluate import TRACE_TASKS


def _pixels(task) -> bytes:
    media = task.prompt[-1]["content"][0]
    frames = media.get("image") or media.get("video")
    return b"".join(np.asarray(f).tobytes() for f in (frames if isinstance(frames, list) else [frames]))


def test_curriculum_tasks_cover_the_trace_kinds_with_disjoint_calibration_and_evaluation():
    calib, evals = curriculum_tasks(2)
    kinds = [f"{f}/{t}" for f, t in TRACE_TASKS]
    assert [t.kind for t in calib] == [t.kind for t in evals] == [k for k in kinds for _ in range(2)]
    assert not {_pixels(t) for t in calib} & {_pixels(t) for t in evals}
    for t in calib + evals:
        assert t.prompt[-1]["role"] == "user" and t.answer


@pytest.mark.parametrize(
    "reply, answer, same",
    [("3", "3", True), (" Three. ", "three", True), ("red, blue", "Red,  blue.", True),
     ("4", "3", False), ("3 circles", "3", False), ("", "3", False)],
)  # fmt: skip
def test_same_answer_folds_case_space_and_final_stop(reply, answer, same):
    assert same_answer(reply, answer) is same


def _row(model, mode, accuracy, thinking, reduction=0.0, change=0.0):
    return {"model": model, "mode": mode, "accuracy": accuracy, "mean_thinking": thinking,
            "token_reduction": reduction, "acc_change_pts": change}  # fmt: skip


def test_targets_compare_each_model_and_the_last_against_the_first():
    from benchmarks.toggle_curve import targets_of

    rows = [_row("before", "none", 0.80, 40.0), _row("before", "auto", 0.70, 36.0, 0.10, -10.0),
            _row("before", "instant", 0.78, 0.0),
            _row("after", "none", 0.79, 28.0), _row("after", "auto", 0.79, 20.0, 0.29, 0.0),
            _row("after", "instant", 0.70, 0.0)]  # fmt: skip
    t = targets_of(rows)
    assert t["per_model"]["before"] == {"auto": False, "thinking_beats_instant": False}
    assert t["per_model"]["after"] == {"auto": True, "thinking_beats_instant": True}
    assert abs(t["after_vs_before"]["token_reduction"] - 0.3) < 1e-9
    assert abs(t["after_vs_before"]["acc_change_pts"] + 1.0) < 1e-9 and t["after_vs_before"]["met"]
    rows[3] = _row("after", "none", 0.77, 28.0)  # 3 points below: missed
    assert not targets_of(rows)["after_vs_before"]["met"]
    assert "after_vs_before" not in targets_of(rows[:3])
