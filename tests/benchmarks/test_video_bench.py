"""The benchmark loop on a fake backend with known answers: records, summary, resume after an interrupt,
concurrent workers; the CLI end to end on the tiny random model (local, and through our server)."""

from __future__ import annotations

import argparse
import json
import threading

import pytest

from benchmarks import video_bench
from benchmarks.video_suites import load_suite
from benchmarks.video_suites.backends import Reply, Request
from benchmarks.video_suites.results import ResultsFile
from benchmarks.video_suites.summary import summarize
from benchmarks.video_suites.synthetic import make_suite
from mm_model import cli

SETTINGS = {"fps": 2.0, "max_frames": None, "subtitles": False, "thinking": False, "budget": None,
            "max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "seed": None}  # fmt: skip


class FakeBackend:
    """Replies from a table by sample id; counts calls; can be told to raise KeyboardInterrupt at call k."""

    name = "fake"

    def __init__(self, replies: dict[str, str], workers: int = 1, interrupt_at: int | None = None) -> None:
        self.replies, self.workers, self.interrupt_at = replies, workers, interrupt_at
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def describe(self) -> dict:
        return {"backend": "fake"}

    def answer(self, request: Request) -> Reply:
        with self._lock:
            self.calls.append(request.sample_id)
            if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
                raise KeyboardInterrupt
        reply = self.replies[request.sample_id]
        if reply == "!error":
            raise RuntimeError("endpoint said 500")
        return Reply(reply, "", {"vision_tokens": 12, "completion_tokens": 3}, 0.1, 0.2, 0.05, 4)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    make_suite(root, n=8, seed=7)
    samples = load_suite("synthetic", root).samples
    return root, samples


def known_replies(samples):
    """Right for even samples (in assorted forms), wrong or junk for odd ones."""
    forms = ["{a}", "The answer is {a}.", "({a})", "Answer: {a}"]
    out = {}
    for i, s in enumerate(samples):
        wrong = next(letter for letter in s.letters if letter != s.answer)
        out[s.id] = forms[i % 4].format(a=s.answer) if i % 2 == 0 else ("no idea" if i % 4 == 1 else wrong)
    return out


def test_records_and_summary_on_fake_backend(suite, tmp_path):
    _, samples = suite
    backend = FakeBackend(known_replies(samples))
    results = ResultsFile(tmp_path / "r.jsonl", {"x": 1})
    assert video_bench.run(samples, backend, results, SETTINGS, progress=False) == 8
    recs = {r["id"]: r for r in results.records()}
    for i, s in enumerate(samples):
        r = recs[s.id]
        assert r["correct"] == (i % 2 == 0) and r["raw_output"] == backend.replies[s.id]
        assert r["answer"] == s.answer and r["options"] == list(s.options) and r["question"] == s.question
        assert r["duration_bucket"] == s.tags["duration_bucket"] and r["duration_s"] == s.duration
        assert r["usage"]["vision_tokens"] == 12 and r["timings"]["total_s"] == 0.2
    assert [recs[s.id]["prediction"] for i, s in enumerate(samples) if i % 4 == 1] == [None, None]
    summary = summarize(results.records())
    assert summary["overall"]["accuracy"] == 0.5 and summary["unparsed"] == 2
    assert {k: v["n"] for k, v in summary["by_task_type"].items()} == {
        "colour_order": 2, "direction": 2, "first_appear": 2, "flash_count": 2}  # fmt: skip
    assert summary["throughput"]["decode_frames_per_s"] == pytest.approx(4 / 0.05)


def test_interrupted_run_resumes_without_redoing(suite, tmp_path):
    _, samples = suite
    replies = known_replies(samples)
    replies[samples[5].id] = "!error"
    path = tmp_path / "r.jsonl"
    first = FakeBackend(replies, interrupt_at=4)
    with pytest.raises(KeyboardInterrupt):
        video_bench.run(samples, first, ResultsFile(path, {"x": 1}), SETTINGS, progress=False)
    finished = ResultsFile(path, {"x": 1}).done
    assert len(finished) == 3  # calls 1-3 were written; the 4th was interrupted
    replies[samples[5].id] = "A"
    second = FakeBackend(replies)
    ran = video_bench.run(samples, second, ResultsFile(path, {"x": 1}), SETTINGS, progress=False)
    assert ran == len(samples) - len(finished) == len(second.calls)
    assert not set(second.calls) & finished
    assert ResultsFile(path, {"x": 1}).done == {s.id for s in samples}
    # an error is recorded, and retried by the next run
    third_replies = dict(replies)
    third_replies[samples[6].id] = "!error"
    p2 = tmp_path / "r2.jsonl"
    video_bench.run(samples, FakeBackend(third_replies), ResultsFile(p2, {"x": 1}), SETTINGS, progress=False)
    rec = next(r for r in ResultsFile(p2, {"x": 1}).records() if r["id"] == samples[6].id)
    assert rec["error"].startswith("RuntimeError") and samples[6].id not in ResultsFile(p2, {"x": 1}).done
    again = FakeBackend(replies)
    video_bench.run(samples, again, ResultsFile(p2, {"x": 1}), SETTINGS, progress=False)
    assert again.calls == [samples[6].id]


def test_workers_run_concurrently_and_record_everything(suite, tmp_path):
    _, samples = suite
    backend = FakeBackend(known_replies(samples), workers=3)
    results = ResultsFile(tmp_path / "r.jsonl", {"x": 1})
    video_bench.run(samples, backend, results, SETTINGS, progress=True)
    assert sorted(backend.calls) == sorted(s.id for s in samples)
    assert summarize(results.records())["overall"]["accuracy"] == 0.5


def test_add_bench_command_parses():
    ap = argparse.ArgumentParser(prog="mm-model")
    video_bench.add_bench_command(ap.add_subparsers(dest="command"))
    args = ap.parse_args(["bench", "video", "--suite", "mvbench", "--root", "/x", "--backend", "openai",
                          "--workers", "8", "--thinking", "--budget", "auto", "--fps", "1"])  # fmt: skip
    assert (
        args.func is video_bench.main_args and args.workers == 8 and args.budget == "auto" and args.fps == 1.0
    )


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_cli_local_and_openai_agree_on_tiny_model(tiny_dir, tmp_path, capsys):
    """Plumbing on the tiny RANDOM model (chance-level answers): local and our server give the same predictions."""
    pytest.importorskip("fastapi")
    import mm_model
    from mm_model.server import background_server, create_app

    root = tmp_path / "syn"
    common = ["--suite", "synthetic", "--root", str(root), "--make-synthetic", "4", "--synthetic-source", "builtin", "--max-new-tokens", "3", "--no-plots",
              "--no-progress"]  # fmt: skip
    assert video_bench.main([*common, "--model", str(tiny_dir), "--out", str(tmp_path / "local")]) == 0
    local = _last_json(capsys.readouterr().out)
    assert local["samples"] == 4 and local["overall"]["n"] == 4 and local["ran_now"] == 4
    assert (tmp_path / "local" / "summary.json").exists() and (tmp_path / "local" / "results.jsonl").exists()
    # resume: nothing left to do
    assert video_bench.main([*common, "--model", str(tiny_dir), "--out", str(tmp_path / "local")]) == 0
    assert _last_json(capsys.readouterr().out)["ran_now"] == 0

    with background_server(create_app(mm_model.load(tiny_dir), model_name="tiny-random")) as url:
        args = [
            *common,
            "--backend",
            "openai",
            "--base-url",
            url,
            "--workers",
            "2",
            "--out",
            str(tmp_path / "oa"),
        ]
        assert video_bench.main(args) == 0
        remote = _last_json(capsys.readouterr().out)
        # `mm-model bench video --model URL`: the openai backend at that URL, with no other flag
        assert cli.main(["bench", "video", *common, "--model", url, "--out", str(tmp_path / "url")]) == 0
        by_url = _last_json(capsys.readouterr().out)
    assert remote["model"] == by_url["model"] == "tiny-random", (remote, by_url)
    assert by_url["backend"] == "openai" and by_url["settings"]["base_url"] == url
    assert remote["overall"] == by_url["overall"] == local["overall"]
    by_id = {}
    for name in ("local", "oa", "url"):
        for line in (tmp_path / name / "results.jsonl").read_text().splitlines()[1:]:
            r = json.loads(line)
            by_id.setdefault(r["id"], []).append((r["raw_output"], r["prediction"]))
    assert len(by_id) == 4 and all(a == b == c for a, b, c in by_id.values()), by_id


def test_bench_with_an_unreachable_url_says_so(tmp_path, capsys):
    import socket

    pytest.importorskip("openai")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    argv = ["bench", "video", "--suite", "synthetic", "--root", str(tmp_path / "syn"), "--make-synthetic", "1",
            "--synthetic-source", "builtin", "--model", closed, "--out", str(tmp_path / "out"), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 2
    assert f"cannot connect to the endpoint {closed}" in capsys.readouterr().err


def test_local_backend_sampling_controls_and_thinking_budget(tiny_dir, suite):
    from benchmarks.video_suites.backends import LocalBackend

    _, samples = suite
    four_s = next(s for s in samples if s.tags["duration_bucket"] == "4s")  # 8 frames at 2 fps
    import mm_model

    model = mm_model.load(tiny_dir)
    full = LocalBackend(model)
    capped = LocalBackend(model, fps=1.0, max_frames=3, max_patches_per_frame=16)
    assert capped.describe()["max_patches_per_frame"] == 16
    req = Request(four_s.id, four_s.video, "Which way?", max_new_tokens=3)
    a, b = full.answer(req), capped.answer(req)
    assert (a.frames, b.frames) == (8, 3)
    assert b.usage["vision_tokens"] < a.usage["vision_tokens"] and a.decode_s > 0
    thought = full.answer(
        Request(four_s.id, four_s.video, "Which way?", max_new_tokens=8, thinking=True, budget=2)
    )
    assert thought.usage["thinking_tokens"] <= 2


def test_budget_needs_thinking_and_bad_roots_are_reported(tmp_path, capsys):
    assert video_bench.main(["--suite", "generic", "--root", str(tmp_path), "--budget", "4"]) == 2
    assert "--budget needs --thinking" in capsys.readouterr().err
    assert video_bench.main(["--suite", "mlvu", "--root", str(tmp_path / "nowhere")]) == 2
    assert "cannot read mlvu" in capsys.readouterr().err


def test_subtitles_at_sampled_times_reach_the_prompt(tmp_path):
    from tests.benchmarks import suite_layouts

    root = suite_layouts.videomme(tmp_path / "vmme")
    sample = {s.id: s for s in load_suite("videomme", root, subtitles=True).samples}["001-1"]
    seen = []

    class Recorder(FakeBackend):
        def answer(self, request):
            seen.append(request.prompt)
            return Reply("The best answer is A", "", {}, 0.1, 0.2)

    rec = video_bench.evaluate(sample, Recorder({}), {**SETTINGS, "subtitles": True})
    assert rec["correct"] and rec["prediction"] == "A" and rec["duration_bucket"] == "short"
    assert "hello there\nsecond line\n" in seen[0] and "never shown" not in seen[0]
    video_bench.evaluate(sample, Recorder({}), SETTINGS)
    assert "subtitles" not in seen[1]


@pytest.mark.parametrize(
    "controls",
    [{}, {"fps": 1.0, "max_frames": 3, "max_patches_per_frame": 16}],
    ids=["defaults", "fps_frames_patches"],
)
def test_openai_backend_sends_the_local_sampling(tiny_dir, suite, controls):
    """--backend openai sends --fps/--max-frames/--max-patches-per-frame: our server then sees the local frames."""
    pytest.importorskip("fastapi")
    import mm_model
    from benchmarks.video_suites.backends import LocalBackend, OpenAIBackend
    from mm_model.server import background_server, create_app

    _, samples = suite
    four_s = next(s for s in samples if s.tags["duration_bucket"] == "4s")  # 8 frames at 2 fps
    req = Request(four_s.id, four_s.video, "Which way?", max_new_tokens=3, temperature=0.8, seed=1)
    local = LocalBackend(mm_model.load(tiny_dir), **controls).answer(req)
    assert local.frames == (3 if controls else 8)
    with background_server(create_app(mm_model.load(tiny_dir), model_name="tiny")) as url:
        remote = OpenAIBackend(url, **{"fps": 2.0, **controls}).answer(req)
    assert remote.usage["vision_tokens"] == local.usage["vision_tokens"]
    assert remote.text == local.text


def test_openai_backend_refuses_bad_sampling_controls():
    from benchmarks.video_suites.backends import OpenAIBackend
    from mm_model import InputError

    with pytest.raises(
        InputError, match="--max-patches-per-frame must be an integer >= 4 and <= 4096, got 5000"
    ):
        OpenAIBackend("http://127.0.0.1:9/v1", "m", max_patches_per_frame=5000)
    with pytest.raises(InputError, match="--max-frames must be an integer >= 1"):
        OpenAIBackend("http://127.0.0.1:9/v1", "m", max_frames=0)
