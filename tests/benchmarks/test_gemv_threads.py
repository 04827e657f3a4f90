"""benchmarks/gemv_threads on tiny shapes: one row per (threads, shape) with every product's rate."""

from __future__ import annotations

from benchmarks import gemv_threads


def test_rows_for_each_thread_count_and_shape(monkeypatch, tmp_path):
    monkeypatch.setattr(gemv_threads, "SHAPES", ((64, 32), (128, 64)))
    monkeypatch.setattr(gemv_threads, "POOL_BYTES", 1 << 16)
    monkeypatch.setattr("benchmarks.common.RESULTS", tmp_path)
    monkeypatch.setattr(gemv_threads, "memory_bandwidth", lambda: 10.0)
    out = gemv_threads.main(["--threads", "1,2", "--repeats", "1"])
    assert [(r["threads"], r["weight"]) for r in out["rows"]] == [(1, "64x32"), (1, "128x64"), (2, "64x32"),
                                                                 (2, "128x64")]  # fmt: skip
    for r in out["rows"]:
        assert r["F.linear GB/s"] > 0 and r["MKL packed GB/s"] > 0 and r["split bmm GB/s"] > 0
        assert r["split / F.linear"] == r["split bmm GB/s"] / r["F.linear GB/s"]
    assert list(tmp_path.glob("gemv_threads-*.json"))
