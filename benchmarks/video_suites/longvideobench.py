"""LongVideoBench (longvideobench/LongVideoBench), in its release layout or as lmms-eval reads it:

    root/lvb_val.json          release: entries {id, video_path, subtitle_path, duration, duration_group,
                               question, candidates[], correct_choice (int), question_category,
                               starting_timestamp_for_subtitles}
    root/**/validation-*.parquet   the Hugging Face split lmms-eval loads (or a .json/.jsonl export of
                               it): the same fields with option0..option4 ("N/A" where there are fewer)
    root/videos/<video_path>
    root/subtitles/<subtitle_path>   (JSON cues; used when subtitles are on)

`lvb_test_wo_gt.json` has no answers and is refused. Duration bucket = `duration_group` (upper bound
in seconds: 15, 60, 600, 3600, named by the published ranges); task type = `question_category`.
`Sample.doc` is the row with option0..option4 (release entries get them from `candidates`, padded
with "N/A" as the parquet is), which is what lmms-eval's task reads.
Difference from the reference: subtitles that cover sampled frames go before the question instead of
being interleaved with the frames (our video is one content part).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.video_suites.schema import Sample, SuiteLoad, answer_letter, json_safe, read_rows

GROUPS = {15: "8-15s", 60: "15-60s", 600: "3-10min", 3600: "15-60min"}
OPTION_SLOTS = 5


def _rows(root: Path, split: str) -> tuple[Path, list[dict[str, Any]]]:
    if (root / split).exists():
        return root / split, read_rows(root / split)
    for pattern in ("**/validation-*.parquet", "**/validation*.json*"):
        found = sorted(root.glob(pattern))
        if found:
            return found[0], [row for path in found for row in read_rows(path)]
    raise FileNotFoundError(
        f"{root}: no {split} or validation-*.parquet (LongVideoBench validation annotations)"
    )


def as_doc(rec: dict[str, Any]) -> dict[str, Any]:
    """The row as lmms-eval sees it: option0..option4, "N/A" past the last candidate."""
    doc = json_safe(rec)
    if "candidates" in doc and "option0" not in doc:
        cands = [str(c) for c in doc["candidates"]]
        doc.update({f"option{i}": cands[i] if i < len(cands) else "N/A" for i in range(OPTION_SLOTS)})
    return doc


def load(root: str | Path, subtitles: bool = False, split: str = "lvb_val.json") -> SuiteLoad:
    root = Path(root)
    ann, rows = _rows(root, split)
    out = SuiteLoad([])
    for rec in rows:
        sid = str(rec["id"])
        if "correct_choice" not in rec or rec["correct_choice"] is None:
            raise ValueError(
                f"{ann}: sample {sid} has no correct_choice (the test split is scored by its server)"
            )
        doc = as_doc(rec)
        options = [
            str(doc[f"option{i}"])
            for i in range(OPTION_SLOTS)
            if str(doc.get(f"option{i}")) not in ("N/A", "None")
        ]
        group = rec.get("duration_group")
        video = root / "videos" / rec["video_path"]
        sub = rec.get("subtitle_path")
        sample = Sample(
            id=sid, suite="longvideobench", video=str(video), question=str(rec["question"]),
            options=tuple(options), answer=answer_letter(int(rec["correct_choice"]), options, sid),
            tags={"duration_bucket": GROUPS.get(int(group), f"<={group}s") if group is not None else "unknown",
                  "task_type": str(rec.get("question_category", "unknown"))},
            duration=float(rec["duration"]) if rec.get("duration") is not None else None,
            subtitle=str(root / "subtitles" / sub) if subtitles and sub else None, doc=doc,
        )  # fmt: skip
        if video.exists():
            out.samples.append(sample)
        else:
            out.missing.append((sid, str(video)))
    return out
