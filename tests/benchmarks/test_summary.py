"""Summary numbers from hand-made records: accuracy overall, per bucket, per task; throughput; plots."""

from __future__ import annotations

import pytest

from benchmarks.video_suites.summary import format_table, plot, summarize


def rec(i, bucket, task, correct, prediction="A", duration=10.0, error=None, vision=100, completion=5,
        ttft=0.5, total=1.0, frames=8, decode=0.2):  # fmt: skip
    return {"id": str(i), "duration_bucket": bucket, "task_type": task, "correct": correct, "prediction": prediction,
            "duration_s": duration, "error": error, "usage": {"vision_tokens": vision, "completion_tokens": completion},
            "timings": {"ttft_s": ttft, "total_s": total, "frames": frames, "decode_s": decode}}  # fmt: skip


RECORDS = [
    rec(0, "short", "count", True, duration=5),
    rec(1, "short", "count", False, prediction=None, duration=5),  # unparsed: wrong, not answered
    rec(2, "long", "count", True, duration=100, total=3.0, ttft=1.5),
    rec(3, "long", "order", True, duration=100, total=3.0, ttft=1.5),
    rec(4, "long", "order", False, error="VideoDecodeError: bad"),  # excluded
]


def test_accuracy_breakdowns():
    s = summarize(RECORDS, {"suite": "x"})
    assert s["suite"] == "x" and s["errors"] == 1 and s["unparsed"] == 1
    assert s["overall"] == {"n": 4, "correct": 3, "accuracy": 0.75, "answered": 3, "accuracy_answered": 1.0}
    assert list(s["by_duration_bucket"]) == ["short", "long"]  # ordered by mean duration
    assert s["by_duration_bucket"]["short"]["accuracy"] == 0.5
    assert s["by_duration_bucket"]["long"]["accuracy"] == 1.0
    assert s["by_task_type"]["count"]["accuracy"] == pytest.approx(2 / 3)
    assert s["macro_task_accuracy"] == pytest.approx((2 / 3 + 1) / 2)


def test_throughput():
    tp = summarize(RECORDS)["throughput"]
    assert tp["decode_frames_per_s"] == pytest.approx(32 / 0.8)
    assert tp["vision_tokens_per_s"] == pytest.approx(400 / 4.0)  # 4 x 100 tokens over 0.5+0.5+1.5+1.5 s
    assert tp["ttft_s"] == pytest.approx(1.0)
    assert tp["answer_tokens_per_s"] == pytest.approx(16 / 4.0)  # 4 x (5-1) tokens over 0.5+0.5+1.5+1.5 s
    assert tp["seconds_per_sample"] == pytest.approx(2.0)


def test_missing_timings_give_none():
    s = summarize([{"id": "a", "correct": True, "prediction": "A", "usage": {}, "timings": {"total_s": 1.0}}])
    assert s["throughput"]["decode_frames_per_s"] is None and s["throughput"]["ttft_s"] is None
    assert "decode - frames/s" in format_table(s)


def test_table_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    s = summarize(RECORDS, {"suite": "x", "chance": 0.25})
    table = format_table(s)
    assert "overall: 75.0% (3/4)" in table and "short" in table and "order" in table
    paths = plot(s, RECORDS, tmp_path)
    assert [p.name for p in paths] == ["accuracy_by_bucket.png", "seconds_vs_duration.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
