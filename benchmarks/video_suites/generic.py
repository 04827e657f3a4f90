"""The generic JSONL format, for private sets and the synthetic suite.

One JSON object per line:
    {"id": "q1", "video": "videos/a.mp4", "question": "...", "options": ["left", "right"],
     "answer": "B" | 1 | "right", "tags": {"duration_bucket": "4s", "task_type": "direction"},
     "duration": 4.0, "start": null, "end": null, "subtitle": null}
`video` (and `subtitle`) are relative to the annotation file's folder unless absolute; `id` defaults to
the line number; `answer` is a letter, a 0-based index or the option text. `root` is the .jsonl file,
or a folder holding `annotations.jsonl` (or exactly one .jsonl).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.video_suites.schema import Sample, SuiteLoad, answer_letter, read_json_or_jsonl, strip_letter

ANNOTATIONS = "annotations.jsonl"


def annotation_file(root: Path) -> Path:
    if root.is_file():
        return root
    if (root / ANNOTATIONS).exists():
        return root / ANNOTATIONS
    found = sorted(root.glob("*.jsonl"))
    if len(found) != 1:
        raise FileNotFoundError(
            f"{root}: expected {ANNOTATIONS} or exactly one .jsonl file, found {len(found)}"
        )
    return found[0]


def record_to_sample(rec: dict[str, Any], base: Path, index: int, suite: str = "generic") -> Sample:
    sid = str(rec.get("id", index))
    options = [strip_letter(str(o), i) for i, o in enumerate(rec["options"])]
    tags = {str(k): str(v) for k, v in (rec.get("tags") or {}).items()}
    video = Path(rec["video"])
    subtitle = rec.get("subtitle")
    return Sample(
        id=sid, suite=suite, video=str(video if video.is_absolute() else base / video),
        question=str(rec["question"]), options=tuple(options), answer=answer_letter(rec["answer"], options, sid),
        tags=tags, duration=rec.get("duration"), start=rec.get("start"), end=rec.get("end"),
        frame_fps=rec.get("frame_fps"),
        subtitle=None if subtitle is None else str(subtitle if Path(subtitle).is_absolute() else base / subtitle),
    )  # fmt: skip


def load(root: str | Path, suite: str = "generic") -> SuiteLoad:
    path = annotation_file(Path(root))
    out = SuiteLoad([])
    for i, rec in enumerate(read_json_or_jsonl(path)):
        sample = record_to_sample(rec, path.parent, i, suite)
        if Path(sample.video).exists():
            out.samples.append(sample)
        else:
            out.missing.append((sample.id, sample.video))
    return out
