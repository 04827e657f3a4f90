"""Prompts as lmms-eval 0.7.3's `doc_to_text` words them, with each task's default kwargs.

`doc` is the dataset row as lmms-eval's task sees it (`Sample.doc`; the adapters build it). Tasks:
  videomme             "... based on the video and the subtitles ..." (even without subtitles), the
                       options as the row has them ("A. ..."), then "\\nAnswer with the option's
                       letter from the given choices directly." (so a blank line before it)
  videomme_w_subtitle  "This video's subtitles are listed below: \\n" + the `<font>` texts of the cues
                       at 32 frames spread over the file (frame numbers from its fps and frame count),
                       then the same question and options and "The best answer is:"
  mvbench_<task>       "Question:" + question + "\\nOption:\\n(A) ...\\n" + "Only give the best option.\\n"
  longvideobench_val_v question, "A. ..." lines (options "N/A" skipped), the "Answer with the option's
                       letter ..." line and a trailing newline
  longvideobench_val_i the same after 16 "<image>" markers interleaved with the subtitle lines
  mlvu_dev             question (whose text holds the options) + "\\nOnly give the best option.\\nBest option: ("
Read from `lmms_eval/tasks/*/utils.py` and the task YAMLs; tests compare with the real functions.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

VIDEOMME_HEAD = (
    "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
LETTER_DIRECTLY = "Answer with the option's letter from the given choices directly."
VIDEOMME_SUBTITLE_FRAMES = 32  # videomme_w_subtitle.yaml default frame_num
LVB_INTERLEAVE_FRAMES = 16  # longvideobench dataset_kwargs max_num_frames default
_FONT = re.compile(r'<font color="white" size=".72c">(.*?)</font>')


def videomme(doc: dict[str, Any]) -> str:
    options = "\n".join(str(o) for o in doc["options"])
    return f"{VIDEOMME_HEAD}\n{doc['question']}\n{options}\n\n{LETTER_DIRECTLY}"


def _srt_cues(path: Path) -> dict[tuple[float, float], str]:
    """Video-MME's own .srt reading: blank-line sections, times on line 2, a later cue with equal times wins."""

    def seconds(stamp: str) -> float:
        h, m, s_ms = stamp.split(":")
        s, ms = s_ms.split(",")
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    cues: dict[tuple[float, float], str] = {}
    for section in path.read_text(encoding="utf-8").split("\n\n"):
        lines = section.split("\n")
        if section.strip() and len(lines) >= 3:
            start, end = lines[1].split(" --> ")[:2]
            cues[(seconds(start), seconds(end))] = " ".join(lines[2:])
    return cues


def videomme_subtitled(doc: dict[str, Any], subtitle: Path | None, fps: float, total_frames: int) -> str:
    """The `videomme_w_subtitle` prompt; `fps`/`total_frames` as the video's header states them."""
    if subtitle is None or not subtitle.exists():
        text = "No subtitles available"
    else:
        frames = [(int(a * fps), int(b * fps), t) for (a, b), t in _srt_cues(subtitle).items()]
        picked = np.linspace(0, total_frames - 1, VIDEOMME_SUBTITLE_FRAMES, dtype=int).tolist()
        hits = [i for f in picked for i, (a, b, _) in enumerate(frames) if a <= f < b]
        # lmms-eval de-duplicates through a set; iterating the same set keeps its (hash) order
        found = (_FONT.findall(frames[i][2]) for i in list(set(hits)))
        text = "\n".join(m[0] for m in found if m)
    options = "\n".join(str(o) for o in doc["options"])
    return (
        f"This video's subtitles are listed below: \n{text}\n{VIDEOMME_HEAD}\n{doc['question']}\n{options}\n"
        "The best answer is:"
    )


def mvbench(doc: dict[str, Any]) -> str:
    options = "".join(f"({string.ascii_uppercase[i]}) {o}\n" for i, o in enumerate(doc["candidates"]))
    return f"Question:{doc['question']}\nOption:\n{options}Only give the best option.\n"


def lvb_options(doc: dict[str, Any]) -> list[Any]:
    """LongVideoBench's option0..option4 (its HF rows; "N/A" fills the missing ones)."""
    return [doc.get(f"option{i}") for i in range(5)]


def _lvb_question(doc: dict[str, Any]) -> str:
    shown = [o for o in lvb_options(doc) if o != "N/A"]
    return doc["question"] + "\n" + "\n".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(shown))


def longvideobench(doc: dict[str, Any]) -> str:
    return f"{_lvb_question(doc)}\n{LETTER_DIRECTLY}\n"


def _clock(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def lvb_frame_times(duration: float, frames: int = LVB_INTERLEAVE_FRAMES) -> list[float]:
    """The times LongVideoBench's interleaved prompt places its frames at (one a second when short)."""
    if duration > frames:
        return [duration / frames * i for i in range(frames)]
    return list(range(int(duration)))


def interleave(times: Sequence[float], cues: list[dict[str, Any]], offset: float, duration: float) -> str:
    """'<image>' per frame time, with each subtitle line after the frames before its middle."""
    out: list[str] = []
    shown = 0
    for cue in cues:
        if "timestamp" in cue:
            start, end = cue["timestamp"]
            if not isinstance(
                end, float
            ):  # sic: an open end, and also any whole-number end, becomes the duration
                end = duration
            line = cue["text"]
        else:
            start, end, line = _clock(cue["start"]), _clock(cue["end"]), cue["line"]
        start, end = start - offset, end - offset
        middle = (start + end) / 2
        while shown < len(times) and times[shown] <= middle:
            out.append("<image>")
            shown += 1
        if end - start < 1:  # short cues count as one second around their middle
            start, end = middle - 0.5, middle + 0.5
        if any(start < t < end for t in times):
            out.append(line)
    out += ["<image>"] * (len(times) - shown)
    return "\n".join(out)


def longvideobench_interleaved(doc: dict[str, Any], subtitle: Path) -> str:
    """The `longvideobench_val_i` prompt (its frames go as images in that order)."""
    cues = json.loads(subtitle.read_text(encoding="utf-8"))
    times = lvb_frame_times(doc["duration"])
    prefix = interleave(times, cues, doc["starting_timestamp_for_subtitles"], doc["duration"])
    return f"{prefix}\n{_lvb_question(doc)}\n{LETTER_DIRECTLY}\n"


def mlvu(doc: dict[str, Any]) -> str:
    return f"{doc['question']}\nOnly give the best option.\nBest option: ("
