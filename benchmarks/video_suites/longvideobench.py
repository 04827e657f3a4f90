"""LongVideoBench (longvideobench/LongVideoBench), in its release layout:

    root/lvb_val.json          entries {id, video_path, subtitle_path, duration, duration_group,
                               question, candidates[], correct_choice (int), question_category,
                               starting_timestamp_for_subtitles}
    root/videos/<video_path>
    root/subtitles/<subtitle_path>   (JSON cues; used when subtitles are on)

`lvb_test_wo_gt.json` has no answers and is refused. Duration bucket = `duration_group` (upper bound
in seconds: 15, 60, 600, 3600, named by the published ranges); task type = `question_category`.
Difference from the reference: subtitles that cover sampled frames go before the question instead of
being interleaved with the frames (our video is one content part).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.video_suites.schema import Sample, SuiteLoad, answer_letter, read_json_or_jsonl

GROUPS = {15: "8-15s", 60: "15-60s", 600: "3-10min", 3600: "15-60min"}


def load(root: str | Path, subtitles: bool = False, split: str = "lvb_val.json") -> SuiteLoad:
    root = Path(root)
    ann = root / split
    if not ann.exists():
        raise FileNotFoundError(f"{root}: no {split} (LongVideoBench validation annotations)")
    out = SuiteLoad([])
    for rec in read_json_or_jsonl(ann):
        sid = str(rec["id"])
        if "correct_choice" not in rec:
            raise ValueError(
                f"{ann}: sample {sid} has no correct_choice (the test split is scored by its server)"
            )
        options = [str(c) for c in rec["candidates"] if str(c) != "N/A"]
        group = rec.get("duration_group")
        video = root / "videos" / rec["video_path"]
        sub = rec.get("subtitle_path")
        sample = Sample(
            id=sid, suite="longvideobench", video=str(video), question=str(rec["question"]),
            options=tuple(options), answer=answer_letter(int(rec["correct_choice"]), options, sid),
            tags={"duration_bucket": GROUPS.get(int(group), f"<={group}s") if group is not None else "unknown",
                  "task_type": str(rec.get("question_category", "unknown"))},
            duration=float(rec["duration"]) if rec.get("duration") is not None else None,
            subtitle=str(root / "subtitles" / sub) if subtitles and sub else None,
        )  # fmt: skip
        if video.exists():
            out.samples.append(sample)
        else:
            out.missing.append((sid, str(video)))
    return out
