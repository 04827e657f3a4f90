"""Does thinking follow its trace: the tally, and a run on the bundled model."""

from __future__ import annotations

import json

from training.evaluate import TRACE_TASKS
from training.probes.run import main
from training.probes.traces import tally


def test_tally_splits_answers_by_whether_the_trace_was_right():
    rows = [
        {"kind": "a", "trace_right": True, "answer_right": True},
        {"kind": "a", "trace_right": True, "answer_right": False},  # did not follow a right trace
        {"kind": "a", "trace_right": False, "answer_right": True},  # right regardless of the trace
        {"kind": "b", "trace_right": False, "answer_right": False},
    ]
    assert tally(rows) == {
        "a": {"n": 3, "trace_right": 2, "answer_right": 2, "answer_right_given_trace_right": 1,
              "answer_right_given_trace_wrong": 1},
        "b": {"n": 1, "trace_right": 0, "answer_right": 0, "answer_right_given_trace_right": 0,
              "answer_right_given_trace_wrong": 0},
    }  # fmt: skip


def test_a_run_covers_every_traced_kind(tmp_path):
    out = tmp_path / "traces.json"
    main(["traces", "--n", "2", "--json", str(out)])
    got = json.loads(out.read_text())
    assert list(got["kinds"]) == [f"{f}/{t}" for f, t in TRACE_TASKS]
    for k in got["kinds"].values():
        assert (
            k["n"] == 2
            and k["answer_right"] == k["answer_right_given_trace_right"] + k["answer_right_given_trace_wrong"]
        )
