"""Video-MME, in the layout of its Hugging Face release (lmms-lab/Video-MME):

    root/videomme/test-00000-of-00001.parquet   (or any *.parquet / *.json / *.jsonl under root)
    root/data/<videoID>.mp4                      (.MP4 and .mkv also found)
    root/subtitle/<videoID>.srt                  (with subtitles: cues at the sampled frames' times)

Row fields: videoID, question_id, duration (short < 2 min, medium 4-15 min, long 30-60 min), domain,
sub_category, task_type, question, options (["A. ...", ...]), answer (a letter).
Duration bucket = the `duration` field; task type = `task_type` (12 types).
Parquet needs pandas + pyarrow; a JSON/JSONL export of the same rows needs nothing.
This is also the layout lmms-eval reads (its cache folder `videomme/`); `Sample.doc` is the row.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.video_suites.schema import (
    Sample,
    SuiteLoad,
    answer_letter,
    json_safe,
    read_rows,
    strip_letter,
)

VIDEO_SUFFIXES = (".mp4", ".MP4", ".mkv")


def _annotation_files(root: Path) -> list[Path]:
    for pattern in ("videomme/*.parquet", "*.parquet", "videomme/*.json*", "*.json*"):
        found = sorted(root.glob(pattern))
        if found:
            return found
    raise FileNotFoundError(
        f"{root}: no Video-MME annotations (videomme/test-*.parquet, or a .json/.jsonl export)"
    )


def load(root: str | Path, subtitles: bool = False) -> SuiteLoad:
    root = Path(root)
    out = SuiteLoad([])
    for path in _annotation_files(root):
        for row in read_rows(path):
            vid = str(row["videoID"])
            options = [strip_letter(str(o), i) for i, o in enumerate(list(row["options"]))]
            sid = str(row.get("question_id", f"{vid}-{len(out.samples)}"))
            video = next((root / "data" / f"{vid}{s}" for s in VIDEO_SUFFIXES if (root / "data" / f"{vid}{s}").exists()),
                         root / "data" / f"{vid}.mp4")  # fmt: skip
            srt = root / "subtitle" / f"{vid}.srt"
            sample = Sample(
                id=sid, suite="videomme", video=str(video), question=str(row["question"]),
                options=tuple(options), answer=answer_letter(row["answer"], options, sid),
                tags={"duration_bucket": str(row.get("duration", "unknown")),
                      "task_type": str(row.get("task_type", "unknown")),
                      "domain": str(row.get("domain", "")), "sub_category": str(row.get("sub_category", "")),
                      "video_id": vid},
                subtitle=str(srt) if subtitles else None, doc=json_safe(row),
            )  # fmt: skip
            if video.exists():
                out.samples.append(sample)
            else:
                out.missing.append((sid, str(video)))
    if subtitles:
        n = sum(1 for s in out.samples if not Path(s.subtitle).exists())
        if n:
            out.notes.append(f"{n} samples have no subtitle file (the prompt says 'No subtitles available')")
    return out
