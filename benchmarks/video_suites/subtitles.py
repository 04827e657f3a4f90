"""Subtitles for the 'with subtitles' settings: the cues shown at the sampled frames' times.

Reads SubRip (.srt; Video-MME, whose lines are wrapped in `<font ...>` tags) and LongVideoBench's JSON
cues (`{"timestamp": [start, end], "text"}` or `{"start": "HH:MM:SS.mmm", "end", "line"}`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

_TIME = re.compile(r"(\d+):(\d+):(\d+)[,.](\d+)")


def _seconds(text: str) -> float:
    m = _TIME.search(text)
    if m is None:
        h, mi, s = text.split(":")
        return int(h) * 3600 + int(mi) * 60 + float(s)
    h, mi, s, frac = m.groups()
    return int(h) * 3600 + int(mi) * 60 + int(s) + int(frac) / 10 ** len(frac)


def read_cues(path: str | Path) -> list[tuple[float, float, str]]:
    """(start s, end s, text) of every cue, tags stripped."""
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    cues = []
    if path.suffix == ".json":
        for c in json.loads(text):
            if "timestamp" in c:
                start, end = c["timestamp"]
                cues.append((float(start), float(end) if end is not None else float("inf"), str(c["text"])))
            else:
                cues.append((_seconds(c["start"]), _seconds(c["end"]), str(c["line"])))
    else:
        for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
            lines = [line for line in block.strip().split("\n") if line.strip()]
            arrow = next((i for i, line in enumerate(lines) if "-->" in line), None)
            if arrow is None:
                continue
            a, b = lines[arrow].split("-->")
            cues.append((_seconds(a), _seconds(b), " ".join(lines[arrow + 1 :])))
    return [(a, b, re.sub(r"<[^>]+>", "", t).strip()) for a, b, t in cues]


def subtitle_text(path: str | Path, times: list[float] | None = None, offset: float = 0.0) -> str:
    """The cue lines covering any of `times` (seconds; all cues when None), in order, one per line."""
    if not Path(path).exists():
        return ""
    out = []
    for start, end, text in read_cues(path):
        start, end = start - offset, end - offset
        if text and (times is None or any(start <= t < end for t in times)):
            out.append(text)
    return "\n".join(dict.fromkeys(out))
