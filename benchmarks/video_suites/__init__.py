"""Video QA suites read from their published local layouts, as `Sample`s (see `schema`).

load_suite("videomme" | "mvbench" | "longvideobench" | "mlvu" | "generic" | "synthetic", root, ...)
-> SuiteLoad(samples, missing, notes). Missing videos are listed, never fatal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.video_suites.schema import Sample, SuiteLoad

SUITES = ("videomme", "mvbench", "longvideobench", "mlvu", "generic", "synthetic")


def load_suite(name: str, root: str | Path, **options: Any) -> SuiteLoad:
    """Read suite `name` under `root`; `options`: subtitles (Video-MME, LongVideoBench), tasks (MVBench)."""
    if name == "videomme":
        from benchmarks.video_suites import videomme

        return videomme.load(root, subtitles=options.get("subtitles", False))
    if name == "mvbench":
        from benchmarks.video_suites import mvbench

        return mvbench.load(root, tasks=options.get("tasks"))
    if name == "longvideobench":
        from benchmarks.video_suites import longvideobench

        return longvideobench.load(root, subtitles=options.get("subtitles", False))
    if name == "mlvu":
        from benchmarks.video_suites import mlvu

        return mlvu.load(root)
    if name in ("generic", "synthetic"):
        from benchmarks.video_suites import generic

        return generic.load(root, suite=name)
    raise ValueError(f"unknown suite {name!r} (expected one of {', '.join(SUITES)})")


__all__ = ["SUITES", "Sample", "SuiteLoad", "load_suite"]
