"""Each suite adapter reads a tiny copy of its published layout; missing videos are listed, not fatal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.video_suites import load_suite
from benchmarks.video_suites.backends import video_input
from benchmarks.video_suites.prompts import build_prompt
from benchmarks.video_suites.schema import Sample, answer_letter, strip_letter
from benchmarks.video_suites.subtitles import read_cues, subtitle_text
from tests.benchmarks import suite_layouts

# suite -> (ids read, answers, (bucket, task) per id, missing count)
EXPECTED = {
    "videomme": (["001-1", "002-1"], ["A", "B"], [("short", "Counting Problem"), ("medium", "OCR Problems")], 1),
    "mvbench": (["moving_direction/0", "action_sequence/0", "episodic_reasoning/0"], ["C", "B", "D"],
                [(None, "Moving Direction"), (None, "Action Sequence"), (None, "Episodic Reasoning")], 1),
    "longvideobench": (["lvb-1", "lvb-2"], ["B", "E"], [("8-15s", "T2E"), ("3-10min", "S2A")], 1),
    "mlvu": (["1_plotQA/0", "4_count/0"], ["C", "B"], [("3-10min", "plotQA"), ("10-30min", "count")], 1),
    "generic": (["g1", "g2", "2"], ["B", "C", "C"], [("short", "direction"), (None, "colour"), (None, None)], 1),
}  # fmt: skip


@pytest.mark.parametrize("suite", list(EXPECTED))
def test_adapter_reads_layout(suite, tmp_path):
    root = suite_layouts.LAYOUTS[suite](tmp_path / suite)
    loaded = load_suite(suite, root)
    ids, answers, tags, missing = EXPECTED[suite]
    key = {s.id: s for s in loaded.samples}
    assert sorted(key) == sorted(ids)
    for sid, answer, (bucket, task) in zip(ids, answers, tags):
        s = key[sid]
        assert s.answer == answer, sid
        assert s.tags.get("duration_bucket") == bucket, sid
        assert s.tags.get("task_type") == task, sid
        assert Path(s.video).exists()
        assert all(not o[:2].strip().endswith(".") for o in s.options)  # letters stripped
    assert len(loaded.missing) == missing


def test_videomme_subtitles_and_prompt(tmp_path):
    root = suite_layouts.videomme(tmp_path / "vmme")
    s = {x.id: x for x in load_suite("videomme", root, subtitles=True).samples}["001-1"]
    assert s.options == ("one", "two", "three", "four")
    assert subtitle_text(s.subtitle, [0.0, 0.5, 1.0]) == "hello there\nsecond line"
    assert subtitle_text(s.subtitle, [0.5]) == "hello there"
    prompt = build_prompt(s, "hello there")
    assert prompt.startswith("This video's subtitles are listed below:\nhello there\n")
    assert "based on the video and the subtitles. Respond with only the letter (A, B, C, or D)" in prompt
    assert prompt.endswith("A. one\nB. two\nC. three\nD. four\nThe best answer is:")


def test_videomme_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    root = suite_layouts.videomme(tmp_path / "vmme")
    rows = [json.loads(line) for line in (root / "videomme" / "test.jsonl").read_text().splitlines()]
    (root / "videomme" / "test.jsonl").unlink()
    pd.DataFrame(rows).to_parquet(root / "videomme" / "test-00000-of-00001.parquet")
    assert len(load_suite("videomme", root).samples) == 2


def test_mvbench_segments_and_frame_folders(tmp_path):
    root = suite_layouts.mvbench(tmp_path / "mvb")
    key = {s.id: s for s in load_suite("mvbench", root).samples}
    bounded = key["action_sequence/0"]
    assert (bounded.start, bounded.end) == (0.5, 1.5) and "data0613" in bounded.video
    frames = video_input(bounded, fps=2.0)  # 8 frames at 4 fps = 2 s; sampled at 2 fps: 0, .5, 1, 1.5
    assert 2 <= len(frames) <= 3
    folder = key["episodic_reasoning/0"]
    assert folder.frame_fps == 3.0 and Path(folder.video).is_dir()
    # 3 fps frames (0, .33, .67, ...) in [0, 2] s, the first at or after each 2 fps grid point 0, .5, 1, 1.5, 2
    assert len(video_input(folder, fps=2.0)) == 5
    only = load_suite("mvbench", root, tasks=["Moving Direction"])
    assert [s.id for s in only.samples] == ["moving_direction/0"]


def test_longvideobench_subtitles_and_refused_test_split(tmp_path):
    root = suite_layouts.longvideobench(tmp_path / "lvb")
    s = load_suite("longvideobench", root, subtitles=True).samples[0]
    assert s.options == ("red", "blue")  # "N/A" padding dropped
    assert [c[2] for c in read_cues(s.subtitle)] == ["look at the ball", "later words"]
    assert subtitle_text(s.subtitle, [0.5]) == "look at the ball"
    (root / "lvb_val.json").write_text(json.dumps([{"id": "t", "video_path": "x1.mp4", "question": "?",
                                                    "candidates": ["a", "b"]}]))  # fmt: skip
    with pytest.raises(ValueError, match="correct_choice"):
        load_suite("longvideobench", root)


def test_mlvu_keeps_task_folders_and_skips_generative(tmp_path):
    root = suite_layouts.mlvu(tmp_path / "mlvu")
    loaded = load_suite("mlvu", root)
    videos = {s.id: s.video for s in loaded.samples}
    assert videos["1_plotQA/0"] != videos["4_count/0"]
    assert any("9_summary" in n for n in loaded.notes)


@pytest.mark.parametrize(
    "answer, expected",
    [("B", "B"), ("b", "B"), (1, "B"), ("1", "B"), ("blue", "B"), (" Blue ", "B")],
    ids=["letter", "lower", "index", "index_str", "text", "text_case"],
)
def test_answer_forms(answer, expected):
    assert answer_letter(answer, ["red", "blue", "green"], "x") == expected


def test_bad_answers_and_options_raise():
    with pytest.raises(ValueError, match="neither"):
        answer_letter("purple", ["red", "blue"], "x")
    with pytest.raises(ValueError, match="option letters"):
        Sample("x", "generic", "v.mp4", "q", ("a", "b"), "C")
    assert strip_letter("(B) two", 1) == "two" and strip_letter("B. two", 0) == "B. two"


def test_prompt_styles():
    s = Sample("x", "mvbench", "v.mp4", "Where?", ("up", "down", "left"), "A")
    assert (
        build_prompt(s) == "Question: Where?\nOption:\n(A) up\n(B) down\n(C) left\nOnly give the best option."
    )
    g = build_prompt(Sample("x", "generic", "v.mp4", "Where?", ("up", "down"), "A"))
    assert g.endswith("A. up\nB. down\nAnswer with the option's letter from the given choices directly.")


def test_synthetic_suite_is_deterministic_and_readable(tmp_path):
    import video
    from benchmarks.video_suites.synthetic import GENERATORS, make_suite

    a = make_suite(tmp_path / "a", n=len(GENERATORS), seed=123)
    b = make_suite(tmp_path / "b", n=len(GENERATORS), seed=123)
    assert a.read_text() == b.read_text()
    loaded = load_suite("synthetic", tmp_path / "a")
    assert not loaded.missing and {s.tags["task_type"] for s in loaded.samples} == set(GENERATORS)
    clip = video.load_video(loaded.samples[0].video, fps=2.0)
    assert clip.frames.shape[1:] == (64, 96, 3) and len(clip.frames) == 4  # 2 s at 2 fps


def test_synthetic_suite_from_training_generators(tmp_path):
    pytest.importorskip("training.generators")
    from benchmarks.video_suites.synthetic import make_training_suite

    loaded = load_suite("synthetic", make_training_suite(tmp_path, n=4, long_every=0))
    assert len(loaded.samples) == 4 and not loaded.missing
    for s in loaded.samples:
        assert s.tags["split"] == "heldout" and len(set(s.options)) == len(s.options) >= 2


def test_segments_reach_endpoints_as_mp4():
    import numpy as np
    from PIL import Image

    import video
    from benchmarks.video_suites.backends import frames_to_mp4

    frames = [Image.fromarray(np.full((33, 41, 3), 40 * k, np.uint8)) for k in range(5)]  # odd sizes
    clip = video.load_video(frames_to_mp4(frames, fps=2.0), fps=2.0)
    assert clip.frames.shape == (5, 32, 40, 3)
    assert np.allclose(clip.timestamps, [0, 0.5, 1.0, 1.5, 2.0])
    assert abs(int(clip.frames[4].mean()) - 160) < 6


# ---- the layouts lmms-eval reads, and the rows (`Sample.doc`) its tasks see ------------------------


def test_mvbench_precut_revision_has_no_bounds_and_keeps_the_entry(tmp_path):
    from benchmarks.video_suites.mvbench import SEGMENTS

    suite_layouts.lmms_layout("mvbench", tmp_path / "mv")
    loaded = load_suite("mvbench", tmp_path / "mv")
    assert any("pre-cut" in n for n in loaded.notes) and not loaded.missing
    first = next(s for s in loaded.samples if s.id == "action_sequence/0")
    assert (first.start, first.end, first.frame_fps) == (None, None, None)  # the clip already is the segment
    assert first.video.endswith(f"{SEGMENTS['action_sequence']}/s1.mp4")
    assert first.doc == {"video": "s1.mp4", "question": "First?", "candidates": ["sit", "stand"], "answer": "stand",
                         "start": 0.5, "end": 1.5}  # fmt: skip


def test_mlvu_dev_options_come_from_the_question_when_no_candidates(tmp_path):
    root = tmp_path / "mlvu_dev"
    suite_layouts._video(root / "needle" / "a.mp4")
    row = {"video_name": "needle/a.mp4", "question": "What flashed?\n(A) red\n(B) a blue (dark) box\n(C) green",
           "answer": "B", "task_type": "needle"}  # fmt: skip
    (root / "mlvu").mkdir(parents=True)
    (root / "mlvu" / "test.jsonl").write_text(json.dumps(row) + "\n")
    (s,) = load_suite("mlvu", root).samples
    assert s.question == "What flashed?" and s.options == ("red", "a blue (dark) box", "green")
    assert s.answer == "B" and s.tags["task_type"] == "needle" and s.doc == row


def test_release_layouts_give_the_rows_lmms_eval_reads(tmp_path):
    lvb = {
        s.id: s for s in load_suite("longvideobench", suite_layouts.longvideobench(tmp_path / "lvb")).samples
    }
    assert [lvb["lvb-1"].doc[f"option{i}"] for i in range(5)] == ["red", "blue", "N/A", "N/A", "N/A"]
    assert lvb["lvb-1"].options == ("red", "blue")
    mlvu = {s.id: s for s in load_suite("mlvu", suite_layouts.mlvu(tmp_path / "mlvu")).samples}
    assert mlvu["4_count/0"].doc == {"video_name": "4_count/movie.mp4", "question": "How many?\n(A) 1\n(B) 2\n(C) 3\n(D) 4",
                                     "answer": "B", "task_type": "count", "candidates": ["1", "2", "3", "4"],
                                     "duration": 1000}  # fmt: skip
    vmme = load_suite("videomme", suite_layouts.videomme(tmp_path / "vmme")).samples[0]
    assert (
        vmme.doc["options"] == ["A. one", "B. two", "C. three", "D. four"] and vmme.doc["videoID"] == "v001"
    )
