"""The one record every suite adapter emits (`Sample`), what loading a suite returns, and duration buckets.

Every supported suite is multiple choice: options are stored as bare text (no "A." prefix) and the
answer as a letter; the prompt re-letters them (`benchmarks.video_suites.prompts`).
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LETTERS = string.ascii_uppercase

# Fallback duration buckets (seconds, upper bounds) for suites that publish none.
DEFAULT_BUCKETS: tuple[tuple[float, str], ...] = (
    (15.0, "<=15s"),
    (60.0, "15s-1min"),
    (180.0, "1-3min"),
    (600.0, "3-10min"),
    (1800.0, "10-30min"),
    (float("inf"), ">30min"),
)


@dataclass(frozen=True)
class Sample:
    """One multiple-choice question about one video.

    Attributes:
        id: unique within the suite (the resume key).
        video: path of a video file, or of a directory of frames (`frame_fps` then says their rate).
        options: option texts without letters; `answer` is the letter of the right one.
        tags: free-form strings; the summary groups by `duration_bucket` and `task_type`.
        duration: seconds, when the annotation says (otherwise measured at run time).
        start, end: the question is about this segment only (seconds; MVBench "bound").
        subtitle: path of an .srt file (Video-MME, LongVideoBench), used when subtitles are on.
        doc: the annotation row as lmms-eval's task reads it (`--protocol lmms-eval`; see each adapter).
    """

    id: str
    suite: str
    video: str
    question: str
    options: tuple[str, ...]
    answer: str
    tags: dict[str, str] = field(default_factory=dict)
    duration: float | None = None
    start: float | None = None
    end: float | None = None
    frame_fps: float | None = None
    subtitle: str | None = None
    doc: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.options) < 2 or len(self.options) > len(LETTERS):
            raise ValueError(f"sample {self.id}: needs 2..26 options, got {len(self.options)}")
        if self.answer not in LETTERS[: len(self.options)]:
            raise ValueError(f"sample {self.id}: answer {self.answer!r} is not one of the option letters")

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = list(self.options)
        return d


@dataclass
class SuiteLoad:
    """What an adapter found: the samples whose videos exist, and (id, path) of those that do not."""

    samples: list[Sample]
    missing: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


_PREFIX = re.compile(r"^\s*\(?([A-Z])[.):]\s*")


def strip_letter(option: str, index: int) -> str:
    """'B. a red ball' (or '(B) ...', 'B) ...') -> 'a red ball' when the letter is the option's own."""
    m = _PREFIX.match(option)
    if m and m.group(1) == LETTERS[index]:
        return option[m.end() :].strip()
    return option.strip()


def answer_letter(answer: Any, options: list[str] | tuple[str, ...], sample_id: str) -> str:
    """A suite's answer (letter, index or option text) -> the letter."""
    if isinstance(answer, bool):
        raise ValueError(f"sample {sample_id}: answer {answer!r} is neither a letter, an index nor an option")
    if isinstance(answer, int):
        if 0 <= answer < len(options):
            return LETTERS[answer]
    elif isinstance(answer, str):
        text = answer.strip()
        if len(text) == 1 and text.upper() in LETTERS[: len(options)]:
            return text.upper()
        norm = [o.strip().lower() for o in options]
        if text.lower() in norm:
            return LETTERS[norm.index(text.lower())]
        if text.isdigit() and int(text) < len(options):
            return LETTERS[int(text)]
    raise ValueError(f"sample {sample_id}: answer {answer!r} is neither a letter, an index nor an option")


def json_safe(value: Any) -> Any:
    """A parquet/pandas row made JSON-plain: numpy arrays to lists, numpy scalars to Python ones."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ndarray":
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        return value.item()
    return value


def duration_bucket(seconds: float | None, buckets: tuple[tuple[float, str], ...] = DEFAULT_BUCKETS) -> str:
    if seconds is None:
        return "unknown"
    for upper, label in buckets:
        if seconds <= upper:
            return label
    return buckets[-1][1]


def resolve(root: Path, *candidates: str | Path) -> Path | None:
    """The first candidate (relative to `root`) that exists, or None."""
    for c in candidates:
        p = root / c
        if p.exists():
            return p
    return None


def read_json_or_jsonl(path: Path) -> list[dict[str, Any]]:
    """A JSON list (or {"data": [...]}) or a JSONL file of objects."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if isinstance(data, dict):
        data = data.get("data", data.get("samples", list(data.values())))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of records")
    return data


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a parquet file (needs pandas + pyarrow), or of a JSON / JSONL export of it."""
    if path.suffix == ".parquet":
        try:
            import pandas as pd

            frame = pd.read_parquet(path)
        except ImportError as exc:  # pandas without pyarrow/fastparquet
            raise ImportError(
                f"reading {path} needs pandas and pyarrow (pip install pandas pyarrow), "
                "or export the rows to JSONL"
            ) from exc
        return frame.to_dict("records")
    return read_json_or_jsonl(path)
