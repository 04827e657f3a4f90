"""`mm-model bench video --protocol lmms-eval` end to end on each suite's lmms-eval layout.

A scripted backend gives the replies in `lmms_cases.BENCH`; lmms-eval 0.7.3's own process_results,
aggregate_results and doc_to_text on the same rows are in the oracle fixture (see `lmms_oracle` and
`test_lmms_eval_scoring` for how it is made and kept honest). The run must write samples_*.jsonl
lines whose per-sample results and inputs equal lmms-eval's, a results_*.json and a summary whose
scores equal its aggregate_results.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from benchmarks import video_bench
from benchmarks.video_suites.backends import Reply, Request
from benchmarks.video_suites.lmms_frames import chat_indices, simple_indices, smart_size
from benchmarks.video_suites.lmms_results import METRIC, suite_of
from tests.benchmarks import lmms_cases as cases
from tests.benchmarks.lmms_oracle import FIXTURE
from tests.benchmarks.suite_layouts import lmms_layout

ORACLE = json.loads(FIXTURE.read_text())["bench"]
SUITES = ("videomme", "mvbench", "longvideobench", "mlvu")


class Scripted:
    """Replies by sample id; keeps every request."""

    name, workers = "scripted", 1

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies, self.requests = replies, []
        self._lock = threading.Lock()

    def describe(self) -> dict:
        return {"backend": "scripted", "model": "org/scripted-model"}

    def answer(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
        return Reply(
            self.replies[request.sample_id], "", {"prompt_tokens": 50, "completion_tokens": 3}, 0.1, 0.2
        )


def run_bench(suite, tmp_path, monkeypatch, *extra):
    rows = lmms_layout(suite, tmp_path / suite)
    backend = Scripted({sid: reply for (sid, _, _), (_, reply) in zip(rows, cases.BENCH[suite])})
    monkeypatch.setattr(video_bench, "make_backend", lambda args: backend)
    out = tmp_path / "out"
    argv = ["--suite", suite, "--root", str(tmp_path / suite), "--protocol", "lmms-eval", "--out", str(out),
            "--no-plots", "--no-progress", *extra]  # fmt: skip
    assert video_bench.main(argv) == 0
    return rows, backend, out


@pytest.mark.parametrize("suite", SUITES)
def test_samples_results_and_summary_equal_lmms_eval(suite, tmp_path, monkeypatch, capsys):
    rows, backend, out = run_bench(suite, tmp_path, monkeypatch)
    assert len(backend.requests) == len(rows)
    oracle = ORACLE[suite]
    (folder,) = (out / "lmms_eval").iterdir()
    assert folder.name == "org__scripted-model"  # lmms-eval's sanitize_model_name: the last two parts
    lines = {}
    for path in folder.glob("*_samples_*.jsonl"):
        task = path.stem.split("_samples_", 1)[1]
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            lines[(task, rec["doc_id"])] = rec
    assert len(lines) == len(rows)
    for k, (_, task, doc_id) in enumerate(rows):
        line = lines[(task, doc_id)]
        metric = METRIC[suite_of(task)]
        assert line[metric] == oracle["process_results"][k][metric], (task, doc_id)
        assert {key: line[key] for key in oracle["process_results"][k]} == oracle["process_results"][k]
        assert line["input"] == oracle["prompts"][k]  # doc_to_text, through our adapter's row
        if suite == "mvbench":  # MVBench logs the reply lmms-eval scored: thinking cut, stripped
            assert line["filtered_resps"] == line[metric]["pred_answer"]
    (results_file,) = folder.glob("*_results.json")
    results = json.loads(results_file.read_text())
    summary = json.loads((out / "summary.json").read_text())
    for task, expected in oracle["aggregate"].items():
        if task == "mvbench":  # lmms-eval prints no group score: its function over all sub-tasks pooled
            assert results["results"]["mvbench"] == {" ": " ", "alias": "mvbench"}
            assert summary["lmms_eval"]["score"] == expected
            continue
        got = results["results"][task][f"{METRIC[suite]},none"]
        assert summary["lmms_eval"]["tasks"][task]["value"] == got
        # MLVU sums its seven type scores over a set (hash order): equal up to the last bits
        assert got == (pytest.approx(expected, rel=1e-12) if suite == "mlvu" else expected), task
    if suite != "mvbench":
        assert summary["lmms_eval"]["score"] == pytest.approx(oracle["aggregate"][rows[0][1]], rel=1e-12)
    assert "protocol lmms-eval 0.7.3" in capsys.readouterr().err  # the header names the protocol ...
    assert any("NOT lmms-eval's" in n for n in summary["notes"])  # ... and says the frames differ


def test_mvbench_empty_replies_leave_the_denominator(tmp_path, monkeypatch):
    _, _, out = run_bench("mvbench", tmp_path, monkeypatch)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["excluded"] == 2  # "" and a reply that is only thinking
    assert summary["overall"]["n"] == 3


def test_frames_lmms_eval_sends_evenly_spaced_images(tmp_path, monkeypatch):
    """--frames lmms-eval: N separate images before the text (chat class, resized); -simple: after, full size."""
    _, backend, _ = run_bench(
        "longvideobench", tmp_path / "chat", monkeypatch, "--frames", "lmms-eval", "--max-frames", "4"
    )
    req = backend.requests[0]
    assert req.images == "before" and len(req.video) == 4
    assert (
        {im.size for im in req.video} == {smart_size(32, 32, 4)[::-1]} == {(336, 336)}
    )  # enlarged as qwen_vl_utils does
    _, backend, _ = run_bench(
        "longvideobench",
        tmp_path / "simple",
        monkeypatch,
        "--frames",
        "lmms-eval-simple",
        "--max-frames",
        "4",
    )
    req = backend.requests[0]
    assert req.images == "after" and [im.size for im in req.video] == [(32, 32)] * 4
    # the test clip's red bar grows with the frame index: read which frames were sent
    widths = [int((np.asarray(im)[16, :, 0] > 128).sum()) for im in req.video]
    assert simple_indices(12, 4) == [0, 3, 7, 11]
    assert widths == pytest.approx([(i * 32) // 12 + 4 for i in (0, 3, 7, 11)], abs=1)


@pytest.mark.parametrize(
    "total, n, expected",
    [(12, 4, [0, 4, 7, 11]), (100, 10, [0, 11, 22, 33, 44, 55, 66, 77, 88, 99]), (9, 5, [0, 3, 5, 8])],
    ids=["four_of_twelve", "default_ten", "odd_n_rounds_to_even"],
)
def test_chat_indices_are_qwen_vl_utils_linspace_rounded(total, n, expected):
    assert chat_indices(total, n) == expected


def test_chat_indices_refuse_more_frames_than_the_video_has():
    import mm_model

    with pytest.raises(mm_model.InputError, match="cannot take 10 frames from a 8-frame video"):
        chat_indices(8, 10)


@pytest.mark.parametrize(
    "total, n, expected",
    [(12, 4, [0, 3, 7, 11]), (3, 10, [0, 1, 2]), (10, 3, [0, 4, 9])],
    ids=["floor", "short", "three"],
)
def test_simple_indices_truncate(total, n, expected):
    assert simple_indices(total, n) == expected


def test_protocol_refuses_other_suites_and_frames_need_it(tmp_path, capsys):
    assert video_bench.main(["--suite", "synthetic", "--root", str(tmp_path), "--protocol", "lmms-eval"]) == 2
    assert "covers videomme, mvbench, longvideobench, mlvu" in capsys.readouterr().err
    assert video_bench.main(["--suite", "mlvu", "--root", str(tmp_path), "--frames", "lmms-eval"]) == 2
    assert "--frames lmms-eval needs --protocol lmms-eval" in capsys.readouterr().err


def test_tiny_model_takes_lmms_eval_frames_as_images(tiny_dir, tmp_path, capsys):
    """Plumbing on the tiny random model: native chunks and lmms-eval's enlarged separate frames both run."""
    lmms_layout("mlvu", tmp_path / "mlvu")
    tokens = {}
    for frames in ("native", "lmms-eval"):
        out = tmp_path / frames
        argv = ["--suite", "mlvu", "--root", str(tmp_path / "mlvu"), "--protocol", "lmms-eval", "--frames", frames,
                "--max-frames", "4", "--limit", "1", "--max-new-tokens", "2", "--model", str(tiny_dir),
                "--no-plots", "--no-progress", "--out", str(out)]  # fmt: skip
        assert video_bench.main(argv) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["errors"] == 0 and summary["overall"]["n"] == 1
        tokens[frames] = summary["throughput"]["mean_vision_tokens"]
    assert tokens["lmms-eval"] > tokens["native"]  # 4 frames at 336x336 vs a 32x32 clip in chunks
