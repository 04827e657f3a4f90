"""Results JSONL: appended per sample, resumed by id, torn tails and changed settings handled."""

from __future__ import annotations

import json

import pytest

from benchmarks.video_suites.results import FingerprintMismatch, ResultsFile, read_records

FP = {"suite": "generic", "model": "m", "fps": 2.0}


def test_append_and_resume(tmp_path):
    path = tmp_path / "r.jsonl"
    rf = ResultsFile(path, FP)
    rf.append({"id": "a", "correct": True, "error": None})
    rf.append({"id": "b", "correct": False, "error": "VideoDecodeError: broken"})
    again = ResultsFile(path, FP)
    assert again.done == {"a"}  # the failed one is retried
    again.append({"id": "b", "correct": True, "error": None})
    header, records = read_records(path)
    assert header["fingerprint"] == FP and [r["id"] for r in records] == ["a", "b", "b"]
    assert ResultsFile(path, FP).done == {"a", "b"}
    assert {r["id"]: r["correct"] for r in ResultsFile(path, FP).records()} == {"a": True, "b": True}


def test_torn_last_line_is_ignored_and_fenced(tmp_path):
    path = tmp_path / "r.jsonl"
    ResultsFile(path, FP).append({"id": "a", "error": None})
    with path.open("a") as f:
        f.write('{"type": "sample", "id": "b", "err')  # killed mid-write
    rf = ResultsFile(path, FP)
    assert rf.done == {"a"}
    rf.append({"id": "b", "error": None})
    assert ResultsFile(path, FP).done == {"a", "b"}
    assert all(json.loads(line) for line in path.read_text().splitlines()[:2])


def test_other_settings_refuse_to_resume(tmp_path):
    path = tmp_path / "r.jsonl"
    ResultsFile(path, FP).append({"id": "a", "error": None})
    with pytest.raises(FingerprintMismatch, match="fps"):
        ResultsFile(path, {**FP, "fps": 1.0})
    assert ResultsFile(path, {**FP, "fps": 1.0}, restart=True).done == set()
