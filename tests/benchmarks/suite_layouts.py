"""Tiny on-disk copies of each suite's published layout (a few synthetic videos each), for the tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import write_video


def _video(path: Path, frames: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, frames=frames, fps=4, size=(32, 32))


def videomme(root: Path) -> Path:
    rows = []
    for i, (vid, dur, task) in enumerate([("v001", "short", "Counting Problem"), ("v002", "medium", "OCR Problems"),
                                          ("v003", "long", "Temporal Reasoning")]):  # fmt: skip
        rows.append({"video_id": f"{i}", "duration": dur, "domain": "Knowledge", "sub_category": "Astronomy",
                     "url": "", "videoID": vid, "question_id": f"{i + 1:03d}-1", "task_type": task,
                     "question": f"What happens in {vid}?", "options": ["A. one", "B. two", "C. three", "D. four"],
                     "answer": "ABCD"[i]})  # fmt: skip
    (root / "videomme").mkdir(parents=True)
    (root / "videomme" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _video(root / "data" / "v001.mp4")
    _video(root / "data" / "v002.mp4")  # v003 missing
    (root / "subtitle").mkdir()
    (root / "subtitle" / "v001.srt").write_text(
        '1\n00:00:00,000 --> 00:00:00,900\n<font color="white" size=".72c">hello there</font>\n\n'
        '2\n00:00:01,000 --> 00:00:01,400\n<font color="white" size=".72c">second line</font>\n\n'
        "3\n00:01:00,000 --> 00:01:02,000\nnever shown\n"
    )
    return root


def mvbench(root: Path) -> Path:
    (root / "json").mkdir(parents=True)
    (root / "json" / "moving_direction.json").write_text(json.dumps([
        {"video": "a.mp4", "question": "Where does it go?", "candidates": ["up", "down", "left"], "answer": "left"},
        {"video": "gone.mp4", "question": "Where?", "candidates": ["up", "down"], "answer": "up"},
    ]))  # fmt: skip
    (root / "json" / "action_sequence.json").write_text(json.dumps([
        {"video": "b.mp4", "question": "What first?", "candidates": ["sit", "stand"], "answer": "stand",
         "start": 0.5, "end": 1.5},
    ]))  # fmt: skip
    (root / "json" / "episodic_reasoning.json").write_text(json.dumps([
        {"video": "clip_1", "question": "Who spoke?", "candidates": ["Ann", "Bob", "Cy", "Di", "Ed"],
         "answer": "Di", "start": 0.0, "end": 2.0},
    ]))  # fmt: skip
    _video(root / "video" / "clevrer" / "video_validation" / "a.mp4")
    _video(root / "video" / "data0613" / "star" / "Charades_v1_480" / "b.mp4")  # the later-added folder
    frames = root / "video" / "tvqa" / "frames_fps3_hq" / "clip_1"
    frames.mkdir(parents=True)
    for k in range(9):  # 3 s at 3 fps
        Image.fromarray(np.full((24, 32, 3), 20 * k, np.uint8)).save(frames / f"{k + 1:05d}.jpg")
    return root


def longvideobench(root: Path) -> Path:
    recs = [
        {"id": "lvb-1", "video_path": "x1.mp4", "subtitle_path": "x1_en.json", "duration": 2.0,
         "duration_group": 15, "question": "What colour?", "candidates": ["red", "blue", "N/A"], "correct_choice": 1,
         "question_category": "T2E", "starting_timestamp_for_subtitles": 0},
        {"id": "lvb-2", "video_path": "x2.mp4", "subtitle_path": "x2_en.json", "duration": 500.0,
         "duration_group": 600, "question": "Who?", "candidates": ["a", "b", "c", "d", "e"], "correct_choice": 4,
         "question_category": "S2A", "starting_timestamp_for_subtitles": 0},
        {"id": "lvb-3", "video_path": "missing.mp4", "subtitle_path": "m.json", "duration": 3000.0,
         "duration_group": 3600, "question": "?", "candidates": ["a", "b"], "correct_choice": 0,
         "question_category": "T2E", "starting_timestamp_for_subtitles": 0},
    ]  # fmt: skip
    root.mkdir(parents=True)
    (root / "lvb_val.json").write_text(json.dumps(recs))
    _video(root / "videos" / "x1.mp4")
    _video(root / "videos" / "x2.mp4")
    (root / "subtitles").mkdir()
    (root / "subtitles" / "x1_en.json").write_text(json.dumps([
        {"start": "00:00:00.000", "end": "00:00:01.000", "line": "look at the ball"},
        {"timestamp": [5.0, 6.0], "text": "later words"},
    ]))  # fmt: skip
    return root


def mlvu(root: Path) -> Path:
    (root / "json").mkdir(parents=True)
    (root / "json" / "1_plotQA.json").write_text(json.dumps([
        {"video": "movie.mp4", "duration": 200, "question": "Why?", "candidates": ["x", "y", "z", "w"],
         "answer": "z", "question_type": "plotQA"},
    ]))  # fmt: skip
    (root / "json" / "4_count.json").write_text(json.dumps([
        {"video": "movie.mp4", "duration": 1000, "question": "How many?", "candidates": ["1", "2", "3", "4"],
         "answer": "2", "question_type": "count"},
        {"video": "lost.mp4", "duration": 10, "question": "?", "candidates": ["1", "2"], "answer": "1",
         "question_type": "count"},
    ]))  # fmt: skip
    (root / "json" / "9_summary.json").write_text(
        json.dumps([{"video": "s.mp4", "question": "Summarize", "answer": "..."}])
    )
    _video(root / "video" / "1_plotQA" / "movie.mp4")  # the same basename in two task folders
    _video(root / "video" / "4_count" / "movie.mp4", frames=12)
    return root


def generic(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _video(root / "clips" / "one.mp4")
    _video(root / "clips" / "two.mp4", frames=16)
    recs = [
        {"id": "g1", "video": "clips/one.mp4", "question": "Which way?", "options": ["left", "right"], "answer": "B",
         "tags": {"task_type": "direction", "duration_bucket": "short"}},
        {"id": "g2", "video": str(root / "clips" / "two.mp4"), "question": "Colour?", "options": ["A. red", "B. blue", "C. green"],
         "answer": 2, "tags": {"task_type": "colour"}},
        {"video": "clips/one.mp4", "question": "Count?", "options": ["1", "2", "3"], "answer": "3"},
        {"id": "g4", "video": "clips/none.mp4", "question": "?", "options": ["a", "b"], "answer": "a"},
    ]  # fmt: skip
    (root / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return root


LAYOUTS = {
    "videomme": videomme,
    "mvbench": mvbench,
    "longvideobench": longvideobench,
    "mlvu": mlvu,
    "generic": generic,
}


# ---- lmms-eval's layouts, holding `lmms_cases.BENCH` ------------------------------------------------


def _parquet(path: Path, rows: list[dict]) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)


def lmms_layout(suite: str, root: Path) -> list[tuple[str, str, int]]:
    """Write `lmms_cases.BENCH[suite]` in the layout lmms-eval reads; (sample id, task, doc_id) per row.

    Video-MME: videomme/test-*.parquet + data/; MVBench: the pre-cut `video` revision (json/ + segment
    folders, no video/); LongVideoBench: the HF validation parquet + videos/; MLVU: MLVU_dev's
    mlvu/test-*.parquet + videos under their video_name.
    """
    from benchmarks.video_suites.mvbench import SEGMENTS
    from tests.benchmarks.lmms_cases import BENCH

    rows = [doc for doc, _ in BENCH[suite]]
    if suite == "videomme":
        _parquet(root / "videomme" / "test-00000-of-00001.parquet", rows)
        for doc in rows:
            if not (root / "data" / f"{doc['videoID']}.mp4").exists():
                _video(root / "data" / f"{doc['videoID']}.mp4")
        return [(doc["question_id"], "videomme", k) for k, doc in enumerate(rows)]
    if suite == "mvbench":
        by_task: dict[str, list[dict]] = {}
        out = []
        for doc in rows:
            task = doc["_task"]
            entry = {k: v for k, v in doc.items() if k != "_task"}
            out.append(
                (f"{task}/{len(by_task.get(task, []))}", f"mvbench_{task}", len(by_task.get(task, [])))
            )
            by_task.setdefault(task, []).append(entry)
            _video(root / SEGMENTS[task] / entry["video"])
        (root / "json").mkdir(parents=True, exist_ok=True)
        for task, entries in by_task.items():
            (root / "json" / f"{task}.json").write_text(json.dumps(entries))
        return out
    if suite == "longvideobench":
        _parquet(root / "validation-00000-of-00001.parquet", rows)
        for doc in rows:
            _video(root / "videos" / doc["video_path"], frames=12)
        return [(doc["id"], "longvideobench_val_v", k) for k, doc in enumerate(rows)]
    _parquet(root / "mlvu" / "test-00000-of-00001.parquet", rows)
    for doc in rows:
        _video(root / doc["video_name"])
    return [(f"test-00000-of-00001/{k}", "mlvu_dev", k) for k in range(len(rows))]
