"""MLVU (JUNJIE99/MLVU) dev set, in its release layout:

    root/json/1_plotQA.json ... 7_topic_reasoning.json   entries {video, duration, question,
                                                          candidates[], answer (text), question_type}
    root/video/<json stem>/<video>                        (basenames repeat across task folders)

The generative tasks (8_sub_scene, 9_summary) are not multiple choice and are skipped. Task type =
`question_type` (falls back to the file's task name); MLVU's headline M-Avg is the mean of per-task
accuracies (`summary` reports it as `macro_task_accuracy`). Duration bucket: from `duration`.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.video_suites.schema import (
    Sample,
    SuiteLoad,
    answer_letter,
    duration_bucket,
    read_json_or_jsonl,
)

GENERATIVE = ("8_sub_scene", "9_summary")


def load(root: str | Path) -> SuiteLoad:
    root = Path(root)
    files = sorted((root / "json").glob("*.json"))
    if not files:
        raise FileNotFoundError(f"{root}: no json/*.json (MLVU annotations)")
    out = SuiteLoad([])
    for ann in files:
        stem = ann.stem
        if stem.startswith(GENERATIVE):
            out.notes.append(f"{ann.name}: generative task, skipped")
            continue
        task = stem.split("_", 1)[-1]
        for i, rec in enumerate(read_json_or_jsonl(ann)):
            if "candidates" not in rec:
                continue
            sid = f"{stem}/{i}"
            options = [str(c) for c in rec["candidates"]]
            video = root / "video" / stem / rec["video"]
            duration = float(rec["duration"]) if rec.get("duration") is not None else None
            sample = Sample(
                id=sid, suite="mlvu", video=str(video), question=str(rec["question"]), options=tuple(options),
                answer=answer_letter(rec["answer"], options, sid),
                tags={"task_type": str(rec.get("question_type", task)), "duration_bucket": duration_bucket(duration)},
                duration=duration,
            )  # fmt: skip
            if video.exists():
                out.samples.append(sample)
            else:
                out.missing.append((sid, str(video)))
    return out
