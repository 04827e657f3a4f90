"""MLVU (JUNJIE99/MLVU) dev set, in its release layout or as lmms-eval reads it (`MLVU_dev`):

    root/json/1_plotQA.json ... 7_topic_reasoning.json   release: entries {video, duration, question,
                                                          candidates[], answer (text), question_type}
    root/video/<json stem>/<video>                        (basenames repeat across task folders)

    root/mlvu/test-*.parquet (or root/*.parquet, or a .json/.jsonl export)   MLVU_dev (sy1998/MLVU_dev),
        rows {video_name, question (the options follow it, one "(A) ..." line each), answer (a letter),
        task_type, [candidates, duration]}; videos at root/<video_name>

The generative tasks (8_sub_scene, 9_summary) are not multiple choice and are skipped. Task type =
`question_type` (release) or `task_type` (MLVU_dev); MLVU's headline M-Avg is the mean of per-task
accuracies (`summary` reports it as `macro_task_accuracy`). Duration bucket: from `duration`.
`Sample.doc` is the row lmms-eval's `mlvu_dev` task reads. For release entries it is built here: the
question with "\\n(A) text" lines appended, the answer as a letter, task_type from the file name
(plotQA, needle, ego, count, order, anomaly_reco, topic_reasoning: lmms-eval's seven).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from benchmarks.video_suites.schema import (
    LETTERS,
    Sample,
    SuiteLoad,
    answer_letter,
    duration_bucket,
    json_safe,
    read_json_or_jsonl,
    read_rows,
)

GENERATIVE = ("8_sub_scene", "9_summary")
_OPTION = re.compile(r"^\(([A-Z])\)\s?(.*)$")


def _sample(sid: str, video: Path, question: str, options: list[str], answer: Any, task: str,
            duration: Any, doc: dict[str, Any]) -> Sample:  # fmt: skip
    seconds = float(duration) if duration is not None else None
    return Sample(
        id=sid, suite="mlvu", video=str(video), question=question, options=tuple(options),
        answer=answer_letter(answer, options, sid),
        tags={"task_type": task, "duration_bucket": duration_bucket(seconds)}, duration=seconds, doc=doc,
    )  # fmt: skip


def _keep(out: SuiteLoad, sample: Sample) -> None:
    if Path(sample.video).exists():
        out.samples.append(sample)
    else:
        out.missing.append((sample.id, sample.video))


def split_options(text: str) -> tuple[str, list[str]]:
    """MLVU_dev's question text -> (the question, its "(A) ..." option lines as texts)."""
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if _OPTION.match(line.strip())), len(lines))
    options = [m.group(2).strip() for line in lines[first:] if (m := _OPTION.match(line.strip()))]
    return "\n".join(lines[:first]).strip(), options


def _load_dev(root: Path, out: SuiteLoad) -> None:
    files = next((found for pattern in ("mlvu/*.parquet", "*.parquet", "mlvu/*.json*", "*.json*")
                  if (found := sorted(root.glob(pattern)))), [])  # fmt: skip
    if not files:
        raise FileNotFoundError(f"{root}: no json/*.json (MLVU release) nor mlvu/test-*.parquet (MLVU_dev)")
    for path in files:
        for i, row in enumerate(read_rows(path)):
            doc = json_safe(row)
            question, inline = split_options(str(doc["question"]))
            options = [str(c) for c in doc["candidates"]] if doc.get("candidates") else inline
            sid = f"{path.stem}/{i}"
            video = root / str(doc["video_name"])
            sample = _sample(
                sid, video, question, options, doc["answer"], str(doc["task_type"]), doc.get("duration"), doc
            )
            _keep(out, sample)


def load(root: str | Path) -> SuiteLoad:
    root = Path(root)
    files = sorted((root / "json").glob("*.json"))
    out = SuiteLoad([])
    if not files:
        _load_dev(root, out)
        out.notes.append("MLVU_dev layout (as lmms-eval reads it)")
        return out
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
            letter = answer_letter(rec["answer"], options, sid)
            lines = "".join(f"\n({LETTERS[k]}) {o}" for k, o in enumerate(options))
            doc = {"video_name": f"{stem}/{rec['video']}", "question": f"{rec['question']}{lines}", "answer": letter,
                   "task_type": task, "candidates": options, "duration": rec.get("duration")}  # fmt: skip
            sample = _sample(sid, video, str(rec["question"]), options, letter,
                             str(rec.get("question_type", task)), rec.get("duration"), doc)  # fmt: skip
            _keep(out, sample)
    return out
