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
